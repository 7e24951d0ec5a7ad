// Billing through the edge: Stripe's webhook passes the Worker unchanged (signed by Stripe,
// verified by the origin, not limited per address), and a tier the webhook changes is seen by
// the edge within the session TTL (shortened to 3 s here with defense.session_ttl_secs).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { FakePlatform, TUNNEL_KEY, freePort, startEdge, startOrigin } from "./harness.mjs";

const WHSEC = "whsec_edge_test_0123456789abcdef";
const PRICE_PRO = "price_edgePro";
const TTL_SECS = 3;
// One of the addresses Stripe sends webhooks from.
const STRIPE_IP = "54.187.174.169";

let origin;
let edge;

before(async () => {
  origin = await startOrigin({
    env: {
      HEADY_STRIPE_SECRET_KEY: "sk_test_edge0123456789abcdef",
      HEADY_STRIPE_WEBHOOK_SECRET: WHSEC,
      // Never called: the events name the customer the checkout event stored.
      HEADY_STRIPE_API_BASE: `http://127.0.0.1:${await freePort()}`,
      HEADY_STRIPE_PRICE_PRO: PRICE_PRO,
      HEADY_STRIPE_SUCCESS_URL: "https://app.example/billing/done",
      HEADY_STRIPE_CANCEL_URL: "https://app.example/billing",
      HEADY_DEFENSE__SESSION_TTL_SECS: String(TTL_SECS),
    },
  });
  edge = await startEdge({ originUrl: origin.url, platform: new FakePlatform() });
});

after(async () => {
  await edge?.dispose();
  await origin?.stop();
});

/** A Free account's key, made with the CLI: { key, account }. */
function freeAccount(user) {
  const run = spawnSync(
    origin.bin,
    ["keys", "--data-dir", origin.dataDir, "create", "--user", user, "--tier", "free", "--clearance", "internal"],
    { encoding: "utf8", env: { ...process.env, HEADY_TUNNEL_AUTH: "hmac", HEADY_TUNNEL_KEY: TUNNEL_KEY } },
  );
  const key = /hk_[0-9a-f]{64}/.exec(run.stdout)?.[0];
  const account = /acct_[a-z2-7]{24}/.exec(run.stderr + run.stdout)?.[0];
  assert.ok(key && account, `keys create: ${run.stdout} ${run.stderr}`);
  return { key, account };
}

/** Stripe's signature: t=<now>,v1=<hex HMAC-SHA256 of "t.body" with the endpoint secret>. */
function sign(body, secret = WHSEC, t = Math.floor(Date.now() / 1000)) {
  return `t=${t},v1=${createHmac("sha256", secret).update(`${t}.${body}`).digest("hex")}`;
}

function event(id, type, created, object) {
  return JSON.stringify({
    id,
    object: "event",
    api_version: "2024-06-20",
    created,
    livemode: false,
    pending_webhooks: 1,
    type,
    request: { id: null, idempotency_key: null },
    data: { object },
  });
}

function subscription(id, customer, status) {
  const end = Math.floor(Date.now() / 1000) + 30 * 86_400;
  return {
    id,
    object: "subscription",
    customer,
    status,
    current_period_end: end,
    items: { object: "list", data: [{ id: `si_${id}`, object: "subscription_item", price: { id: PRICE_PRO, object: "price" } }] },
  };
}

/** A webhook delivery through the edge, as Stripe sends it. */
async function deliver(body, signature = sign(body)) {
  const res = await edge.dispatchFetch("http://headyapi.com/api/billing/webhook", {
    method: "POST",
    headers: {
      "content-type": "application/json; charset=utf-8",
      "stripe-signature": signature,
      "cf-connecting-ip": STRIPE_IP,
      "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    },
    body,
  });
  return { status: res.status, body: await res.json() };
}

/** A Pro action through the edge: the edge refuses it for Free (403 upgrade_required). */
async function proAction(key) {
  const res = await edge.dispatchFetch("http://headyapi.com/api/code", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}`, "cf-connecting-ip": "198.51.100.200" },
    body: JSON.stringify({ input: "fn main() {}" }),
  });
  const body = await res.text();
  return { status: res.status, code: JSON.parse(body)?.error?.code, servedBy: res.headers.get("x-heady-served-by") };
}

/** Polls until `done(result)`; the seconds it took. */
async function within(limitSecs, probe, done) {
  const start = Date.now();
  for (;;) {
    const r = await probe();
    if (done(r)) return (Date.now() - start) / 1000;
    assert.ok(Date.now() - start < limitSecs * 1000, `not within ${limitSecs} s: ${JSON.stringify(r)}`);
    // Every 0.5 s: a Free key may make 30 requests a minute, these included.
    await new Promise((res) => setTimeout(res, 500));
  }
}

describe("billing through the edge", () => {
  test("a tier changed by Stripe's webhook reaches the edge within the session TTL", async () => {
    const { key, account } = freeAccount("edge-billing");
    const customer = "cus_edgeBilling";
    const sub = "sub_edgeBilling";
    const t0 = Math.floor(Date.now() / 1000) - 60;

    // Free: the edge refuses the Pro action itself, and now caches the Free session.
    const before = await proAction(key);
    assert.equal(before.status, 403);
    assert.equal(before.code, "upgrade_required");
    const kv = await edge.getKVNamespace("HEADY_KV");
    const cached = JSON.parse(await kv.get(`sess:${createHash("sha256").update(key).digest("hex")}`));
    assert.equal(cached.tier, "free");
    assert.ok(cached.until_ms <= Date.now() + TTL_SECS * 1000, JSON.stringify(cached));

    // Checkout completed, then the subscription is active: Pro at the origin.
    let r = await deliver(
      event("evt_edge1", "checkout.session.completed", t0, {
        id: "cs_test_edge1",
        object: "checkout.session",
        mode: "subscription",
        status: "complete",
        client_reference_id: account,
        customer,
        subscription: sub,
      }),
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.outcome, "applied");
    r = await deliver(event("evt_edge2", "customer.subscription.created", t0 + 1, subscription(sub, customer, "active")));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.outcome, "applied");
    const up = await within(TTL_SECS + 1, () => proAction(key), (x) => x.status !== 403);
    const after = await proAction(key);
    assert.equal(after.servedBy, "origin", "the Pro action now passes the edge to the origin");
    assert.notEqual(after.code, "upgrade_required");
    console.log(`edge saw Pro ${up.toFixed(1)} s after the webhook (TTL ${TTL_SECS} s)`);

    // Canceled: the origin, which checks the key on every tunnelled request, refuses at once;
    // the edge itself refuses (no trip to the origin) within the TTL.
    r = await deliver(event("evt_edge3", "customer.subscription.deleted", t0 + 2, subscription(sub, customer, "canceled")));
    assert.equal(r.body.outcome, "applied", JSON.stringify(r.body));
    const first = await proAction(key);
    assert.equal(first.status, 403);
    assert.equal(first.code, "upgrade_required");
    const down = await within(TTL_SECS + 2, () => proAction(key), (x) => x.status === 403 && x.servedBy === null);
    console.log(`edge saw Free ${down.toFixed(1)} s after the webhook (TTL ${TTL_SECS} s)`);

    // Replayed through the edge: nothing changes.
    r = await deliver(event("evt_edge2", "customer.subscription.created", t0 + 1, subscription(sub, customer, "active")));
    assert.equal(r.body.outcome, "duplicate", JSON.stringify(r.body));
  });

  test("the webhook passes the edge unchanged and unlimited; a bad signature is the origin's 400", async () => {
    // More deliveries from Stripe's address than a Free address may make in a minute (30).
    for (let i = 0; i < 35; i++) {
      const r = await deliver(event(`evt_many${i}`, "customer.created", Math.floor(Date.now() / 1000), { id: "cus_x", object: "customer" }));
      assert.equal(r.status, 200, `${i}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.outcome, "ignored");
    }
    const body = event("evt_forged", "customer.subscription.created", 1, subscription("sub_x", "cus_x", "active"));
    const r = await deliver(body, sign(body, "whsec_not_the_secret"));
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, "invalid_signature");
    // The body is verified byte for byte after crossing the edge: one byte changed fails.
    const good = sign(body);
    const tampered = await deliver(body.replace("active", "Active"), good);
    assert.equal(tampered.body.error.code, "invalid_signature");
  });
});
