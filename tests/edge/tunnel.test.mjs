// Post-quantum hybrid tunnel sessions between the built edge Worker (workerd, Miniflare) and a
// real heady-origin: identities made with `heady-origin tunnel identity new`, one handshake
// shared by concurrent requests, re-keying before expiry without a failed request, a retry
// under a new session when an origin does not know the ticket, no downgrade to the HMAC, and
// an origin the edge does not pin. A recording proxy between them counts what crosses.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { makeIdentity, startEdge, startOrigin } from "./harness.mjs";

const SESSION_SECS = 10;
let ipCounter = 0;

function get(edge, path = "/api/conductor/groups") {
  ipCounter += 1;
  return edge.dispatchFetch(`http://headyapi.com${path}`, {
    headers: { "cf-connecting-ip": `198.18.${(ipCounter >> 8) & 255}.${ipCounter & 255}` },
  });
}

/** A proxy in front of `target()` that records every request and the origin's status. */
function recordingProxy(target) {
  const seen = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const headers = { ...req.headers };
    delete headers.host;
    delete headers["content-length"];
    const body = chunks.length ? Buffer.concat(chunks) : undefined;
    try {
      const r = await fetch(`${target()}${req.url}`, { method: req.method, headers, body });
      const answer = Buffer.from(await r.arrayBuffer());
      seen.push({ method: req.method, path: req.url, status: r.status, headers: req.headers, answer });
      res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/octet-stream" });
      res.end(answer);
    } catch (e) {
      res.writeHead(502);
      res.end(String(e));
    }
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({ url: `http://127.0.0.1:${server.address().port}`, seen, close: () => server.close() }),
    ),
  );
}

const handshakes = (seen) => seen.filter((r) => r.path === "/api/tunnel/handshake");

describe("tunnel sessions (pq-hybrid)", () => {
  let edgeId;
  let originId;
  let origin;
  let proxy;
  let target;
  let edge;

  before(async () => {
    edgeId = makeIdentity("edge");
    originId = makeIdentity("origin");
    origin = await startOrigin({ tunnel: { identity: originId, edges: [edgeId], sessionSecs: SESSION_SECS } });
    target = origin.url;
    proxy = await recordingProxy(() => target);
    edge = await startEdge({ originUrl: proxy.url, tunnel: { identity: edgeId, origins: [originId] } });
  });

  after(async () => {
    await edge?.dispose();
    proxy?.close();
    await origin?.stop();
  });

  test("concurrent requests of one isolate share one handshake", async () => {
    const t0 = process.hrtime.bigint();
    const answers = await Promise.all(Array.from({ length: 8 }, () => get(edge)));
    const firstMs = Number(process.hrtime.bigint() - t0) / 1e6;
    for (const a of answers) {
      assert.equal(a.status, 200, await a.text());
      assert.equal(a.headers.get("x-heady-served-by"), "origin");
    }
    assert.equal(handshakes(proxy.seen).length, 1, "one handshake for the isolate");
    assert.equal(handshakes(proxy.seen)[0].status, 200);
    // Every request carried the session: its ticket and a MAC under its key, no HMAC.
    const tunnelled = proxy.seen.filter((r) => r.path === "/api/conductor/groups");
    assert.equal(tunnelled.length, 8);
    for (const r of tunnelled) {
      assert.match(r.headers["x-heady-signature"], /^session-hmac-sha256 [0-9a-f]{64}$/);
      assert.match(r.headers["x-heady-session"], /^[0-9a-f]+$/);
    }
    // Figures: the first wave waits for the handshake; later requests do not.
    const later = [];
    for (let i = 0; i < 20; i++) {
      const t = process.hrtime.bigint();
      const r = await get(edge);
      await r.arrayBuffer();
      later.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    later.sort((a, b) => a - b);
    console.log(
      `[tunnel] first 8 concurrent requests incl. the handshake: ${firstMs.toFixed(1)} ms; later requests p50 ${later[10].toFixed(1)} ms`,
    );
    assert.equal(handshakes(proxy.seen).length, 1);
  });

  test("re-keys before the session expires without failing a request", async () => {
    const before = handshakes(proxy.seen).length;
    const deadline = Date.now() + 2.5 * SESSION_SECS * 1000;
    let sent = 0;
    while (Date.now() < deadline) {
      const r = await get(edge);
      const text = await r.text();
      assert.equal(r.status, 200, `request ${sent}: ${text}`);
      sent += 1;
      await new Promise((res) => setTimeout(res, 150));
    }
    const opened = handshakes(proxy.seen).length - before;
    assert.ok(opened >= 2, `${opened} new sessions in ${2.5 * SESSION_SECS} s of ${SESSION_SECS} s sessions`);
    // The re-key happened before expiry: the origin never saw an expired session.
    const refused = proxy.seen.filter((r) => r.status === 401);
    assert.deepEqual(
      refused.map((r) => JSON.parse(r.answer.toString()).error.code),
      [],
      "no request reached the origin with an expired session",
    );
    console.log(`[tunnel] ${sent} requests over ${2.5 * SESSION_SECS} s: ${opened} re-keys, 0 failed`);
  });

  test("an origin that does not know the session gets the request again under a new one", async () => {
    // Another origin with the same identity but its own ticket key (a rotated ticket key).
    const other = await startOrigin({
      tunnel: { identity: originId, edges: [edgeId], sessionSecs: SESSION_SECS },
      env: { HEADY_TUNNEL_TICKET_KEY: "ab".repeat(32) },
    });
    try {
      target = other.url;
      const mark = proxy.seen.length;
      const r = await get(edge);
      assert.equal(r.status, 200, await r.text());
      // The old ticket refused once, a handshake with this origin, the request again.
      const crossed = proxy.seen.slice(mark);
      const requests = crossed.filter((x) => x.path === "/api/conductor/groups");
      assert.deepEqual(
        requests.map((x) => x.status),
        [401, 200],
      );
      assert.equal(JSON.parse(requests[0].answer.toString()).error.code, "tunnel_session_invalid");
      assert.ok(handshakes(crossed).some((x) => x.status === 200));
    } finally {
      target = origin.url;
      await other.stop();
    }
  });

  test("an edge that signs with the shared HMAC key is refused (no downgrade)", async () => {
    const hmacEdge = await startEdge({ originUrl: origin.url, tunnel: "hmac" });
    try {
      const r = await get(hmacEdge);
      assert.equal(r.status, 401);
      assert.equal((await r.json()).error.code, "tunnel_session_required");
    } finally {
      await hmacEdge.dispose();
    }
  });

  test("an edge that pins another origin identity refuses its welcome", async () => {
    const stranger = makeIdentity("origin");
    const wrongPin = await startEdge({ originUrl: origin.url, tunnel: { identity: edgeId, origins: [stranger] } });
    try {
      const r = await get(wrongPin);
      assert.equal(r.status, 502);
      const body = await r.json();
      assert.equal(body.error.code, "tunnel_handshake_failed");
      assert.match(body.error.message, /not pinned/);
    } finally {
      await wrongPin.dispose();
    }
  });

  test("an origin that does not pin this edge refuses its handshake", async () => {
    const strangerEdge = makeIdentity("edge");
    const unknown = await startEdge({ originUrl: origin.url, tunnel: { identity: strangerEdge, origins: [originId] } });
    try {
      const r = await get(unknown);
      assert.equal(r.status, 502);
      const body = await r.json();
      assert.equal(body.error.code, "tunnel_handshake_failed");
      assert.match(body.error.message, /tunnel_identity_unknown/);
    } finally {
      await unknown.dispose();
    }
  });
});
