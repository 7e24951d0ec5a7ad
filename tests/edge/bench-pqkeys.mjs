// PQC API keys at the edge (issue 15): what a request signed with an Enterprise account's
// ML-DSA-65 key costs the edge beyond a bearer key of the same account. Both go through the
// built Worker in workerd to a real heady-origin (`POST /api/conductor/route`, both keys'
// sessions cached at the edge and the origin), and both directly to that origin; the edge's
// own added latency is (signed - bearer through the edge) - (signed - bearer direct), the
// origin verifying each signature again. Requests are signed beforehand with
// `heady-origin sign-request` (signing is the client's cost, not the edge's).
//   node bench-pqkeys.mjs     (after deploy/build-edge.sh; BENCH_PQ_REQUESTS per series, 300)
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { TUNNEL_KEY, startEdge, startOrigin } from "./harness.mjs";

const N = Number(process.env.BENCH_PQ_REQUESTS ?? 300);
const WARMUP = 30;
const ROUTE = "/api/conductor/route";
const BODY = JSON.stringify({ action: "code" });

// Direct requests carry a key of their own, so the origin must take them without the edge.
const origin = await startOrigin({ env: { HEADY_REQUIRE_EDGE: "off" } });
const edge = await startEdge({ originUrl: origin.url, inline: true });
const dir = mkdtempSync(path.join(tmpdir(), "heady-bench-pq-"));
const env = { ...process.env, HEADY_TUNNEL_AUTH: "hmac", HEADY_TUNNEL_KEY: TUNNEL_KEY };
function cli(args) {
  const run = spawnSync(origin.bin, args, { encoding: "utf8", env });
  if (run.status !== 0) throw new Error(`heady-origin ${args.join(" ")}: ${run.stderr}`);
  return run.stdout;
}
const admin = ["keys", "--data-dir", origin.dataDir];
const bearer = /hk_[0-9a-f]{64}/.exec(
  cli([...admin, "create", "--user", "bench-ent", "--tier", "enterprise", "--clearance", "internal"]),
)[0];
const keyFile = path.join(dir, "ent.pem");
cli([...admin, "create-pq", "--account", "bench-ent", "--out", keyFile]);
const bodyFile = path.join(dir, "body.json");
writeFileSync(bodyFile, BODY);

/** `count` signatures of the request to `base + ROUTE` (each is accepted once). */
function signatures(base, count) {
  const out = [];
  for (let i = 0; i < count; i++) {
    const text = cli(["sign-request", "--key-file", keyFile, "--method", "POST", "--url", `${base}${ROUTE}`, "--body-file", bodyFile]);
    const headers = {};
    for (const line of text.split("\n").filter(Boolean)) {
      const at = line.indexOf(": ");
      headers[line.slice(0, at).toLowerCase()] = line.slice(at + 2);
    }
    out.push(headers);
  }
  return out;
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function series(label, send, count) {
  const ms = [];
  for (let i = 0; i < count; i++) {
    const t = process.hrtime.bigint();
    const res = await send(i);
    await res.arrayBuffer();
    const took = Number(process.hrtime.bigint() - t) / 1e6;
    if (res.status !== 200) throw new Error(`${label}: status ${res.status}`);
    if (i >= WARMUP) ms.push(took);
  }
  return ms;
}

const viaEdge = (headers) =>
  edge.dispatchFetch(`https://headyapi.com${ROUTE}`, {
    method: "POST",
    body: BODY,
    headers: { "content-type": "application/json", "cf-connecting-ip": "203.0.113.50", ...headers },
  });
const direct = (headers) =>
  fetch(`${origin.url}${ROUTE}`, { method: "POST", body: BODY, headers: { "content-type": "application/json", ...headers } });

const t0 = Date.now();
const edgeSigs = signatures("https://headyapi.com", 2 * (N + WARMUP));
const directSigs = signatures(origin.url, 2 * (N + WARMUP));
console.log(`signed ${edgeSigs.length + directSigs.length} requests with sign-request in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

const results = { eb: [], es: [], db: [], ds: [] };
let e = 0;
let d = 0;
// Interleaved twice so drift in the machine's load hits every series alike.
for (let round = 0; round < 2; round++) {
  results.eb.push(...(await series("edge bearer", () => viaEdge({ authorization: `Bearer ${bearer}` }), N + WARMUP)));
  results.es.push(...(await series("edge signed", () => viaEdge(edgeSigs[e++]), N + WARMUP)));
  results.db.push(...(await series("direct bearer", () => direct({ authorization: `Bearer ${bearer}` }), N + WARMUP)));
  results.ds.push(...(await series("direct signed", () => direct(directSigs[d++]), N + WARMUP)));
}
const stat = (ms) => {
  const s = [...ms].sort((a, b) => a - b);
  return { p50: pct(s, 50), p99: pct(s, 99) };
};
const [eb, es, db, ds] = [results.eb, results.es, results.db, results.ds].map(stat);
const f = (x) => x.toFixed(3);
console.log(`through the edge, bearer key:  p50 ${f(eb.p50)} ms  p99 ${f(eb.p99)} ms  (N=${2 * N}, sequential dispatchFetch)`);
console.log(`through the edge, PQC-signed:  p50 ${f(es.p50)} ms  p99 ${f(es.p99)} ms  ratio p50 ${(es.p50 / eb.p50).toFixed(2)}x, +${f(es.p50 - eb.p50)} ms`);
console.log(`origin directly, bearer key:   p50 ${f(db.p50)} ms  p99 ${f(db.p99)} ms`);
console.log(`origin directly, PQC-signed:   p50 ${f(ds.p50)} ms  p99 ${f(ds.p99)} ms  ratio p50 ${(ds.p50 / db.p50).toFixed(2)}x, +${f(ds.p50 - db.p50)} ms`);
console.log(`the edge's own added p50 for a signed request: ${f(es.p50 - eb.p50 - (ds.p50 - db.p50))} ms`);
await edge.dispose();
await origin.stop();
rmSync(dir, { recursive: true, force: true });
