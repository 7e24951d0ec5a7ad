// Heady for Discord through the edge: interactions signed with Node's Ed25519 (not the code
// under test) reach the Worker on the Discord property, which checks the signature first (a
// bad one is 401 there and never reaches the origin) and answers PING itself; `/ask` is
// tunnelled to the real origin, deferred, and answered through a fake of Discord's webhook
// API; the OAuth2 sign-in runs through the Worker's Discord property, and `/search` then
// answers from the linked account's memory.

import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { FakePlatform, createKey, readAnswer, startEdge, startOrigin } from "./harness.mjs";

const HOST = "http://discord.headysystems.com";
const APP = "223456789012345678";
const SECRET = "edge-test-client-secret";
const ANSWER = "Answer from the fake model.";

const { publicKey, privateKey } = generateKeyPairSync("ed25519");
const PUBLIC_KEY = Buffer.from(publicKey.export({ format: "jwk" }).x, "base64url").toString("hex");

/** Discord's headers for `body`: Ed25519 over timestamp + body. */
function signed(body, key = privateKey, ts = String(Math.floor(Date.now() / 1000))) {
  return {
    "content-type": "application/json",
    "x-signature-timestamp": ts,
    "x-signature-ed25519": sign(null, Buffer.from(ts + body), key).toString("hex"),
  };
}

/** A fake of Discord's API (OAuth2, users/@me, webhooks) and of an OpenAI-style provider. */
class FakeDiscord {
  constructor() {
    this.requests = [];
    this.codes = new Map();
    this.tokens = new Map();
    this.redirect = `https://discord.headysystems.com/discord/callback`;
  }

  async start() {
    this.server = createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString();
        const url = new URL(req.url, "http://fake");
        this.requests.push({ method: req.method, path: url.pathname, headers: req.headers, body });
        const json = (status, v) => {
          res.writeHead(status, { "content-type": "application/json" });
          res.end(JSON.stringify(v));
        };
        if (req.method === "GET" && url.pathname === "/v1/models") {
          return json(200, { object: "list", data: [{ id: "fake", object: "model", owned_by: "test" }] });
        }
        if (req.method === "POST" && url.pathname === "/v1/chat/completions") {
          return json(200, {
            id: "chatcmpl-fake",
            object: "chat.completion",
            created: Math.floor(Date.now() / 1000),
            model: "fake",
            choices: [{ index: 0, message: { role: "assistant", content: ANSWER }, finish_reason: "stop" }],
            usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 },
          });
        }
        if (req.method === "POST" && url.pathname === "/api/v10/oauth2/token") {
          const form = new URLSearchParams(body);
          if (form.get("client_id") !== APP || form.get("client_secret") !== SECRET) return json(401, { error: "invalid_client" });
          if (form.get("redirect_uri") !== this.redirect) return json(400, { error: "invalid_request" });
          const user = this.codes.get(form.get("code"));
          if (!user) return json(400, { error: "invalid_grant", error_description: 'Invalid "code" in request.' });
          this.codes.delete(form.get("code"));
          const token = `access-${this.tokens.size + 1}`;
          this.tokens.set(token, user);
          return json(200, { access_token: token, token_type: "Bearer", expires_in: 604800, scope: "identify" });
        }
        if (req.method === "GET" && url.pathname === "/api/v10/users/@me") {
          const user = this.tokens.get((req.headers.authorization ?? "").replace(/^Bearer /, ""));
          return user ? json(200, { ...user, global_name: null }) : json(401, { message: "401: Unauthorized", code: 0 });
        }
        if (url.pathname.startsWith(`/api/v10/webhooks/${APP}/`)) {
          return json(200, { id: "9001", type: 0, content: JSON.parse(body).content });
        }
        json(404, { message: "404: Not Found", code: 0 });
      });
    });
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.root = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  authorize(id, username) {
    const code = `code-${id}-${this.codes.size + 1}`;
    this.codes.set(code, { id, username });
    return code;
  }

  /** Waits for the webhook messages of an interaction token. */
  async messages(token, n = 1) {
    for (let i = 0; i < 200; i++) {
      const got = this.requests.filter((r) => r.path.startsWith(`/api/v10/webhooks/${APP}/${token}`));
      if (got.length >= n) return got.map((r) => ({ method: r.method, content: JSON.parse(r.body).content }));
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no webhook message for ${token}: ${JSON.stringify(this.requests.map((r) => r.path))}`);
  }

  stop() {
    return new Promise((r) => this.server.close(r));
  }
}

let fake;
let origin;
let edge;

before(async () => {
  fake = await new FakeDiscord().start();
  origin = await startOrigin({
    env: {
      HEADY_DISCORD_APPLICATION_ID: APP,
      HEADY_DISCORD_PUBLIC_KEY: PUBLIC_KEY,
      HEADY_DISCORD_CLIENT_SECRET: SECRET,
      HEADY_DISCORD__API_BASE: `${fake.root}/api/v10`,
      HEADY_DISCORD__AUTHORIZE_URL: `${fake.root}/oauth2/authorize`,
      HEADY_OPENAI_BASE_URL: `${fake.root}/v1`,
      HEADY_OPENAI_API_KEY: "unused",
    },
  });
  edge = await startEdge({ originUrl: origin.url, platform: new FakePlatform(), vars: { DISCORD_PUBLIC_KEY: PUBLIC_KEY } });
});

after(async () => {
  await edge?.dispose();
  await origin?.stop();
  await fake?.stop();
});

async function interact(body, headers = signed(body)) {
  const res = await edge.dispatchFetch(`${HOST}/discord/interactions`, {
    method: "POST",
    headers: { ...headers, "cf-connecting-ip": "162.159.135.232" },
    body,
  });
  return readAnswer(res);
}

function command(name, option, value, userId, token) {
  return JSON.stringify({
    type: 2,
    id: "1",
    application_id: APP,
    token,
    version: 1,
    guild_id: "777",
    member: { user: { id: userId, username: `user${userId}` }, roles: [] },
    data: { id: "1", name, type: 1, options: [{ name: option, type: 3, value }] },
  });
}

/** The origin's count of a Discord interaction series (read with an INTERNAL key). */
async function originCount(key, series) {
  const res = await fetch(`${origin.url}/metrics`, { headers: { authorization: `Bearer ${key}` } });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  const line = text.split("\n").find((l) => l.startsWith(series));
  return line ? Number(line.slice(series.length).trim()) : 0;
}

describe("Discord through the edge", () => {
  test("PING is answered PONG and a bad signature is refused at the edge", async () => {
    const metricsKey = createKey(origin, "discord-metrics");
    const ping = JSON.stringify({ type: 1, id: "1", application_id: APP, token: "t", version: 1 });
    const pong = await interact(ping);
    assert.equal(pong.status, 200, pong.text);
    assert.deepEqual(pong.json, { type: 1 });

    const other = generateKeyPairSync("ed25519").privateKey;
    const stale = String(Math.floor(Date.now() / 1000) - 400);
    for (const headers of [
      signed(ping, other),
      signed(ping, privateKey, stale),
      { "content-type": "application/json" },
      { ...signed(ping), "x-signature-ed25519": "00".repeat(64) },
    ]) {
      const res = await interact(ping, headers);
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.error.code, "invalid_discord_signature", res.text);
    }
    // A tampered body with the original's signature.
    const res = await interact(ping.replace('"t"', '"u"'), signed(ping));
    assert.equal(res.status, 401, res.text);
    // None of them reached the origin: it saw no interaction at all.
    for (const series of [
      'heady_discord_interactions_total{type="invalid",command="",outcome="bad_signature"}',
      'heady_discord_interactions_total{type="ping",command="",outcome="pong"}',
    ]) {
      assert.equal(await originCount(metricsKey, series), 0, series);
    }
  });

  test("/ask through the Worker is deferred, then answered through the webhook", async () => {
    const res = await interact(command("ask", "question", "What is Heady?", "31337", "edge-tok-1"));
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { type: 5 });
    assert.equal(res.headers.get("x-heady-served-by"), "origin");
    const [first] = await fake.messages("edge-tok-1");
    assert.equal(first.method, "PATCH");
    assert.ok(first.content.startsWith(ANSWER), first.content);
    // Not linked: answered anonymously and told where to link.
    assert.match(first.content, /https:\/\/discord\.headysystems\.com\/discord\/login/);
    const asked = fake.requests.find((r) => r.path === "/v1/chat/completions");
    assert.match(asked.body, /What is Heady\?/);
  });

  test("signing in through the Discord property links the user; /search then reads their memory", async () => {
    const key = createKey(origin, "discord-linked");
    const stored = await edge.dispatchFetch("http://headyapi.com/api/memory/vectors", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "cf-connecting-ip": "198.51.100.31" },
      body: JSON.stringify({ content: "the lighthouse keeper logs storms in the green ledger" }),
    });
    assert.equal(stored.status, 200, await stored.text());

    // Unlinked: /search says how to link.
    const before = await interact(command("search", "query", "lighthouse ledger", "4242", "edge-tok-2"));
    assert.equal(before.status, 200, before.text);
    assert.match(before.json.data.content, /discord\.headysystems\.com\/discord\/login/);

    const form = await edge.dispatchFetch(`${HOST}/discord/login`, { headers: { "cf-connecting-ip": "198.51.100.31" } });
    assert.equal(form.status, 200);
    assert.match(await form.text(), /name="key"/);
    const login = await edge.dispatchFetch(`${HOST}/discord/login`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", "cf-connecting-ip": "198.51.100.31" },
      body: new URLSearchParams({ key }).toString(),
    });
    assert.equal(login.status, 303, await login.text());
    const location = new URL(login.headers.get("location"));
    assert.equal(`${location.origin}${location.pathname}`, `${fake.root}/oauth2/authorize`);
    assert.equal(location.searchParams.get("scope"), "identify");
    assert.equal(location.searchParams.get("client_id"), APP);
    const cookie = login.headers.get("set-cookie").split(";")[0];
    assert.match(cookie, /^heady_discord_state=[0-9a-f]{64}$/);

    const code = fake.authorize("4242", "keeper");
    const state = location.searchParams.get("state");
    const callback = await edge.dispatchFetch(`${HOST}/discord/callback?code=${code}&state=${state}`, {
      headers: { cookie, "cf-connecting-ip": "198.51.100.31" },
    });
    const page = await callback.text();
    assert.equal(callback.status, 200, page);
    assert.match(page, /Linked as keeper/);
    // The same state again: refused.
    const replay = await edge.dispatchFetch(`${HOST}/discord/callback?code=${code}&state=${state}`, {
      headers: { cookie, "cf-connecting-ip": "198.51.100.31" },
    });
    assert.equal(replay.status, 400, await replay.text());

    const found = await interact(command("search", "query", "lighthouse ledger", "4242", "edge-tok-3"));
    assert.equal(found.status, 200, found.text);
    assert.equal(found.json.type, 4);
    assert.equal(found.json.data.flags, 64);
    assert.match(found.json.data.content, /green ledger/);
  });
});
