// headymcp.com through the edge: /mcp passes the Worker's defense (a key's session, the
// limiter) and reaches the origin's MCP server with its session header both ways; an
// anonymous caller gets the origin's 401 with its Bearer challenge.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { TUNNEL_KEY, edgeAndOrigin } from "./harness.mjs";

const URL = "http://headymcp.com/mcp";

const live = edgeAndOrigin();

/** A Pro account's key, made with the CLI. */
function proKey(user) {
  const run = spawnSync(
    live.origin.bin,
    ["keys", "--data-dir", live.origin.dataDir, "create", "--user", user, "--tier", "pro", "--clearance", "internal"],
    { encoding: "utf8", env: { ...process.env, HEADY_TUNNEL_AUTH: "hmac", HEADY_TUNNEL_KEY: TUNNEL_KEY } },
  );
  const key = /hk_[0-9a-f]{64}/.exec(run.stdout)?.[0];
  assert.ok(key, `keys create: ${run.stdout} ${run.stderr}`);
  return key;
}

async function mcp(method, { key, session, body } = {}) {
  const headers = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "cf-connecting-ip": "198.51.100.77",
  };
  if (key) headers.authorization = `Bearer ${key}`;
  if (session) {
    headers["mcp-session-id"] = session;
    headers["mcp-protocol-version"] = "2025-11-25";
  }
  const res = await live.edge.dispatchFetch(URL, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // 202 and 204 have no body
  }
  return { status: res.status, headers: res.headers, json, text };
}

describe("MCP through the edge", () => {
  test("initialize, a tool call and DELETE reach the origin with the session header", async () => {
    const key = proKey("edge-mcp");
    const init = await mcp("POST", {
      key,
      body: {
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "edge-test", version: "1" } },
      },
    });
    assert.equal(init.status, 200, init.text);
    assert.equal(init.json.result.serverInfo.name, "heady-origin");
    assert.equal(init.headers.get("x-heady-served-by"), "origin");
    assert.match(init.headers.get("ratelimit-policy") ?? "", /"pro";q=120/);
    const session = init.headers.get("mcp-session-id");
    assert.match(session ?? "", /^[0-9a-f]{32}$/);

    const note = await mcp("POST", { key, session, body: { jsonrpc: "2.0", method: "notifications/initialized" } });
    assert.equal(note.status, 202, note.text);

    const routed = await mcp("POST", {
      key,
      session,
      body: { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "conductor_route", arguments: { action: "code" } } },
    });
    assert.equal(routed.status, 200, routed.text);
    assert.equal(routed.json.result.isError, false, routed.text);
    assert.equal(routed.json.result.structuredContent.group, "coding");

    const get = await mcp("GET", { key, session });
    assert.equal(get.status, 405, get.text);

    const del = await mcp("DELETE", { key, session });
    assert.equal(del.status, 204, del.text);
    const gone = await mcp("POST", { key, session, body: { jsonrpc: "2.0", id: 3, method: "ping" } });
    assert.equal(gone.status, 404, gone.text);
  });

  test("an anonymous caller gets 401 with a Bearer challenge", async () => {
    const res = await mcp("POST", { body: { jsonrpc: "2.0", id: 1, method: "ping" } });
    assert.equal(res.status, 401, res.text);
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
  });
});
