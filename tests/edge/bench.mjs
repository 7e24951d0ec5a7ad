// Edge benchmarks (issue 4): WASM size after wasm-opt (raw and gzip), per-request latency of
// the full edge defense path vs a trivial 200 worker in the same run, and cold start. Tunnel
// sessions (issue 15): tunnelled requests to a real heady-origin under the shared HMAC vs a
// post-quantum hybrid session, and the session handshake in workerd (first request of a
// fresh isolate, which waits for it, minus a steady request).
//   node bench.mjs            (after deploy/build-edge.sh; N=2000 requests per series)
import { Miniflare } from "miniflare";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { compatibilityDate, freePort, makeIdentity, root, startEdge, startOrigin } from "./harness.mjs";

const N = Number(process.env.BENCH_REQUESTS ?? 2000);
const WARMUP = 200;

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function series(label, send) {
  for (let i = 0; i < WARMUP; i++) await (await send(i)).arrayBuffer();
  const ms = [];
  for (let i = 0; i < N; i++) {
    const t = process.hrtime.bigint();
    const res = await send(i);
    await res.arrayBuffer();
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (res.status !== 200) throw new Error(`${label}: status ${res.status}`);
  }
  ms.sort((a, b) => a - b);
  return { p50: pct(ms, 50), p99: pct(ms, 99) };
}

const wasm = readFileSync(path.join(root, "edge", "build", "index_bg.wasm"));
console.log(`WASM after wasm-opt: ${(wasm.length / 1024).toFixed(1)} KiB raw, ${(gzipSync(wasm, { level: 9 }).length / 1024).toFixed(1)} KiB gzip`);

const dead = await freePort();
const t0 = process.hrtime.bigint();
const edge = await startEdge({ originUrl: `http://127.0.0.1:${dead}`, inline: true });
const first = await edge.dispatchFetch("https://headyme.com/");
await first.arrayBuffer();
const cold = Number(process.hrtime.bigint() - t0) / 1e6;
if (first.status !== 200) throw new Error(`first request: ${first.status}`);
console.log(`cold start (new Miniflare -> workerd up -> first 200 from the edge WASM): ${cold.toFixed(0)} ms`);

// An Enterprise key from the session cache: the full defense path (session lookup, ban list,
// limiter read/merge/decide/coalesced write, conductor) runs on every request, unthrottled.
const key = `hk_${"f".repeat(64)}`;
const kv = await edge.getKVNamespace("HEADY_KV");
await kv.put(`sess:${createHash("sha256").update(key).digest("hex")}`, JSON.stringify({ subject: "user:bench", tier: "enterprise", clearance: "PUBLIC" }), { expirationTtl: 3600 });

const trivial = new Miniflare({
  modules: true,
  compatibilityDate: compatibilityDate(),
  script: `export default { fetch() { return new Response("ok"); } }`,
});
await trivial.ready;

const body = JSON.stringify({ prompt: "hello" });
const base = await series("trivial", () => trivial.dispatchFetch("http://x/api/chat", { method: "POST", body }));
const full = await series("edge", () =>
  edge.dispatchFetch("https://headyapi.com/api/chat", {
    method: "POST",
    body,
    headers: { authorization: `Bearer ${key}`, "cf-connecting-ip": "203.0.113.1", "content-type": "application/json" },
  }),
);
const page = await series("page", () => edge.dispatchFetch("https://headyme.com/"));
const f = (x) => x.toFixed(3);
console.log(`trivial 200 worker:         p50 ${f(base.p50)} ms  p99 ${f(base.p99)} ms  (N=${N}, sequential dispatchFetch)`);
console.log(`edge /api/chat (defense+AI): p50 ${f(full.p50)} ms  p99 ${f(full.p99)} ms  ratio p50 ${(full.p50 / base.p50).toFixed(2)}x, p99 ${(full.p99 / base.p99).toFixed(2)}x`);
console.log(`edge static page (assets):   p50 ${f(page.p50)} ms  p99 ${f(page.p99)} ms  ratio p50 ${(page.p50 / base.p50).toFixed(2)}x`);
await trivial.dispose();
await edge.dispose();

// Tunnelled requests (GET /api/conductor/groups, anonymous, a fresh client address each so no
// limit is reached) to a real origin: HMAC vs session, then the handshake.
const TUNNEL_N = Number(process.env.BENCH_TUNNEL_REQUESTS ?? 500);
let ip = 0;
const tunnelled = (mf) => () => {
  ip += 1;
  return mf.dispatchFetch("https://headyapi.com/api/conductor/groups", {
    headers: { "cf-connecting-ip": `198.18.${(ip >> 8) & 255}.${ip & 255}` },
  });
};
async function tunnelSeries(label, mf) {
  const send = tunnelled(mf);
  for (let i = 0; i < 50; i++) await (await send()).arrayBuffer();
  const ms = [];
  for (let i = 0; i < TUNNEL_N; i++) {
    const t = process.hrtime.bigint();
    const res = await send();
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`${label}: status ${res.status}`);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  ms.sort((a, b) => a - b);
  return { p50: pct(ms, 50), p99: pct(ms, 99) };
}
const edgeId = makeIdentity("edge");
const originId = makeIdentity("origin");
const hmacOrigin = await startOrigin();
const pqOrigin = await startOrigin({ tunnel: { identity: originId, edges: [edgeId] } });
const pqTunnel = { identity: edgeId, origins: [originId] };
const hmacEdge = await startEdge({ originUrl: hmacOrigin.url, inline: true });
const pqEdge = await startEdge({ originUrl: pqOrigin.url, inline: true, tunnel: pqTunnel });
// Interleaved twice so drift in the machine's load hits both alike.
const h1 = await tunnelSeries("hmac", hmacEdge);
const s1 = await tunnelSeries("session", pqEdge);
const h2 = await tunnelSeries("hmac", hmacEdge);
const s2 = await tunnelSeries("session", pqEdge);
const hm = (h1.p50 + h2.p50) / 2;
const sm = (s1.p50 + s2.p50) / 2;
console.log(`tunnelled request, shared HMAC:     p50 ${f(hm)} ms  p99 ${f(Math.max(h1.p99, h2.p99))} ms  (N=${2 * TUNNEL_N}, edge -> real origin)`);
console.log(`tunnelled request, pq-hybrid session: p50 ${f(sm)} ms  p99 ${f(Math.max(s1.p99, s2.p99))} ms  ratio p50 ${(sm / hm).toFixed(2)}x`);

// The handshake: a fresh isolate's first tunnelled request waits for it.
const firsts = [];
for (let i = 0; i < 5; i++) {
  const fresh = await startEdge({ originUrl: pqOrigin.url, inline: true, tunnel: pqTunnel });
  await (await fresh.dispatchFetch("https://headyme.com/")).arrayBuffer(); // warm the isolate
  const t = process.hrtime.bigint();
  const res = await tunnelled(fresh)();
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`first request: ${res.status}`);
  firsts.push(Number(process.hrtime.bigint() - t) / 1e6);
  await fresh.dispose();
}
firsts.sort((a, b) => a - b);
const firstMedian = firsts[2];
console.log(`first tunnelled request of an isolate (handshake + request): median ${f(firstMedian)} ms of 5`);
console.log(`handshake in workerd (that minus a steady session request's p50): ${f(firstMedian - sm)} ms`);
// A warm isolate's handshake: sessions of 2 s, so a request after one expires waits for the
// next handshake (its code compiled and run before).
const shortOrigin = await startOrigin({ tunnel: { identity: originId, edges: [edgeId], sessionSecs: 2 } });
const warm = await startEdge({ originUrl: shortOrigin.url, inline: true, tunnel: pqTunnel });
const warmSend = tunnelled(warm);
for (let i = 0; i < 20; i++) await (await warmSend()).arrayBuffer();
const again = [];
for (let i = 0; i < 5; i++) {
  await new Promise((r) => setTimeout(r, 2200));
  const t = process.hrtime.bigint();
  const res = await warmSend();
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`after expiry: ${res.status}`);
  again.push(Number(process.hrtime.bigint() - t) / 1e6);
}
again.sort((a, b) => a - b);
console.log(`request after its session expired, warm isolate (handshake + request): median ${f(again[2])} ms of 5`);
console.log(`warm handshake in workerd (that minus a steady session request's p50): ${f(again[2] - sm)} ms`);
await warm.dispose();
await shortOrigin.stop();
await hmacEdge.dispose();
await pqEdge.dispose();
await hmacOrigin.stop();
await pqOrigin.stop();
