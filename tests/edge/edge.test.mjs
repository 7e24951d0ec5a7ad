// The built heady-edge Worker (Rust -> WASM) in workerd via Miniflare, against a real
// heady-origin process. Run by deploy/test.sh: `cd tests/edge && node --test`.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import {
  ACCOUNT_A,
  ACCOUNT_B,
  CHAT_MODEL,
  EMBED_DIMS,
  FakePlatform,
  TUNNEL_KEY,
  compatibilityDate,
  envelope,
  fakeEmbedding,
  freePort,
  readProperties,
  signedHeaders,
  startEdge,
  startOrigin,
} from "./harness.mjs";

const SECURITY_HEADERS = [
  "strict-transport-security",
  "content-security-policy",
  "x-content-type-options",
  "referrer-policy",
];

let origin;
let edge;
let platform;
// Origin features that land from main (identity endpoint, signature verification); the
// tests needing them are skipped, saying so, until this branch has them.
let originHasIdentity = false;
let originVerifies = false;
// Memory routes are INTERNAL at an origin that classifies routes: a Pro/INTERNAL key made with
// `heady-origin keys create` when the origin has keys, else none (anonymous works there).
let memoryAuth = {};
// The envelope the tests sign direct origin requests with: that key's account (its subject is
// `user:<account id>` once `createKey` has made the key).
const insider = { subject: "user:edge-test", tier: "pro", clearance: "INTERNAL" };

function createKey(tier, clearance) {
  const run = spawnSync(
    origin.bin,
    ["keys", "--data-dir", origin.dataDir, "create", "--user", "edge-test", "--tier", tier, "--clearance", clearance],
    { encoding: "utf8", env: { ...process.env, HEADY_TUNNEL_AUTH: "hmac", HEADY_TUNNEL_KEY: TUNNEL_KEY } },
  );
  const key = /hk_[0-9a-f]{64}/.exec(run.stdout)?.[0];
  assert.ok(key, `keys create printed no key: ${run.stdout} ${run.stderr}`);
  const account = /acct_[a-z2-7]{24}/.exec(run.stderr + run.stdout)?.[0];
  if (account) insider.subject = `user:${account}`;
  return key;
}

let ipCounter = 0;
/** A client address no other test uses, so limiter state never leaks between tests. */
function freshIp() {
  ipCounter += 1;
  return `198.51.100.${ipCounter}`;
}

let netCounter = 0;
/** The first four groups (lowercase hex, as the edge spells them) of an IPv6 /64 no other test uses. */
function freshNet64() {
  netCounter += 1;
  return `2001:db8:${netCounter.toString(16)}:64`;
}

function call(mf, url, { method = "GET", headers = {}, body, ip = freshIp() } = {}) {
  return mf.dispatchFetch(url, {
    method,
    headers: { "cf-connecting-ip": ip, ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    redirect: "manual",
  });
}

/**
 * A key the edge knows from its KV session cache, for `subject` (an account's keys are
 * `user:<account id>`); returns the Authorization header.
 */
async function cachedKey(mf, subject, tier = "pro", clearance = "INTERNAL") {
  const key = `hk_${createHash("sha256").update(randomUUID()).digest("hex")}`;
  const kv = await mf.getKVNamespace("HEADY_KV");
  const id = createHash("sha256").update(key).digest("hex");
  await kv.put(`sess:${id}`, JSON.stringify({ subject, tier, clearance }), { expirationTtl: 300 });
  return { authorization: `Bearer ${key}` };
}

/** Stays clear of a fixed window's end, so counts are not split across two windows. */
async function awayFromMinuteEnd(margin = 10_000) {
  const intoMinute = Date.now() % 60_000;
  if (intoMinute > 60_000 - margin) await new Promise((r) => setTimeout(r, 60_500 - intoMinute));
}

function post(mf, path, body, opts = {}) {
  return call(mf, `http://headyapi.com${path}`, {
    method: "POST",
    body,
    ...opts,
    headers: { "content-type": "application/json", ...(opts.headers ?? {}) },
  });
}

before(async () => {
  origin = await startOrigin();
  platform = new FakePlatform();
  edge = await startEdge({ originUrl: origin.url, platform, vars: SPACE_URLS });
  const identity = await fetch(`${origin.url}/api/identity`);
  originHasIdentity = identity.status !== 404;
  const unsigned = await fetch(`${origin.url}/api/memory/stats`);
  originVerifies = unsigned.status === 401;
  if (originHasIdentity) memoryAuth = { authorization: `Bearer ${createKey("pro", "internal")}` };
});

after(async () => {
  await edge?.dispose();
  await origin?.stop();
});

test("wrangler.toml's compatibility_date is not later than the local workerd's", () => {
  const { version } = JSON.parse(readFileSync(new URL("./node_modules/workerd/package.json", import.meta.url), "utf8"));
  const date = /^1\.(\d{4})(\d{2})(\d{2})\./.exec(version);
  assert.ok(date, `workerd version ${version}`);
  assert.ok(compatibilityDate() <= `${date[1]}-${date[2]}-${date[3]}`, `${compatibilityDate()} vs workerd ${version}`);
});

/** The Spaces' addresses as a deployment sets them; SPACE_3_URL is left unset. */
const SPACE_URLS = {
  SPACE_1_URL: "https://huggingface.co/spaces/heady/space-one",
  SPACE_2_URL: "https://heady-space-two.hf.space/",
};

describe("properties", () => {
  test("every property in deploy/properties.toml routes to what serves it", async () => {
    const props = readProperties();
    assert.equal(props.length, 22);
    for (const p of props) {
      const res = await call(edge, `https://${p.hostname}/`, { headers: { accept: "text/html" } });
      const text = await res.text();
      if (!p.edge) {
        assert.equal(res.status, 404, `${p.hostname} is parked`);
        continue;
      }
      for (const h of SECURITY_HEADERS) assert.ok(res.headers.get(h), `${p.hostname}: ${h}`);
      if (p.serve === "assets") {
        assert.equal(res.status, 200, p.hostname);
        assert.match(res.headers.get("content-type"), /text\/html/);
        assert.ok(text.includes(`<title>${p.title}</title>`), `${p.hostname} has its own title`);
        if (p.description) assert.ok(text.includes(p.description), `${p.hostname} description`);
      } else if (p.serve === "external" && SPACE_URLS[p.url_var]) {
        assert.equal(res.status, 302, p.hostname);
        assert.equal(res.headers.get("location"), SPACE_URLS[p.url_var]);
      } else if (p.serve === "external") {
        // Not set in this deployment: a 503 that names the setting, never a redirect.
        assert.equal(res.status, 503, p.hostname);
        assert.equal(res.headers.get("location"), null);
        assert.match(text, /property_not_configured/);
        assert.ok(text.includes(`set ${p.url_var}`), `${p.hostname}: ${text}`);
      } else {
        assert.equal(res.headers.get("x-heady-served-by"), "origin", `${p.hostname} is tunnelled`);
      }
    }
  });

  test("landing pages carry HSTS, CSP, nosniff and Referrer-Policy; the stylesheet loads", async () => {
    const res = await call(edge, "https://headyme.com/");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("strict-transport-security"), /max-age=\d+/);
    assert.match(res.headers.get("content-security-policy"), /default-src 'none'/);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.ok(res.headers.get("referrer-policy"));
    const css = await call(edge, "https://headyme.com/_heady/site.css");
    assert.equal(css.status, 200);
    assert.match(css.headers.get("content-type"), /text\/css/);
  });

  test("unknown hosts and paths are 404: HTML for browsers, JSON for API clients", async () => {
    const html = await call(edge, "https://unknown.example.org/", { headers: { accept: "text/html" } });
    assert.equal(html.status, 404);
    assert.match(html.headers.get("content-type"), /text\/html/);
    assert.match(await html.text(), /Not found/);
    const json = await call(edge, "https://unknown.example.org/api/chat", {
      method: "POST",
      headers: { accept: "application/json" },
      body: "{}",
    });
    assert.equal(json.status, 404);
    assert.equal((await json.json()).error.code, "not_found");
    const page = await call(edge, "https://headyme.com/no-such-page");
    assert.equal(page.status, 404);
    const write = await call(edge, "https://headyme.com/", { method: "POST", body: "x" });
    assert.equal(write.status, 405);
  });
});

describe("defense", () => {
  test("a Free subject gets 429 with RateLimit headers after 30 requests in a window", async () => {
    // Stay clear of a fixed-window boundary so the count is not split across two windows.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 50_000) await new Promise((r) => setTimeout(r, 60_500 - intoMinute));
    const ip = freshIp();
    for (let i = 0; i < 30; i++) {
      const res = await post(edge, "/api/chat", { prompt: `hello ${i}` }, { ip });
      const text = await res.text();
      assert.equal(res.status, 200, `request ${i + 1}: ${text}`);
      assert.equal(res.headers.get("ratelimit-policy"), '"free";q=30;w=60');
    }
    const res = await post(edge, "/api/chat", { prompt: "one too many" }, { ip });
    assert.equal(res.status, 429);
    assert.equal(res.headers.get("ratelimit-policy"), '"free";q=30;w=60');
    assert.match(res.headers.get("ratelimit"), /^"free";r=0;t=\d+$/);
    assert.ok(Number(res.headers.get("retry-after")) >= 1);
    const body = await res.json();
    assert.equal(body.error.code, "rate_limited");
    assert.match(body.error.message, /30 requests per 60 s/);
  });

  test("limiter state is written to KV, at most once a second per key", async () => {
    const ip = freshIp();
    for (let i = 0; i < 5; i++) await (await post(edge, "/api/chat", { prompt: "x" }, { ip })).arrayBuffer();
    const kv = await edge.getKVNamespace("HEADY_KV");
    // The first request wrote at once; the other four are one delayed write ~1 s later.
    let state;
    for (let i = 0; i < 40 && !(state?.window?.curr >= 5); i++) {
      await new Promise((r) => setTimeout(r, 100));
      state = JSON.parse((await kv.get(`rl:ip:${ip}`)) ?? "null");
    }
    assert.equal(state.window.curr, 5);
  });

  test("a KV ban blocks every request from the subject with 403 and retry_after", async () => {
    const ip = freshIp();
    const kv = await edge.getKVNamespace("HEADY_KV");
    await kv.put(`ban:ip:${ip}`, JSON.stringify({ until_ms: Date.now() + 600_000, reason: "test" }), {
      expirationTtl: 600,
    });
    const res = await post(edge, "/api/chat", { prompt: "hi" }, { ip });
    assert.equal(res.status, 403);
    const body = await res.json();
    assert.equal(body.error.code, "banned");
    assert.ok(body.error.retry_after > 590 && body.error.retry_after <= 600);
    assert.ok(Number(res.headers.get("retry-after")) > 590);
    const page = await call(edge, "https://admin.headysystems.com/", { ip });
    assert.equal(page.status, 403, "tunnelled pages check the ban list too");
    const other = await post(edge, "/api/chat", { prompt: "hi" });
    assert.equal(other.status, 200, "other clients are not affected");
  });

  test("abuse (3x the limit in one window) writes a KV ban", async () => {
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 45_000) await new Promise((r) => setTimeout(r, 60_500 - intoMinute));
    const ip = freshIp();
    const statuses = [];
    for (let i = 0; i < 91; i++) {
      const res = await post(edge, "/api/chat", { prompt: "x" }, { ip });
      statuses.push(res.status);
      await res.arrayBuffer();
    }
    assert.equal(statuses.filter((s) => s === 200).length, 30);
    assert.equal(statuses.at(-1), 403);
    const kv = await edge.getKVNamespace("HEADY_KV");
    let ban = null;
    for (let i = 0; i < 20 && !ban; i++) {
      ban = JSON.parse((await kv.get(`ban:ip:${ip}`)) ?? "null");
      if (!ban) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(ban && ban.until_ms > Date.now() + 800_000, JSON.stringify(ban));
  });

  test("an API key's tier comes from the KV session cache", async () => {
    const key = `hk_${"c".repeat(64)}`;
    const kv = await edge.getKVNamespace("HEADY_KV");
    const id = createHash("sha256").update(key).digest("hex");
    await kv.put(`sess:${id}`, JSON.stringify({ subject: "user:cached", tier: "pro", clearance: "INTERNAL" }), {
      expirationTtl: 300,
    });
    const res = await post(edge, "/api/chat", { prompt: "hi" }, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get("ratelimit-policy"), '"pro";q=120;w=60');
    // Enterprise is unlimited: no RateLimit fields at all.
    const ent = `hk_${"e".repeat(64)}`;
    const entId = createHash("sha256").update(ent).digest("hex");
    await kv.put(`sess:${entId}`, JSON.stringify({ subject: "user:big", tier: "enterprise", clearance: "RESTRICTED" }), {
      expirationTtl: 300,
    });
    const res2 = await post(edge, "/api/code", { task: "x" }, { headers: { authorization: `Bearer ${ent}` } });
    assert.equal(res2.headers.get("ratelimit-policy"), null);
  });

  test("a malformed Authorization header is 401, not anonymous", async () => {
    const res = await post(edge, "/api/chat", { prompt: "hi" }, { headers: { authorization: "Bearer sk-not-heady" } });
    assert.equal(res.status, 401);
    assert.equal((await res.json()).error.code, "invalid_api_key");
  });

  test("Free subjects cannot run Pro actions", async () => {
    const res = await post(edge, "/api/code", { task: "x" });
    assert.equal(res.status, 403);
    assert.equal((await res.json()).error.code, "upgrade_required", "the origin's code for the same rule");
  });

  test("an IPv6 client is one subject per /64: addresses in one /64 share one limit", async () => {
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 50_000) await new Promise((r) => setTimeout(r, 60_500 - intoMinute));
    const net = freshNet64();
    const ips = [`${net}::1`, `${net}:aaaa:bbbb:cccc:dddd`];
    for (let i = 0; i < 30; i++) {
      const ip = ips[i % 2];
      const res = await post(edge, "/api/chat", { prompt: `hello ${i}` }, { ip });
      const text = await res.text();
      assert.equal(res.status, 200, `request ${i + 1} from ${ip}: ${text}`);
      assert.equal(res.headers.get("ratelimit-policy"), '"free";q=30;w=60');
    }
    // A third address of the same /64 is over the /64's limit too.
    const res = await post(edge, "/api/chat", { prompt: "one too many" }, { ip: `${net}:1:2:3:4` });
    assert.equal(res.status, 429);
    assert.equal((await res.json()).error.code, "rate_limited");
    // Another /64 has its own limit.
    const other = await post(edge, "/api/chat", { prompt: "hi" }, { ip: `${freshNet64()}::1` });
    assert.equal(other.status, 200, await other.clone().text());
    await other.arrayBuffer();
    // KV holds one state for the /64, under the subject's spelling (the origin's too).
    const kv = await edge.getKVNamespace("HEADY_KV");
    let state;
    for (let i = 0; i < 40 && !(state?.window?.curr >= 30); i++) {
      await new Promise((r) => setTimeout(r, 100));
      state = JSON.parse((await kv.get(`rl:ip:${net}::/64`)) ?? "null");
    }
    assert.equal(state?.window?.curr, 30, JSON.stringify(state));
    assert.equal(await kv.get(`rl:ip:${ips[0]}`), null, "no state per address");
  });

  test("an IPv6 client's /64 is one entry of the ban list", async () => {
    const net = freshNet64();
    const kv = await edge.getKVNamespace("HEADY_KV");
    await kv.put(`ban:ip:${net}::/64`, JSON.stringify({ until_ms: Date.now() + 600_000, reason: "test" }), {
      expirationTtl: 600,
    });
    for (const ip of [`${net}::1`, `${net}:ffff:1:2:3`]) {
      const res = await post(edge, "/api/chat", { prompt: "hi" }, { ip });
      assert.equal(res.status, 403, ip);
      assert.equal((await res.json()).error.code, "banned");
    }
    const other = await post(edge, "/api/chat", { prompt: "hi" }, { ip: `${freshNet64()}::1` });
    assert.equal(other.status, 200, await other.clone().text());
  });

  test("bad bodies are 400 JSON naming the problem", async () => {
    const notJson = await post(edge, "/api/chat", "{nope");
    assert.equal(notJson.status, 400);
    assert.match((await notJson.json()).error.message, /request body/);
    const noPrompt = await post(edge, "/api/chat", {});
    assert.equal(noPrompt.status, 400);
    assert.match((await noPrompt.json()).error.message, /messages/);
    const wrongDims = await post(edge, "/api/search", { embedding: [1, 2, 3] }, { headers: await cachedKey(edge, `user:${ACCOUNT_A}`) });
    assert.equal(wrongDims.status, 400);
    assert.match((await wrongDims.json()).error.message, /3 dimensions/);
  });
});

describe("conductor at the edge", () => {
  test("short chat runs on Workers AI with the configured model", async () => {
    const before = platform.calls.length;
    const res = await post(edge, "/api/chat", { messages: [{ role: "user", content: "what is heady?" }] });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-heady-served-by"), "edge");
    const body = await res.json();
    assert.deepEqual(
      { action: body.action, group: body.group, served_by: body.served_by, model: body.model },
      { action: "chat", group: "reasoning", served_by: "edge", model: CHAT_MODEL },
    );
    assert.equal(body.response, "edge answer to: what is heady?");
    const seen = platform.calls.slice(before);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].model, CHAT_MODEL);
    assert.deepEqual(seen[0].inputs.messages, [{ role: "user", content: "what is heady?" }]);
  });

  test("a long prompt is tunnelled to the origin instead", async () => {
    const before = platform.calls.length;
    const res = await post(edge, "/api/complete", { prompt: "x".repeat(5000) });
    assert.equal(res.headers.get("x-heady-served-by"), "origin");
    await res.arrayBuffer();
    assert.equal(platform.calls.length, before, "Workers AI was not called");
  });

  test("embed runs on Workers AI embeddings (bge-small, 384 dimensions)", async () => {
    // embed is a Pro action: a Pro key from the session cache.
    const key = `hk_${"b".repeat(64)}`;
    const kv = await edge.getKVNamespace("HEADY_KV");
    const id = createHash("sha256").update(key).digest("hex");
    await kv.put(`sess:${id}`, JSON.stringify({ subject: "user:embedder", tier: "pro", clearance: "PUBLIC" }), {
      expirationTtl: 300,
    });
    const free = await post(edge, "/api/embed", { text: "cats" });
    assert.equal(free.status, 403, "Free subjects may not embed");
    await free.arrayBuffer();
    const res = await post(edge, "/api/embed", { text: ["cats", "dogs"] }, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.model, "@cf/baai/bge-small-en-v1.5");
    assert.equal(body.dimensions, EMBED_DIMS);
    assert.equal(body.embeddings.length, 2);
    assert.deepEqual(body.embeddings[0].map((x) => Math.round(x * 1e5)), fakeEmbedding("cats").map((x) => Math.round(x * 1e5)));
  });

  test("search queries Vectorize with a given vector, in the caller's account's namespace", async () => {
    const before = platform.calls.length;
    const headers = await cachedKey(edge, `user:${ACCOUNT_A}`);
    const res = await post(edge, "/api/search", { embedding: fakeEmbedding("dogs"), top_k: 2 }, { headers });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.served_by, "edge");
    assert.equal(body.matches.length, 2);
    assert.equal(body.matches[0].id, "doc-dogs");
    assert.deepEqual(body.matches[0].metadata, { title: "Dogs" });
    const q = platform.calls.slice(before).find((c) => c.kind === "/vectorize/query");
    assert.equal(q.vector.length, EMBED_DIMS);
    assert.deepEqual(q.options, { topK: 2, returnMetadata: "all", namespace: ACCOUNT_A });
  });

  test("search by text embeds at the edge, then queries Vectorize", async () => {
    const before = platform.calls.length;
    const headers = await cachedKey(edge, `user:${ACCOUNT_A}`);
    const res = await post(edge, "/api/search", { text: "fish" }, { headers });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).matches[0].id, "doc-fish");
    const kinds = platform.calls.slice(before).map((c) => c.kind);
    assert.deepEqual(kinds, ["/ai/run", "/vectorize/query"]);
  });

  test("two accounts searching for the same thing never see each other's vectors", async () => {
    const a = await (await post(edge, "/api/search", { text: "cats", top_k: 5 }, { headers: await cachedKey(edge, `user:${ACCOUNT_A}`) })).json();
    const b = await (await post(edge, "/api/search", { text: "cats", top_k: 5 }, { headers: await cachedKey(edge, `user:${ACCOUNT_B}`) })).json();
    assert.deepEqual(a.matches.map((m) => m.id).sort(), ["doc-cats", "doc-dogs", "doc-fish"]);
    assert.deepEqual(b.matches.map((m) => m.id), ["b-cats"]);
  });

  test("anonymous callers get no memory at the edge; keys below INTERNAL or without an account neither", async () => {
    const before = platform.calls.length;
    const anonymous = await post(edge, "/api/search", { text: "cats" });
    assert.equal(anonymous.status, 401);
    const body = await anonymous.json();
    assert.equal(body.error.code, "authentication_required", "as the origin answers for its INTERNAL memory routes");
    assert.match(body.error.message, /no memory/);
    const publicKey = await post(edge, "/api/query", { text: "cats" }, { headers: await cachedKey(edge, `user:${ACCOUNT_A}`, "pro", "PUBLIC") });
    assert.equal(publicKey.status, 403);
    assert.equal((await publicKey.json()).error.code, "insufficient_clearance");
    const noAccount = await post(edge, "/api/search", { text: "cats" }, { headers: await cachedKey(edge, "user:legacy-name") });
    assert.equal(noAccount.status, 403);
    assert.equal((await noAccount.json()).error.code, "memory_unavailable");
    assert.equal(platform.calls.slice(before).length, 0, "nothing reached Workers AI or Vectorize");
  });
});

describe("tunnel to the origin", () => {
  test("a memory insert through the edge is stored in the origin's DuckDB", async () => {
    const content = `edge tunnel test ${randomUUID()}`;
    const res = await post(edge, "/api/memory/vectors", { content, session_id: "edge-test" }, { headers: memoryAuth });
    const text = await res.text();
    assert.ok(res.status === 200 || res.status === 201, `${res.status}: ${text}`);
    assert.equal(res.headers.get("x-heady-served-by"), "origin");
    // Read it back from the origin directly (signed like the edge, once the origin checks).
    const body = JSON.stringify({ text: content, top_k: 1, session_id: "edge-test" });
    const headers = { "content-type": "application/json" };
    if (originVerifies) {
      Object.assign(headers, signedHeaders({ method: "POST", path: "/api/memory/search", body, envelope: envelope(insider) }));
    }
    const found = await fetch(`${origin.url}/api/memory/search`, { method: "POST", headers, body });
    const results = await found.json();
    assert.equal(found.status, 200, JSON.stringify(results));
    assert.ok(JSON.stringify(results).includes(content), JSON.stringify(results));
  });

  test("the origin refuses unsigned, tampered, wrong-key, stale and replayed requests", async (t) => {
    if (!originVerifies) {
      t.skip("origin on this branch does not verify tunnel signatures yet (lands from main)");
      return;
    }
    const body = JSON.stringify({ content: "signed insert" });
    const send = (headers, b = body) =>
      fetch(`${origin.url}/api/memory/vectors`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: b,
      });
    const good = signedHeaders({ method: "POST", path: "/api/memory/vectors", body, envelope: envelope(insider) });
    const ok = await send(good);
    assert.ok(ok.status === 200 || ok.status === 201, await ok.text());
    assert.equal((await send(good)).status, 401, "replayed nonce");
    assert.equal((await send({})).status, 401, "unsigned");
    const fresh = () => signedHeaders({ method: "POST", path: "/api/memory/vectors", body, envelope: envelope(insider) });
    assert.equal((await send(fresh(), JSON.stringify({ content: "tampered" }))).status, 401, "tampered body");
    assert.equal((await send({ ...fresh(), "x-heady-tier": "enterprise" })).status, 401, "tampered tier");
    const stale = signedHeaders({
      method: "POST",
      path: "/api/memory/vectors",
      body,
      envelope: envelope({ ...insider, timestamp: Math.floor(Date.now() / 1000) - 3600 }),
    });
    assert.equal((await send(stale)).status, 401, "stale timestamp");
    const wrong = fresh();
    wrong["x-heady-signature"] = `hmac-sha256 ${"0".repeat(64)}`;
    assert.equal((await send(wrong)).status, 401, "wrong key");
  });

  test("on a session-cache miss the tier comes from the origin and is cached in KV", async (t) => {
    if (!originHasIdentity) {
      t.skip("origin on this branch has no /api/identity yet (lands from main)");
      return;
    }
    const key = createKey("pro", "internal");
    const res = await post(edge, "/api/chat", { prompt: "hi" }, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get("ratelimit-policy"), '"pro";q=120;w=60');
    const kv = await edge.getKVNamespace("HEADY_KV");
    const cached = JSON.parse((await kv.get(`sess:${createHash("sha256").update(key).digest("hex")}`)) ?? "null");
    assert.equal(cached?.tier, "pro");
    assert.equal(cached?.clearance, "INTERNAL");

    const unknown = `hk_${"a".repeat(64)}`;
    const refused = await post(edge, "/api/chat", { prompt: "hi" }, { headers: { authorization: `Bearer ${unknown}` } });
    assert.equal(refused.status, 401, "an unknown key is refused by the origin");
    assert.equal((await refused.json()).error.code, "invalid_api_key");
  });
});

const RECORDED_KEY = `hk_${"d".repeat(64)}`;

describe("what the edge sends through the tunnel (a recording origin)", () => {
  // A Node HTTP server in the origin's place: it checks each request's signature with the
  // canonical form re-implemented in harness.mjs and records what arrived.
  let server;
  let seen = [];
  let viaEdge;
  before(async () => {
    server = createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        const url = new URL(req.url, "http://origin");
        seen.push({ method: req.method, path: url.pathname, query: url.search.slice(1), headers: req.headers, body });
        if (url.pathname === "/api/identity") {
          // The identity contract (heady_shared::identity::IdentityAnswer, every field the
          // origin sends): 200 with the key holder's tier, or 401.
          if (req.headers.authorization === `Bearer ${RECORDED_KEY}`) {
            res.writeHead(200, { "content-type": "application/json" });
            res.end(
              JSON.stringify({
                subject: "user:recorded",
                tier: "pro",
                clearance: "internal",
                key_id: "0123456789abcdef",
                anonymous: false,
                limits: { requests_per_window: 120, window_secs: 60 },
                features: ["basic_chat", "search", "analyze", "all_tools"],
                ttl_secs: 120,
              }),
            );
          } else {
            res.writeHead(401, { "content-type": "application/json" });
            res.end(JSON.stringify({ error: { code: "invalid_api_key", message: "unknown key" } }));
          }
          return;
        }
        if (url.pathname === "/api/slow") {
          res.writeHead(200, { "content-type": "text/plain" });
          res.write("first;");
          setTimeout(() => res.end("second"), 600);
          return;
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ ok: true }));
      });
    });
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    viaEdge = await startEdge({ originUrl: `http://127.0.0.1:${server.address().port}`, platform });
  });
  after(async () => {
    await viaEdge?.dispose();
    await new Promise((r) => server.close(r));
  });

  test("requests are signed over what is sent, and client x-heady-*/cf-* headers are replaced", async () => {
    seen = [];
    const ip = freshIp();
    const body = JSON.stringify({ content: "signed?", session_id: "s1" });
    const res = await viaEdge.dispatchFetch("https://headyapi.com/api/memory/vectors?x=1&y=a%20b", {
      method: "POST",
      body,
      headers: {
        "cf-connecting-ip": ip,
        "content-type": "application/json",
        "x-heady-subject": "user:admin",
        "x-heady-tier": "enterprise",
        "x-heady-signature": "hmac-sha256 00",
        "x-request-id": "req-1",
      },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-heady-served-by"), "origin");
    await res.arrayBuffer();
    assert.equal(seen.length, 1);
    const got = seen[0];
    assert.equal(got.path, "/api/memory/vectors");
    assert.equal(got.query, "x=1&y=a%20b");
    assert.equal(got.body.toString(), body);
    assert.equal(got.headers["x-request-id"], "req-1", "ordinary headers pass through");
    assert.equal(got.headers["cf-connecting-ip"], undefined, "cf-* headers are not forwarded");
    assert.equal(got.headers["x-heady-subject"], `ip:${ip}`);
    assert.equal(got.headers["x-heady-tier"], "free");
    assert.equal(got.headers["x-heady-clearance"], "PUBLIC");
    assert.equal(got.headers["x-heady-client-ip"], ip);
    assert.equal(got.headers["x-heady-host"], "headyapi.com");
    assert.ok(Math.abs(Number(got.headers["x-heady-timestamp"]) - Date.now() / 1000) < 5);
    const expected = signedHeaders({
      method: "POST",
      path: got.path,
      query: got.query,
      body: got.body,
      envelope: {
        host: got.headers["x-heady-host"],
        subject: got.headers["x-heady-subject"],
        tier: got.headers["x-heady-tier"],
        clearance: got.headers["x-heady-clearance"],
        client_ip: got.headers["x-heady-client-ip"],
        timestamp: Number(got.headers["x-heady-timestamp"]),
        nonce: got.headers["x-heady-nonce"],
      },
    });
    assert.equal(got.headers["x-heady-signature"], expected["x-heady-signature"]);
    // A second request gets a new nonce.
    await (await post(viaEdge, "/api/memory/stats", undefined, { ip })).arrayBuffer();
    assert.notEqual(seen[1].headers["x-heady-nonce"], got.headers["x-heady-nonce"]);
  });

  test("an IPv6 client is vouched for as its /64; its address is sent in full", async () => {
    seen = [];
    const net = freshNet64();
    const ip = `${net}:1234:5678:9abc:def0`;
    const res = await call(viaEdge, "https://headyapi.com/api/memory/stats", { ip });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(seen.length, 1);
    assert.equal(seen[0].headers["x-heady-subject"], `ip:${net}::/64`);
    assert.equal(seen[0].headers["x-heady-client-ip"], ip);
  });

  test("a session-cache miss asks the origin's /api/identity (signed, with the key) and caches the answer", async () => {
    seen = [];
    const auth = { authorization: `Bearer ${RECORDED_KEY}` };
    const res = await post(viaEdge, "/api/chat", { prompt: "hi" }, { headers: auth });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get("ratelimit-policy"), '"pro";q=120;w=60');
    const lookups = seen.filter((r) => r.path === "/api/identity");
    assert.equal(lookups.length, 1);
    const lookup = lookups[0];
    assert.equal(lookup.method, "GET");
    assert.equal(lookup.headers.authorization, auth.authorization);
    const expected = signedHeaders({
      method: "GET",
      path: "/api/identity",
      body: "",
      envelope: {
        host: lookup.headers["x-heady-host"],
        subject: lookup.headers["x-heady-subject"],
        tier: lookup.headers["x-heady-tier"],
        clearance: lookup.headers["x-heady-clearance"],
        client_ip: lookup.headers["x-heady-client-ip"],
        timestamp: Number(lookup.headers["x-heady-timestamp"]),
        nonce: lookup.headers["x-heady-nonce"],
      },
    });
    assert.equal(lookup.headers["x-heady-signature"], expected["x-heady-signature"]);
    const kv = await viaEdge.getKVNamespace("HEADY_KV");
    const cached = JSON.parse((await kv.get(`sess:${createHash("sha256").update(RECORDED_KEY).digest("hex")}`)) ?? "null");
    const { until_ms: until, ...session } = cached;
    assert.deepEqual(session, { subject: "user:recorded", tier: "pro", clearance: "INTERNAL" });
    // Trusted for the answer's ttl_secs (120) capped at 60 s: a tier change is seen within a minute.
    assert.ok(until > Date.now() + 55_000 && until <= Date.now() + 60_000, `until_ms ${until}`);
    // Served from the cache now: no second lookup.
    await (await post(viaEdge, "/api/chat", { prompt: "again" }, { headers: auth })).arrayBuffer();
    assert.equal(seen.filter((r) => r.path === "/api/identity").length, 1);
    // A key the origin refuses is a 401 at the edge.
    const refused = await post(viaEdge, "/api/chat", { prompt: "hi" }, { headers: { authorization: `Bearer hk_${"9".repeat(64)}` } });
    assert.equal(refused.status, 401);
    assert.equal((await refused.json()).error.code, "invalid_api_key");
  });

  test("a key the origin refused is remembered for 60 s: repeating it costs no origin round trip", async () => {
    seen = [];
    const ip = freshIp();
    const bad = { authorization: `Bearer hk_${"7".repeat(64)}` };
    for (let i = 0; i < 5; i++) {
      const res = await post(viaEdge, "/api/chat", { prompt: "hi" }, { headers: bad, ip });
      assert.equal(res.status, 401);
      assert.equal((await res.json()).error.code, "invalid_api_key");
    }
    assert.equal(seen.filter((r) => r.path === "/api/identity").length, 1);
    const kv = await viaEdge.getKVNamespace("HEADY_KV");
    const cached = JSON.parse((await kv.get(`sess:${createHash("sha256").update(bad.authorization.slice(7)).digest("hex")}`)) ?? "null");
    assert.equal(cached?.refused?.code, "invalid_api_key", JSON.stringify(cached));
  });

  test("more than 20 failed keys a minute from one /64 get 429 too_many_failed_auth", async () => {
    await awayFromMinuteEnd(15_000);
    seen = [];
    const net = freshNet64();
    const ips = [`${net}::1`, `${net}:1:2:3:4`];
    for (let i = 0; i < 20; i++) {
      const key = `hk_${createHash("sha256").update(`bad-${net}-${i}`).digest("hex")}`;
      const res = await post(viaEdge, "/api/chat", { prompt: "hi" }, { headers: { authorization: `Bearer ${key}` }, ip: ips[i % 2] });
      assert.equal(res.status, 401, `failure ${i + 1}`);
      await res.arrayBuffer();
    }
    const lookups = seen.filter((r) => r.path === "/api/identity").length;
    assert.equal(lookups, 20);
    const over = await post(viaEdge, "/api/chat", { prompt: "hi" }, { headers: { authorization: `Bearer hk_${"6".repeat(64)}` }, ip: `${net}:9::9` });
    assert.equal(over.status, 429);
    assert.ok(Number(over.headers.get("retry-after")) >= 1);
    assert.equal((await over.json()).error.code, "too_many_failed_auth");
    assert.equal(seen.filter((r) => r.path === "/api/identity").length, lookups, "no origin round trip once limited");
    const malformed = await post(viaEdge, "/api/chat", { prompt: "hi" }, { headers: { authorization: "Bearer sk-x" }, ip: ips[0] });
    assert.equal(malformed.status, 429);
    await malformed.arrayBuffer();
    // A key already known to be valid, and anonymous requests, still pass; other /64s too.
    const known = await post(viaEdge, "/api/chat", { prompt: "hi" }, { headers: await cachedKey(viaEdge, "user:known"), ip: ips[1] });
    assert.equal(known.status, 200, await known.clone().text());
    const anonymous = await post(viaEdge, "/api/chat", { prompt: "hi" }, { ip: ips[0] });
    assert.equal(anonymous.status, 200);
    const elsewhere = await post(viaEdge, "/api/chat", { prompt: "hi" }, { headers: { authorization: `Bearer hk_${"6".repeat(64)}` }, ip: `${freshNet64()}::1` });
    assert.equal(elsewhere.status, 401);
    // The count is in KV for the other isolates, under the /64.
    const kv = await viaEdge.getKVNamespace("HEADY_KV");
    let state;
    for (let i = 0; i < 40 && !(state?.curr >= 20); i++) {
      await new Promise((r) => setTimeout(r, 100));
      state = JSON.parse((await kv.get(`af:ip:${net}::/64`)) ?? "null");
    }
    assert.ok(state?.curr >= 20, JSON.stringify(state));
  });

  test("response bodies stream through: the first bytes arrive before the origin finishes", async () => {
    const t0 = Date.now();
    // identity: workerd's own gzip of the response (for clients that accept it) buffers
    // small chunks; the edge itself passes the stream through untouched.
    const res = await call(viaEdge, "https://headyapi.com/api/slow", { headers: { "accept-encoding": "identity" } });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    const first = await reader.read();
    const firstAt = Date.now() - t0;
    assert.equal(new TextDecoder().decode(first.value), "first;");
    assert.ok(firstAt < 500, `first chunk after ${firstAt} ms`);
    let rest = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    assert.equal(rest, "second");
  });
});

describe("origin down", () => {
  let down;
  before(async () => {
    const dead = await freePort();
    down = await startEdge({ originUrl: `http://127.0.0.1:${dead}`, platform, vectorize: false });
  });
  after(async () => {
    await down?.dispose();
  });

  test("tunnelled work gets 503 JSON with Retry-After", async () => {
    const res = await post(down, "/api/memory/vectors", { content: "x" });
    assert.equal(res.status, 503);
    assert.ok(Number(res.headers.get("retry-after")) >= 1);
    assert.equal((await res.json()).error.code, "origin_unavailable");
    // Vectorize is not bound here, so search falls back to the origin: also 503.
    const search = await post(down, "/api/search", { text: "cats" }, { headers: await cachedKey(down, `user:${ACCOUNT_A}`) });
    assert.equal(search.status, 503);
    const page = await call(down, "https://admin.headysystems.com/");
    assert.equal(page.status, 503);
  });

  test("static pages and edge AI still answer", async () => {
    const page = await call(down, "https://headysystems.com/");
    assert.equal(page.status, 200);
    const chat = await post(down, "/api/chat", { prompt: "still there?" });
    assert.equal(chat.status, 200);
    assert.equal((await chat.json()).served_by, "edge");
  });
});
