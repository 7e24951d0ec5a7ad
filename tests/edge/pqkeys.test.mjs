// PQC API keys through the edge (issue 15): the built Worker in workerd verifies a request
// signed with an Enterprise account's ML-DSA-65 key (RFC 9421) itself and treats it as that
// account, against a real heady-origin. Keys are made with `heady-origin keys create-pq` and
// requests signed with `heady-origin sign-request`, for the property host the test calls.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { FakePlatform, TUNNEL_KEY, startEdge, startOrigin } from "./harness.mjs";

const HOST = "headyapi.com";
const ROUTE = "/api/conductor/route";
const BODY = JSON.stringify({ action: "code" });

let origin;
let edge;
let dir;
let keyFile;
let keyid;
let opsKey;

function cli(args) {
  const run = spawnSync(origin.bin, args, {
    encoding: "utf8",
    env: { ...process.env, HEADY_TUNNEL_AUTH: "hmac", HEADY_TUNNEL_KEY: TUNNEL_KEY },
  });
  assert.equal(run.status, 0, `heady-origin ${args.join(" ")}: ${run.stdout} ${run.stderr}`);
  return run.stdout;
}

/** An Enterprise PQC key made with the CLI: { file, keyid }. */
function pqKey(account, name) {
  const file = path.join(dir, `${name}.pem`);
  const out = cli(["keys", "--data-dir", origin.dataDir, "create-pq", "--account", account, "--out", file]);
  const id = /^[0-9a-f]{16}$/m.exec(out)?.[0];
  assert.ok(id, `create-pq printed no key id: ${out}`);
  return { file, keyid: id };
}

let signed = 0;
/** The headers `sign-request` prints for `method https://HOST<pathAndQuery>` with `body`. */
function sign(method, pathAndQuery, body = "", file = keyFile) {
  const args = ["sign-request", "--key-file", file, "--method", method, "--url", `https://${HOST}${pathAndQuery}`];
  if (body) {
    signed += 1;
    const bodyFile = path.join(dir, `body-${signed}`);
    writeFileSync(bodyFile, body);
    args.push("--body-file", bodyFile);
  }
  const headers = {};
  for (const line of cli(args).split("\n").filter(Boolean)) {
    const at = line.indexOf(": ");
    headers[line.slice(0, at).toLowerCase()] = line.slice(at + 2);
  }
  assert.ok(headers["signature-input"] && headers.signature, JSON.stringify(headers));
  return headers;
}

let ipCounter = 0;
function freshIp() {
  ipCounter += 1;
  return `203.0.113.${ipCounter}`;
}

async function send(method, pathAndQuery, { headers = {}, body, ip = freshIp() } = {}) {
  const res = await edge.dispatchFetch(`http://${HOST}${pathAndQuery}`, {
    method,
    headers: { "cf-connecting-ip": ip, ...(body ? { "content-type": "application/json" } : {}), ...headers },
    body,
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, text, json, code: json?.error?.code };
}

/** The origin's count of requests it answered on `route` (its /metrics, read directly). */
async function originSaw(route) {
  const res = await fetch(`${origin.url}/metrics`, { headers: { authorization: `Bearer ${opsKey}` } });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("heady_http_requests_total{") && line.includes(`route="${route}"`)) {
      total += Number(line.split(" ").at(-1));
    }
  }
  return total;
}

/** A PEM private key of a fresh ML-DSA-65 seed nobody registered (the CLI's PKCS#8 form). */
function unregisteredKey() {
  const prefix = Buffer.from("3034020100300b06096086480165030403120422" + "8020", "hex");
  const der = Buffer.concat([prefix, randomBytes(32)]);
  const file = path.join(dir, "unregistered.pem");
  writeFileSync(file, `-----BEGIN PRIVATE KEY-----\n${der.toString("base64")}\n-----END PRIVATE KEY-----\n`);
  return file;
}

before(async () => {
  origin = await startOrigin();
  edge = await startEdge({ originUrl: origin.url, platform: new FakePlatform() });
  dir = mkdtempSync(path.join(tmpdir(), "heady-edge-pq-"));
  cli(["keys", "--data-dir", origin.dataDir, "create", "--user", "pq-ent", "--tier", "enterprise", "--clearance", "internal"]);
  ({ file: keyFile, keyid } = pqKey("pq-ent", "ent"));
  // An INTERNAL key to read the origin's /metrics with, directly.
  opsKey = /hk_[0-9a-f]{64}/.exec(
    cli(["keys", "--data-dir", origin.dataDir, "create", "--user", "pq-ops", "--tier", "pro", "--clearance", "internal"]),
  )?.[0];
  assert.ok(opsKey);
});

after(async () => {
  await edge?.dispose();
  await origin?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("PQC API keys at the edge", () => {
  test("a signed request is the key's Enterprise account: no Free limit, no Free tier gate", async () => {
    // Anonymous, the same action is refused by the edge's tier gate, under the Free policy.
    const anon = await send("POST", "/api/code", { body: JSON.stringify({ input: "fn main() {}" }) });
    assert.equal(anon.status, 403, anon.text);
    assert.equal(anon.code, "upgrade_required");
    assert.equal(anon.headers.get("ratelimit-policy"), '"free";q=30;w=60');

    const body = JSON.stringify({ input: "fn main() {}" });
    const res = await send("POST", "/api/code", { headers: sign("POST", "/api/code", body), body });
    assert.notEqual(res.code, "upgrade_required", res.text);
    assert.notEqual(res.status, 401, res.text);
    assert.equal(res.headers.get("x-heady-served-by"), "origin", res.text);
    // Enterprise is unlimited: no RateLimit fields.
    assert.equal(res.headers.get("ratelimit-policy"), null, res.text);

    // More requests from one address than the Free tier's 30 a minute: all pass.
    const ip = freshIp();
    for (let i = 0; i < 32; i++) {
      const r = await send("POST", ROUTE, { headers: sign("POST", ROUTE, BODY), body: BODY, ip });
      assert.equal(r.status, 200, `request ${i + 1}: ${r.text}`);
      assert.equal(r.json.group, "coding", r.text);
      assert.equal(r.headers.get("ratelimit-policy"), null);
    }
    // The edge cached the key's session and public key (no private anything) in KV.
    const kv = await edge.getKVNamespace("HEADY_KV");
    const cached = JSON.parse(await kv.get(`pq:${keyid}`));
    assert.equal(cached.tier, "enterprise", JSON.stringify(cached));
    assert.match(cached.subject, /^user:acct_[a-z2-7]{24}$/);
    assert.equal(Buffer.from(cached.public_key, "base64").length, 1952);
    assert.ok(cached.until_ms > Date.now(), JSON.stringify(cached));
  });

  test("one changed body byte: 401 at the edge, and the origin never sees the request", async () => {
    const headers = sign("POST", ROUTE, BODY);
    // Warm the session cache so the only origin traffic a request could cause is itself.
    assert.equal((await send("POST", ROUTE, { headers: sign("POST", ROUTE, BODY), body: BODY })).status, 200);
    const before = await originSaw(ROUTE);
    const res = await send("POST", ROUTE, { headers, body: BODY.replace("code", "coda") });
    assert.equal(res.status, 401, res.text);
    assert.equal(res.code, "invalid_request_signature", res.text);
    assert.equal(res.headers.get("x-heady-served-by"), null);
    // A path other than signed: refused at the edge too.
    const other = await send("POST", "/api/conductor/routE", { headers, body: BODY });
    assert.equal(other.status, 401, other.text);
    assert.equal(other.code, "invalid_request_signature");
    assert.equal(await originSaw(ROUTE), before, "the origin answered no request on the route");
    // The untouched request still passes: the refusals used nothing up.
    const ok = await send("POST", ROUTE, { headers, body: BODY });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(await originSaw(ROUTE), before + 1);
  });

  test("an unknown keyid: 401, remembered so the origin is asked once", async () => {
    const file = unregisteredKey();
    const lookups = "/api/identity/pq-keys/{keyid}";
    const before = await originSaw(lookups);
    const routed = await originSaw(ROUTE);
    for (let i = 0; i < 3; i++) {
      const res = await send("POST", ROUTE, { headers: sign("POST", ROUTE, BODY, file), body: BODY });
      assert.equal(res.status, 401, res.text);
      assert.equal(res.code, "invalid_request_signature", res.text);
    }
    assert.equal(await originSaw(lookups), before + 1, "one lookup, then the edge's cached refusal");
    assert.equal(await originSaw(ROUTE), routed, "no request reached the route");
  });

  test("a replayed signature: the origin's 401 reaches the client", async () => {
    const headers = sign("POST", ROUTE, BODY);
    const first = await send("POST", ROUTE, { headers, body: BODY });
    assert.equal(first.status, 200, first.text);
    const again = await send("POST", ROUTE, { headers, body: BODY });
    assert.equal(again.status, 401, again.text);
    assert.equal(again.code, "replayed_request", again.text);
    assert.equal(again.headers.get("x-heady-served-by"), "origin");
  });

  test("a revoked key: the origin refuses it at once (the edge still holds its session)", async () => {
    const { file, keyid: id } = pqKey("pq-ent", "revoked");
    const ok = await send("POST", ROUTE, { headers: sign("POST", ROUTE, BODY, file), body: BODY });
    assert.equal(ok.status, 200, ok.text);
    cli(["keys", "--data-dir", origin.dataDir, "revoke", id]);
    const res = await send("POST", ROUTE, { headers: sign("POST", ROUTE, BODY, file), body: BODY });
    assert.equal(res.status, 401, res.text);
    assert.equal(res.code, "revoked_api_key", res.text);
  });

  test("a bearer key and a signature together: 400, as at the origin", async () => {
    const res = await send("POST", ROUTE, {
      headers: { ...sign("POST", ROUTE, BODY), authorization: `Bearer ${opsKey}` },
      body: BODY,
    });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.code, "conflicting_credentials");
  });

  test("bad signatures count as failed authentication: past 20 a minute the address gets 429", async () => {
    const headers = sign("POST", ROUTE, BODY);
    const ip = freshIp();
    const codes = [];
    for (let i = 0; i < 22; i++) {
      codes.push((await send("POST", ROUTE, { headers, body: `${BODY} `, ip })).code);
    }
    assert.deepEqual(codes.slice(0, 20), new Array(20).fill("invalid_request_signature"));
    assert.equal(codes.at(-1), "too_many_failed_auth");
    // A good signature from that address is refused too (a keyid is public), others are not.
    const blocked = await send("POST", ROUTE, { headers: sign("POST", ROUTE, BODY), body: BODY, ip });
    assert.equal(blocked.status, 429, blocked.text);
    const elsewhere = await send("POST", ROUTE, { headers, body: BODY });
    assert.equal(elsewhere.status, 200, elsewhere.text);
  });
});
