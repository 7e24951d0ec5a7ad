// Test harness: the built heady-edge Worker in workerd (Miniflare), a real heady-origin
// process, and Workers AI / Vectorize supplied as wrapped bindings whose answers (in the
// platform's real request/response shapes) come from Node.

import { Miniflare } from "miniflare";
import { after, before } from "node:test";
import { spawn, spawnSync, execFileSync } from "node:child_process";
import { createHash, createHmac, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const TUNNEL_KEY = "edge-test-tunnel-key-0123456789abcdef-0123456789abcdef";
export const EMBED_DIMS = 384;
export const CHAT_MODEL = "@cf/meta/llama-3.1-8b-instruct";
/** Accounts (`acct_` + 24 base32 characters) whose memory the fake Vectorize holds. */
export const ACCOUNT_A = `acct_${"a".repeat(24)}`;
export const ACCOUNT_B = `acct_${"b".repeat(24)}`;

/** A TCP port nobody listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function targetDir() {
  if (process.env.CARGO_TARGET_DIR) return process.env.CARGO_TARGET_DIR;
  const meta = execFileSync("cargo", ["metadata", "--format-version", "1", "--no-deps"], {
    cwd: root,
    encoding: "utf8",
  });
  return JSON.parse(meta).target_directory;
}

export function originBinary() {
  const bin = process.env.HEADY_ORIGIN_BIN || path.join(targetDir(), "release", "heady-origin");
  if (!existsSync(bin)) {
    throw new Error(`${bin} not found: build it with cargo build --release -p heady-origin`);
  }
  return bin;
}

/**
 * A tunnel identity made with `heady-origin tunnel identity new` in a fresh directory:
 * `{ file, secret, fingerprint }` (the private text and the `htid1:` fingerprint).
 */
export function makeIdentity(role) {
  const dir = mkdtempSync(path.join(tmpdir(), "heady-identity-"));
  const file = path.join(dir, `${role}.key`);
  execFileSync(originBinary(), ["tunnel", "identity", "new", "--role", role, "--out", file]);
  const fingerprint = execFileSync(originBinary(), ["tunnel", "identity", "show", "--key-file", file], {
    encoding: "utf8",
  }).trim();
  return { file, secret: readFileSync(file, "utf8").trim(), fingerprint };
}

/**
 * Starts heady-origin on a free port with a fresh data directory. `tunnel: "hmac"` (the
 * default here) verifies the shared TUNNEL_KEY; `tunnel: { identity, edges, sessionSecs }`
 * runs the default policy, pq-hybrid sessions, with that origin identity and the pinned edge
 * fingerprints. `env` adds variables (a shared HEADY_REDIS_URL, ...).
 */
export async function startOrigin({ tunnel = "hmac", env = {} } = {}) {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(tmpdir(), "heady-edge-origin-"));
  const bin = originBinary();
  let log = "";
  const auth =
    tunnel === "hmac"
      ? { HEADY_TUNNEL_AUTH: "hmac", HEADY_TUNNEL_KEY: TUNNEL_KEY }
      : {
          HEADY_TUNNEL_AUTH: "pq-hybrid",
          HEADY_TUNNEL_IDENTITY_FILE: tunnel.identity.file,
          HEADY_TUNNEL_EDGE_IDENTITIES: tunnel.edges.map((e) => e.fingerprint).join(","),
          ...(tunnel.sessionSecs ? { HEADY_DEFENSE__TUNNEL__SESSION_SECS: String(tunnel.sessionSecs) } : {}),
        };
  const child = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir], {
    // HEADY_REQUIRE_EDGE: /api and /v1 only through the (signing) edge, as in production.
    env: { ...process.env, ...auth, HEADY_REQUIRE_EDGE: "on", HEADY_LOG: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`heady-origin exited: ${log}`);
    try {
      const r = await fetch(`${url}/health`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`heady-origin did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    dataDir,
    bin,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await new Promise((r) => child.once("exit", r));
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A key made with the origin's CLI for `user` (the account is made when new). */
export function createKey(origin, user, { tier = "pro", clearance = "internal" } = {}) {
  const run = spawnSync(
    origin.bin,
    ["keys", "--data-dir", origin.dataDir, "create", "--user", user, "--tier", tier, "--clearance", clearance],
    { encoding: "utf8", env: { ...process.env, HEADY_TUNNEL_AUTH: "hmac", HEADY_TUNNEL_KEY: TUNNEL_KEY } },
  );
  const key = /hk_[0-9a-f]{64}/.exec(run.stdout)?.[0];
  if (!key) throw new Error(`keys create: ${run.stdout} ${run.stderr}`);
  return key;
}

/** A response read whole: status, headers, text, and the JSON when it is JSON. */
export async function readAnswer(res) {
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** A deterministic unit vector for `text` (stands in for bge-small's output). */
export function fakeEmbedding(text) {
  const out = new Array(EMBED_DIMS);
  let seed = createHash("sha256").update(text).digest();
  for (let i = 0; i < EMBED_DIMS; i++) {
    if (i % 32 === 0 && i > 0) seed = createHash("sha256").update(seed).digest();
    out[i] = seed[i % 32] / 255 - 0.5;
  }
  const norm = Math.hypot(...out);
  return out.map((x) => x / norm);
}

/**
 * What the fake Workers AI and Vectorize bindings received, and what they answer. Answers
 * follow the platform's shapes: text generation {response}, embeddings {shape, data},
 * Vectorize query {count, matches: [{id, score, metadata}]}.
 */
export class FakePlatform {
  constructor() {
    this.calls = [];
    // One namespace per account, as the edge queries them.
    this.vectors = [
      { id: "doc-cats", namespace: ACCOUNT_A, metadata: { title: "Cats" }, values: fakeEmbedding("cats") },
      { id: "doc-dogs", namespace: ACCOUNT_A, metadata: { title: "Dogs" }, values: fakeEmbedding("dogs") },
      { id: "doc-fish", namespace: ACCOUNT_A, metadata: { title: "Fish" }, values: fakeEmbedding("fish") },
      { id: "b-cats", namespace: ACCOUNT_B, metadata: { title: "B's cats" }, values: fakeEmbedding("cats") },
    ];
  }

  async handle(request) {
    const body = await request.json();
    const url = new URL(request.url);
    this.calls.push({ kind: url.pathname, ...body });
    if (url.pathname === "/ai/run") {
      const { model, inputs } = body;
      if (model === "@cf/baai/bge-small-en-v1.5") {
        const texts = Array.isArray(inputs.text) ? inputs.text : [inputs.text];
        return Response.json({ shape: [texts.length, EMBED_DIMS], data: texts.map(fakeEmbedding) });
      }
      const last = inputs.messages?.at(-1)?.content ?? inputs.prompt ?? "";
      return Response.json({ response: `edge answer to: ${last}`, usage: { prompt_tokens: 3, completion_tokens: 5 } });
    }
    if (url.pathname === "/vectorize/query") {
      const { vector, options } = body;
      // Vectorize: a query without a namespace reads the default one (vectors without one).
      const scored = this.vectors
        .filter((v) => (v.namespace ?? "") === (options?.namespace ?? ""))
        .map((v) => ({
          id: v.id,
          score: v.values.reduce((s, x, i) => s + x * vector[i], 0),
          metadata: options?.returnMetadata === "all" ? v.metadata : undefined,
        }))
        .sort((a, b) => b.score - a.score)
        .slice(0, options?.topK ?? 5);
      return Response.json({ count: scored.length, matches: scored });
    }
    return new Response("unknown fake call", { status: 404 });
  }
}

// The wrapped-binding workers. `Env::ai()` in workers-rs checks the class name is exactly
// "Ai"; Vectorize's is the platform's "VectorizeIndexImpl"-like object, bound by hand.
const AI_SCRIPT = `
class Ai {
  constructor(env) { this.env = env; }
  async run(model, inputs) {
    const r = await this.env.CONTROL.fetch("http://fake/ai/run", { method: "POST", body: JSON.stringify({ model, inputs }) });
    if (!r.ok) throw new Error("Workers AI: " + await r.text());
    return r.json();
  }
}
export default function (env) { return new Ai(env); }
`;
const VECTORIZE_SCRIPT = `
class VectorizeIndex {
  constructor(env) { this.env = env; }
  async query(vector, options) {
    const r = await this.env.CONTROL.fetch("http://fake/vectorize/query", { method: "POST", body: JSON.stringify({ vector: Array.from(vector), options }) });
    if (!r.ok) throw new Error("Vectorize: " + await r.text());
    return r.json();
  }
}
export default function (env) { return new VectorizeIndex(env); }
`;

// Benchmark fakes: the same answer shapes, computed inside workerd (no round trip to Node),
// so latency figures measure the edge, not the test harness.
const INLINE_AI_SCRIPT = `
class Ai {
  async run(model, inputs) {
    if (model === "@cf/baai/bge-small-en-v1.5") {
      const texts = Array.isArray(inputs.text) ? inputs.text : [inputs.text];
      return { shape: [texts.length, 384], data: texts.map(() => new Array(384).fill(1 / Math.sqrt(384))) };
    }
    return { response: "ok" };
  }
}
export default function () { return new Ai(); }
`;
const INLINE_VECTORIZE_SCRIPT = `
class VectorizeIndex {
  async query(vector, options) { return { count: 1, matches: [{ id: "a", score: 1, metadata: {} }] }; }
}
export default function () { return new VectorizeIndex(); }
`;

export function compatibilityDate() {
  const text = readFileSync(path.join(root, "wrangler.toml"), "utf8");
  return /^compatibility_date\s*=\s*"([^"]+)"/m.exec(text)[1];
}

/**
 * Starts the built Worker in workerd. `ai` / `vectorize` false leave the binding out; `vars`
 * are more Worker variables (wrangler.toml [vars]).
 */
export async function startEdge({
  originUrl,
  platform,
  ai = true,
  vectorize = true,
  port = 0,
  inline = false,
  tunnel = "hmac",
  vars = {},
}) {
  const build = path.join(root, "edge", "build");
  if (!existsSync(path.join(build, "worker", "shim.mjs"))) {
    throw new Error("edge/build/worker/shim.mjs missing: run deploy/build-edge.sh");
  }
  const wrappedBindings = {};
  if (ai) wrappedBindings.AI = "fake-ai";
  if (vectorize) wrappedBindings.VECTORIZE = "fake-vectorize";
  const control = (request) => platform?.handle(request);
  const mf = new Miniflare({
    host: "127.0.0.1",
    port,
    workers: [
      {
        name: "edge",
        modules: true,
        scriptPath: path.join(build, "worker", "shim.mjs"),
        modulesRoot: build,
        // worker-build emits ES modules with a .js extension.
        modulesRules: [
          { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
          { type: "CompiledWasm", include: ["**/*.wasm"] },
        ],
        compatibilityDate: compatibilityDate(),
        kvNamespaces: { HEADY_KV: "heady-kv" },
        // tunnel: "hmac" signs with TUNNEL_KEY; { identity, origins } opens pq-hybrid
        // sessions as that edge identity, pinning those origin fingerprints.
        bindings: {
          ORIGIN_URL: originUrl,
          ...(tunnel === "hmac"
            ? { TUNNEL_AUTH: "hmac", HEADY_TUNNEL_KEY: TUNNEL_KEY }
            : {
                TUNNEL_AUTH: "pq-hybrid",
                HEADY_TUNNEL_IDENTITY: tunnel.identity.secret,
                HEADY_ORIGIN_IDENTITIES: tunnel.origins.map((o) => o.fingerprint).join(", "),
              }),
          AI_CHAT_MODEL: CHAT_MODEL,
          EDGE_PROMPT_MAX_CHARS: "4000",
          ...vars,
        },
        wrappedBindings,
        assets: {
          directory: path.join(root, "edge", "assets"),
          binding: "ASSETS",
          routerConfig: { invoke_user_worker_ahead_of_assets: true, has_user_worker: true },
          assetConfig: { html_handling: "none", not_found_handling: "none" },
        },
      },
      inline
        ? { name: "fake-ai", modules: true, script: INLINE_AI_SCRIPT }
        : { name: "fake-ai", modules: true, script: AI_SCRIPT, serviceBindings: { CONTROL: control } },
      inline
        ? { name: "fake-vectorize", modules: true, script: INLINE_VECTORIZE_SCRIPT }
        : { name: "fake-vectorize", modules: true, script: VECTORIZE_SCRIPT, serviceBindings: { CONTROL: control } },
    ],
  });
  await mf.ready;
  return mf;
}

/** Minimal reader for deploy/properties.toml's top-level [[property]] keys. */
export function readProperties() {
  const text = readFileSync(path.join(root, "deploy", "properties.toml"), "utf8");
  const out = [];
  let current = null;
  let inSubtable = false;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "[[property]]") {
      current = {};
      out.push(current);
      inSubtable = false;
    } else if (line.startsWith("[")) {
      inSubtable = true;
    } else if (current && !inSubtable) {
      const m = /^(\w+)\s*=\s*(".*"|true|false)\s*$/.exec(line);
      if (m) current[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : m[2] === "true";
    }
  }
  for (const p of out) {
    p.serve ??= { static: "assets", external: "external" }[p.kind] ?? "origin";
    p.edge ??= true;
    p.origin ??= p.serve === "origin";
  }
  return out;
}

// --- the edge's tunnel signature, re-implemented from heady-shared's wire module so the
// tests can make signed, tampered and replayed requests to the origin directly.

function field(text) {
  return `${Buffer.byteLength(text)}:${text}\n`;
}

export function signedHeaders({ method, path: p, query = "", body = "", envelope }) {
  const digest = createHash("sha256").update(body).digest("hex");
  const canonical = [
    "heady-tunnel-v1",
    method.toUpperCase(),
    envelope.host.toLowerCase(),
    p,
    query,
    digest,
    envelope.subject,
    envelope.tier,
    envelope.clearance,
    envelope.client_ip,
    String(envelope.timestamp),
    envelope.nonce,
  ]
    .map(field)
    .join("");
  const sig = createHmac("sha256", TUNNEL_KEY).update(canonical).digest("hex");
  return {
    "x-heady-host": envelope.host.toLowerCase(),
    "x-heady-subject": envelope.subject,
    "x-heady-tier": envelope.tier,
    "x-heady-clearance": envelope.clearance,
    "x-heady-client-ip": envelope.client_ip,
    "x-heady-timestamp": String(envelope.timestamp),
    "x-heady-nonce": envelope.nonce,
    "x-heady-signature": `hmac-sha256 ${sig}`,
  };
}

export function envelope(overrides = {}) {
  return {
    host: "headyapi.com",
    subject: "ip:192.0.2.10",
    tier: "free",
    clearance: "PUBLIC",
    client_ip: "192.0.2.10",
    timestamp: Math.floor(Date.now() / 1000),
    nonce: randomUUID(),
    ...overrides,
  };
}

/**
 * For a test file: a real origin and the Worker in front of it, started before the file's
 * tests and stopped after them. Returns `{ origin, edge }`, filled in once started.
 */
export function edgeAndOrigin() {
  const live = { origin: undefined, edge: undefined };
  before(async () => {
    live.origin = await startOrigin();
    live.edge = await startEdge({ originUrl: live.origin.url, platform: new FakePlatform() });
  });
  after(async () => {
    await live.edge?.dispose();
    await live.origin?.stop();
  });
  return live;
}
