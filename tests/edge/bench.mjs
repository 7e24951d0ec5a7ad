// Edge benchmarks (issue 4): WASM size after wasm-opt (raw and gzip), per-request latency of
// the full edge defense path vs a trivial 200 worker in the same run, and cold start.
//   node bench.mjs            (after deploy/build-edge.sh; N=2000 requests per series)
import { Miniflare } from "miniflare";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { compatibilityDate, freePort, root, startEdge } from "./harness.mjs";

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
