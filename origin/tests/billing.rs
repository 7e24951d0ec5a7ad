//! Billing with Stripe, against a fake of Stripe's API that speaks its wire format
//! (`common::fake_stripe`) and events signed as Stripe signs them:
//! - Checkout and the portal: the form fields, headers and idempotency keys Stripe receives;
//!   Stripe's errors as 502 without the secret key; retries with the same key; 503 without
//!   billing; meter events.
//! - Two origins on one fresh PostgreSQL database and one redis-server: the events of a real
//!   subscription, in order, out of order and replayed, set the tier on the other origin at
//!   once; a Free caller's Pro action is refused before and passes after; bad signatures are
//!   400 and change nothing; a store failure is 500 and Stripe's retry then applies; the
//!   past_due grace ends by the sweeper.
//! - Stripe's own Python library (`stripe` from PyPI, deploy/setup.sh's venv) signs events the
//!   daemon accepts, and encodes the same Checkout request byte for byte.

mod common;

use common::fake_provider::{Behavior, FakeProvider};
use common::fake_stripe::{self, stripe_error, FakeStripe};
use common::{
    call, client, code, free_port, new_key, pg_query, wait_ready, Daemon, FreshPg, RedisServer,
    TestServer,
};
use heady_origin::accounts::billing::SubscriptionStatus;
use heady_origin::config::Config;
use heady_shared::{Classification, Tier};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET_KEY: &str = "sk_test_51HeadyFake0123456789abcdefXYZ";
const WHSEC: &str = "whsec_current_0123456789abcdef";
const WHSEC_OLD: &str = "whsec_previous_0123456789abcdef";
const PRICE_PRO: &str = "price_1HeadyPro";
const PRICE_ENT: &str = "price_1HeadyEnterprise";
const SUCCESS: &str = "https://app.example/billing/done?session={CHECKOUT_SESSION_ID}";
const CANCEL: &str = "https://app.example/billing";

fn with_billing(c: &mut Config, fake: &FakeStripe) {
    c.billing.stripe_secret_key = Some(SECRET_KEY.into());
    c.billing.webhook_secrets = vec![WHSEC.into(), WHSEC_OLD.into()];
    c.billing.api_base = fake.base_url.clone();
    c.billing.prices.pro = Some(PRICE_PRO.into());
    c.billing.prices.enterprise = Some(PRICE_ENT.into());
    c.billing.success_url = Some(SUCCESS.into());
    c.billing.cancel_url = Some(CANCEL.into());
}

async fn post_json(url: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let (st, _, v) = call("POST", url, key, Some(body)).await;
    (st, v)
}

#[tokio::test(flavor = "multi_thread")]
async fn checkout_and_portal_speak_stripes_wire_format() {
    let fake = FakeStripe::start(SECRET_KEY).await;
    let s = TestServer::start(|c| with_billing(c, &fake)).await;
    let (key, account) = new_key(&s.state, "carol", Tier::Free, Classification::Internal).await;
    let checkout = s.url("/api/billing/checkout");

    // Anonymous callers own no account; bad bodies name the problem.
    let (st, v) = post_json(&checkout, None, json!({"tier": "pro"})).await;
    assert_eq!((st, code(&v)), (401, "authentication_required"), "{v}");
    for (body, needle) in [
        (json!({"tier": "gold"}), "tier"),
        (json!({"tier": "free"}), "tier"),
        (json!({"tier": "pro", "coupon": "x"}), "coupon"),
        (json!({}), "tier"),
    ] {
        let (st, v) = post_json(&checkout, Some(&key), body.clone()).await;
        assert_eq!((st, code(&v)), (400, "invalid_request"), "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
        assert!(v["error"]["request_id"].is_string(), "{v}");
    }
    assert!(fake.requests().is_empty(), "bad requests reach no Stripe");

    // Checkout: a customer (once) naming the account, then a subscription session.
    let (st, v) = post_json(&checkout, Some(&key), json!({"tier": "pro"})).await;
    assert_eq!(st, 200, "{v}");
    let session = v["id"].as_str().unwrap().to_string();
    assert!(session.starts_with("cs_test_"), "{v}");
    assert_eq!(
        v["url"],
        format!("https://checkout.stripe.com/c/pay/{session}")
    );
    let customers = fake.requests_to("POST", "/v1/customers");
    assert_eq!(customers.len(), 1);
    let c = &customers[0];
    assert_eq!(
        c.header("authorization"),
        Some(format!("Bearer {SECRET_KEY}").as_str())
    );
    assert_eq!(
        c.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        c.header("idempotency-key"),
        Some(format!("heady-customer-{account}").as_str())
    );
    assert_eq!(c.field("metadata[heady_account]"), Some(account.as_str()));
    assert!(c.raw.contains("metadata[heady_account]="), "{}", c.raw);
    let customer_id = fake.customers().keys().next().unwrap().clone();
    let stored = s
        .state
        .defense
        .accounts
        .account(&account)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.stripe_customer_id.as_deref(),
        Some(customer_id.as_str())
    );

    let sessions = fake.requests_to("POST", "/v1/checkout/sessions");
    assert_eq!(sessions.len(), 1);
    let r = &sessions[0];
    for (field, want) in [
        ("mode", "subscription"),
        ("customer", customer_id.as_str()),
        ("client_reference_id", account.as_str()),
        ("line_items[0][price]", PRICE_PRO),
        ("line_items[0][quantity]", "1"),
        ("success_url", SUCCESS),
        ("cancel_url", CANCEL),
        ("metadata[heady_account]", account.as_str()),
        (
            "subscription_data[metadata][heady_account]",
            account.as_str(),
        ),
    ] {
        assert_eq!(r.field(field), Some(want), "{field} in {}", r.raw);
    }
    let idem = r.header("idempotency-key").unwrap().to_string();
    assert!(
        idem.starts_with(&format!("heady-checkout-{account}-pro-")),
        "{idem}"
    );

    // Another checkout (Enterprise) reuses the customer; its key differs.
    let (st, v) = post_json(&checkout, Some(&key), json!({"tier": "enterprise"})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(fake.requests_to("POST", "/v1/customers").len(), 1);
    let sessions = fake.requests_to("POST", "/v1/checkout/sessions");
    assert_eq!(sessions[1].field("line_items[0][price]"), Some(PRICE_ENT));
    assert_ne!(sessions[1].header("idempotency-key"), Some(idem.as_str()));

    // The same request id again (a client's retry) is the same Stripe request: Stripe replays
    // the session it made.
    let retry = |rid: &'static str| {
        client()
            .post(&checkout)
            .bearer_auth(&key)
            .header("x-request-id", rid)
            .json(&json!({"tier": "pro"}))
            .send()
    };
    let first: Value = retry("client-retry-1").await.unwrap().json().await.unwrap();
    let second: Value = retry("client-retry-1").await.unwrap().json().await.unwrap();
    assert_eq!(first["id"], second["id"], "{first} {second}");

    // The portal, for the account's customer.
    let (st, v) = post_json(&s.url("/api/billing/portal"), Some(&key), json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert!(
        v["url"]
            .as_str()
            .unwrap()
            .starts_with("https://billing.stripe.com/"),
        "{v}"
    );
    let portal = fake.requests_to("POST", "/v1/billing_portal/sessions");
    assert_eq!(portal[0].field("customer"), Some(customer_id.as_str()));
    assert_eq!(portal[0].field("return_url"), Some(CANCEL));
    assert!(portal[0].header("idempotency-key").is_some());
    // ... and not before there is a customer.
    let (other, _) = new_key(&s.state, "dora", Tier::Free, Classification::Internal).await;
    let (st, v) = post_json(&s.url("/api/billing/portal"), Some(&other), json!({})).await;
    assert_eq!((st, code(&v)), (409, "invalid_request"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("checkout"),
        "{v}"
    );
    let (st, v) = post_json(&s.url("/api/billing/portal"), None, json!({})).await;
    assert_eq!((st, code(&v)), (401, "authentication_required"), "{v}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stripe_errors_are_502_named_and_never_show_the_key() {
    let fake = FakeStripe::start(SECRET_KEY).await;
    let s = TestServer::start(|c| with_billing(c, &fake)).await;
    let (key, _) = new_key(&s.state, "erin", Tier::Free, Classification::Internal).await;
    let checkout = s.url("/api/billing/checkout");

    // A first checkout makes the customer; then Stripe refuses the session: its error type
    // and message, 502.
    let (st, v) = post_json(&checkout, Some(&key), json!({"tier": "pro"})).await;
    assert_eq!(st, 200, "{v}");
    fake.fail_next(
        400,
        stripe_error(
            "invalid_request_error",
            "No such price: 'price_1HeadyPro'",
            Some("resource_missing"),
            Some("line_items[0][price]"),
        ),
    );
    let (st, v) = post_json(&checkout, Some(&key), json!({"tier": "pro"})).await;
    assert_eq!((st, code(&v)), (502, "stripe_failed"), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("invalid_request_error")
            && msg.contains("No such price")
            && msg.contains("param line_items[0][price]"),
        "{msg}"
    );

    // An authentication error quotes (part of) the key: the client never sees it.
    let bad = TestServer::start(|c| {
        with_billing(c, &fake);
        c.billing.stripe_secret_key = Some("sk_test_wrongKey987654321abc".into());
    })
    .await;
    let (bad_key, _) = new_key(&bad.state, "fay", Tier::Free, Classification::Internal).await;
    let (st, v) = post_json(
        &bad.url("/api/billing/checkout"),
        Some(&bad_key),
        json!({"tier": "pro"}),
    )
    .await;
    assert_eq!((st, code(&v)), (502, "stripe_failed"), "{v}");
    let text = v.to_string();
    assert!(
        text.contains("Invalid API Key") && !text.contains("sk_test_"),
        "{text}"
    );
    let m = client()
        .get(bad.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!m.contains("sk_test_"));
    bad.stop().await;

    // Stripe failing for a moment: retried with the same Idempotency-Key, then it works.
    let before = fake.requests_to("POST", "/v1/checkout/sessions").len();
    fake.fail_next(
        500,
        stripe_error("api_error", "An unknown error occurred", None, None),
    );
    let (st, v) = post_json(&checkout, Some(&key), json!({"tier": "pro"})).await;
    assert_eq!(st, 200, "{v}");
    let tries: Vec<_> = fake.requests_to("POST", "/v1/checkout/sessions")[before..].to_vec();
    assert_eq!(tries.len(), 2, "one failure, one retry");
    assert_eq!(
        tries[0].header("idempotency-key"),
        tries[1].header("idempotency-key")
    );
    assert_eq!(tries[0].raw, tries[1].raw);
    // So is a 409 (another request with the same key still running at Stripe).
    fake.fail_next(
        409,
        stripe_error("idempotency_error", "conflict", None, None),
    );
    let before = fake.requests_to("POST", "/v1/checkout/sessions").len();
    let (st, _) = post_json(&checkout, Some(&key), json!({"tier": "pro"})).await;
    assert_eq!(st, 200, "a 409 is retried");
    assert_eq!(
        fake.requests_to("POST", "/v1/checkout/sessions").len() - before,
        2
    );

    // Stripe unreachable: 502 naming that, quickly.
    let down = TestServer::start(|c| {
        with_billing(c, &fake);
        c.billing.api_base = format!("http://127.0.0.1:{}", free_port());
        c.billing.timeout_ms = 1000;
    })
    .await;
    let (down_key, _) = new_key(&down.state, "gus", Tier::Free, Classification::Internal).await;
    let t = Instant::now();
    let (st, v) = post_json(
        &down.url("/api/billing/checkout"),
        Some(&down_key),
        json!({"tier": "pro"}),
    )
    .await;
    assert_eq!((st, code(&v)), (502, "stripe_failed"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{v}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let m = client()
        .get(down.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("heady_stripe_calls_total{call=\"customers.create\",outcome=\"unreachable\"}"),
        "{m}"
    );
    down.stop().await;

    // Without [billing]: the billing routes are 503, everything else works.
    let plain = TestServer::start(|_| {}).await;
    let (plain_key, _) = new_key(&plain.state, "hal", Tier::Free, Classification::Internal).await;
    for path in [
        "/api/billing/checkout",
        "/api/billing/portal",
        "/api/billing/webhook",
    ] {
        let (st, v) = post_json(&plain.url(path), Some(&plain_key), json!({"tier": "pro"})).await;
        assert_eq!(
            (st, code(&v)),
            (503, "billing_not_configured"),
            "{path}: {v}"
        );
    }
    let (st, _, v) = call("GET", &plain.url("/api/account"), Some(&plain_key), None).await;
    assert_eq!((st, &v["subscription"]), (200, &Value::Null), "{v}");
    assert_eq!(
        client()
            .get(plain.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    plain.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn meter_events_are_sent_as_stripe_expects_and_counted_once() {
    let fake = FakeStripe::start(SECRET_KEY).await;
    let s = TestServer::start(|c| with_billing(c, &fake)).await;
    let stripe = &s.state.billing.as_ref().unwrap().stripe;
    let now = fake_stripe::now();
    let e = stripe
        .create_meter_event(
            "heady_tokens",
            "cus_ent1",
            4200,
            "acct_x:2026-12-07T10:00",
            now - 60,
        )
        .await
        .unwrap();
    assert_eq!(
        (e.event_name.as_str(), e.timestamp),
        ("heady_tokens", now - 60)
    );
    assert_eq!(e.payload.get("value").map(String::as_str), Some("4200"));
    let sent = fake.requests_to("POST", "/v1/billing/meter_events");
    let r = &sent[0];
    for (field, want) in [
        ("event_name", "heady_tokens"),
        ("payload[stripe_customer_id]", "cus_ent1"),
        ("payload[value]", "4200"),
        ("identifier", "acct_x:2026-12-07T10:00"),
    ] {
        assert_eq!(r.field(field), Some(want), "{field}: {}", r.raw);
    }
    assert_eq!(r.field("timestamp"), Some((now - 60).to_string().as_str()));
    assert!(r
        .header("idempotency-key")
        .is_some_and(|k| k.contains("acct_x:2026-12-07T10:00")));
    // A retry of the same bucket is counted once.
    stripe
        .create_meter_event(
            "heady_tokens",
            "cus_ent1",
            4200,
            "acct_x:2026-12-07T10:00",
            now - 60,
        )
        .await
        .unwrap();
    assert_eq!(fake.meter_events().len(), 1);
    // Stripe's own checks come back as errors naming the parameter.
    let err = stripe
        .create_meter_event(
            "heady_tokens",
            "cus_ent1",
            1,
            "old-bucket",
            now - 40 * 86_400,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("param timestamp"), "{err}");
    s.stop().await;
}

/// Enterprise is unlimited but metered: its chat tokens reach Stripe's meter events API
/// through the daemon's own reporter, in per-account buckets, each with an idempotent
/// identifier; a failed report is retried and every token is counted once.
#[tokio::test(flavor = "multi_thread")]
async fn enterprise_chat_tokens_reach_stripe_as_meter_events_once() {
    let fake = FakeStripe::start(SECRET_KEY).await;
    let provider = FakeProvider::start(Behavior::default()).await;
    let p = heady_origin::providers::config::ProviderConfig {
        timeout_ms: 10_000,
        ..common::openai_provider("fake", &provider.base_url)
    };
    let fake_ref = &fake;
    let s = TestServer::start(move |c| {
        with_billing(c, fake_ref);
        c.providers = vec![p];
        c.usage.flush_interval_ms = 100;
        c.usage.meter_bucket_secs = 1;
        c.usage.meter_settle_secs = 0;
        c.usage.report_interval_secs = 1;
    })
    .await;
    let (key, account) = new_key(&s.state, "ent", Tier::Enterprise, Classification::Internal).await;
    let (pro_key, _) = new_key(&s.state, "pro", Tier::Pro, Classification::Public).await;
    // The account's Stripe customer comes from Checkout (made once, linked to the account).
    let (st, v) = post_json(
        &s.url("/api/billing/checkout"),
        Some(&key),
        json!({"tier": "enterprise"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let customer = fake.customers().into_keys().next().expect("a customer");

    // Stripe fails the first report: it is sent again, with the same identifier.
    fake.fail_next(500, stripe_error("api_error", "try again", None, None));
    let mut tokens = 0;
    for (who, k) in [("ent", &key), ("pro", &pro_key), ("ent", &key)] {
        let (st, _, v) = call(
            "POST",
            &s.url("/v1/chat/completions"),
            Some(k),
            Some(json!({"model": "heady", "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        if who == "ent" {
            tokens += v["usage"]["total_tokens"].as_u64().unwrap();
        }
    }
    assert!(tokens > 0);
    let reported = |fake: &FakeStripe| -> u64 {
        fake.meter_events()
            .iter()
            .map(|e| {
                e["payload"]["value"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while reported(&fake) < tokens && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more report rounds: nothing is sent twice.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(reported(&fake), tokens, "{:?}", fake.meter_events());
    for e in fake.meter_events() {
        assert_eq!(e["event_name"], "heady_tokens", "{e}");
        assert_eq!(e["payload"]["stripe_customer_id"], customer.as_str(), "{e}");
        assert!(
            e["identifier"].as_str().unwrap().contains(account.as_str()),
            "{e}"
        );
    }
    let sent = fake.requests_to("POST", "/v1/billing/meter_events");
    assert!(
        sent.len() > fake.meter_events().len(),
        "the failed report was retried: {} requests, {} events",
        sent.len(),
        fake.meter_events().len()
    );
    let text = metrics(&s.base, &key).await;
    assert!(
        text.contains("heady_meter_events_total{outcome=\"reported\"}"),
        "{text}"
    );
    s.stop().await;
}

/// The value of the sample `name` (no labels) in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A webhook delivery as Stripe makes it: the event JSON, signed with `secret` now.
async fn deliver(base: &str, event: &Value, secret: &str) -> (u16, Value) {
    let body = event.to_string();
    let sig = fake_stripe::signature(body.as_bytes(), secret, fake_stripe::now());
    deliver_raw(base, body.into_bytes(), Some(sig)).await
}

async fn deliver_raw(base: &str, body: Vec<u8>, signature: Option<String>) -> (u16, Value) {
    let mut req = client()
        .post(format!("{base}/api/billing/webhook"))
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "user-agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        )
        .body(body);
    if let Some(s) = signature {
        req = req.header("stripe-signature", s);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn event_rows(db: &str) -> i64 {
    pg_query(db, "SELECT count(*) FROM billing_events").await[0].get(0)
}

/// The tier `base` answers for `key` (GET /api/account), with the account.
async fn account_of(base: &str, key: &str) -> Value {
    let (st, _, v) = call("GET", &format!("{base}/api/account"), Some(key), None).await;
    assert_eq!(st, 200, "{v}");
    v
}

/// Waits (at most 1 s) until `base` answers `tier` for `key`.
async fn tier_within(base: &str, key: &str, tier: &str) {
    let t = Instant::now();
    loop {
        let v = account_of(base, key).await;
        if v["tier"] == tier {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{base} still says {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET /metrics (INTERNAL) with `key`.
async fn metrics(base: &str, key: &str) -> String {
    let (st, _, v) = call("GET", &format!("{base}/metrics"), Some(key), None).await;
    assert_eq!(st, 200, "{v}");
    v.as_str().unwrap_or_default().to_string()
}

/// POST /api/code (a Pro action) with `key` on `base`.
async fn pro_action(base: &str, key: &str) -> (u16, Value) {
    post_json(
        &format!("{base}/api/code"),
        Some(key),
        json!({"input": "fn main() {}"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn subscription_events_set_the_tier_on_every_origin() {
    let pg = FreshPg::create().await;
    let redis = RedisServer::start();
    let fake = FakeStripe::start(SECRET_KEY).await;
    let provider = FakeProvider::start(Behavior::default()).await;
    let bin = env!("CARGO_BIN_EXE_heady-origin");
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let env = |c: &mut Command| {
        c.env("HEADY_DATABASE_URL", pg.url())
            .env("HEADY_REDIS_URL", redis.url())
            .env("HEADY_MEMORY_DIM", "16")
            // Long enough that only the broadcast can explain a change seen within 1 s.
            .env("HEADY_DEFENSE__KEY_CACHE_SECS", "60")
            .env("HEADY_STRIPE_SECRET_KEY", SECRET_KEY)
            .env(
                "HEADY_STRIPE_WEBHOOK_SECRET",
                format!("{WHSEC},{WHSEC_OLD}"),
            )
            .env("HEADY_STRIPE_API_BASE", &fake.base_url)
            .env("HEADY_STRIPE_PRICE_PRO", PRICE_PRO)
            .env("HEADY_STRIPE_PRICE_ENTERPRISE", PRICE_ENT)
            .env("HEADY_STRIPE_SUCCESS_URL", SUCCESS)
            .env("HEADY_STRIPE_CANCEL_URL", CANCEL)
            .env("HEADY_BILLING__GRACE_SWEEP_SECS", "1")
            .env("HEADY_OPENAI_BASE_URL", &provider.base_url)
            .env("HEADY_OPENAI_API_KEY", "unused")
            .env("HEADY_LOG", "warn");
    };
    // Free accounts with keys, made with the CLI straight in PostgreSQL.
    let make_key = |user: &str| {
        let mut cli = Command::new(bin);
        cli.args([
            "keys",
            "create",
            "--user",
            user,
            "--tier",
            "free",
            "--clearance",
            "internal",
            "--data-dir",
        ])
        .arg(dirs[0].path());
        env(&mut cli);
        let out = cli.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let dana = make_key("dana");
    let erin = make_key("erin");
    let mut daemons = Vec::new();
    let mut bases = Vec::new();
    for d in &dirs {
        let port = free_port();
        let mut c = Command::new(bin);
        c.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(d.path())
        .stdout(Stdio::null());
        env(&mut c);
        daemons.push(Daemon(c.spawn().unwrap()));
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    for b in &bases {
        wait_ready(b).await;
    }
    let (a, b) = (bases[0].as_str(), bases[1].as_str());
    let id = account_of(b, &dana).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Free: the Pro action is refused on both origins.
    for base in [a, b] {
        let (st, v) = pro_action(base, &dana).await;
        assert_eq!((st, code(&v)), (403, "upgrade_required"), "{v}");
    }

    // Checkout on A.
    let (st, v) = post_json(
        &format!("{a}/api/billing/checkout"),
        Some(&dana),
        json!({"tier": "pro"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let session = v["id"].as_str().unwrap().to_string();
    let customer = fake.customers().keys().next().unwrap().clone();
    let sub = "sub_1HeadyDana";
    let t0 = fake_stripe::now() - 600;
    let period_end = t0 + 30 * 86_400;

    // The events a subscription bought through Checkout sends, in order (delivered to A; the
    // rotation's old secret still signs some).
    let created = fake_stripe::event(
        "evt_1",
        "customer.subscription.created",
        t0,
        fake_stripe::subscription(sub, &customer, "incomplete", PRICE_PRO, period_end),
    );
    let completed = fake_stripe::event(
        "evt_2",
        "checkout.session.completed",
        t0 + 1,
        fake_stripe::checkout_session(&session, &id, &customer, sub),
    );
    let activated = fake_stripe::event(
        "evt_3",
        "customer.subscription.updated",
        t0 + 2,
        fake_stripe::subscription(sub, &customer, "active", PRICE_PRO, period_end),
    );
    let paid = fake_stripe::event(
        "evt_4",
        "invoice.paid",
        t0 + 2,
        fake_stripe::invoice("in_1", &customer, sub, "paid"),
    );
    let (st, v) = deliver(a, &created, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("applied")), "{v}");
    assert_eq!(
        account_of(b, &dana).await["tier"],
        "free",
        "incomplete grants nothing"
    );
    let (st, v) = deliver(a, &completed, WHSEC_OLD).await;
    assert_eq!(st, 200, "{v}");
    let t = Instant::now();
    let (st, v) = deliver(a, &activated, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("applied")), "{v}");
    // Pro on B, at once (B cached the key as Free for 60 s: only the broadcast explains it).
    loop {
        let v = account_of(b, &dana).await;
        if v["tier"] == "pro" {
            assert_eq!(
                v["subscription"],
                json!({"status": "active", "current_period_end": period_end})
            );
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(1), "B still says {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("the new tier reached the other origin in {:?}", t.elapsed());
    let (st, v) = pro_action(b, &dana).await;
    assert_eq!(st, 200, "the Pro action passes now: {v}");
    let (st, v) = deliver(b, &paid, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("applied")), "{v}");
    // Stored as the events left it.
    let rows = pg_query(&pg.name, &format!(
        "SELECT tier, stripe_customer_id, stripe_subscription_id, subscription_status, subscription_price, current_period_end, invoice_status FROM accounts WHERE id = '{id}'"
    )).await;
    let r = &rows[0];
    assert_eq!(r.get::<_, String>(0), "pro");
    assert_eq!(
        r.get::<_, Option<String>>(1).as_deref(),
        Some(customer.as_str())
    );
    assert_eq!(r.get::<_, Option<String>>(2).as_deref(), Some(sub));
    assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("active"));
    assert_eq!(r.get::<_, Option<String>>(4).as_deref(), Some(PRICE_PRO));
    assert_eq!(r.get::<_, Option<i64>>(5), Some(period_end));
    assert_eq!(r.get::<_, Option<String>>(6).as_deref(), Some("paid"));
    assert_eq!(event_rows(&pg.name).await, 4);

    // Replayed (to either origin): 200, nothing changes.
    for (base, e) in [(a, &activated), (b, &activated), (b, &created)] {
        let (st, v) = deliver(base, e, WHSEC).await;
        assert_eq!((st, v["outcome"].as_str()), (200, Some("duplicate")), "{v}");
    }
    assert_eq!(event_rows(&pg.name).await, 4);
    assert_eq!(account_of(a, &dana).await["tier"], "pro");

    // Out of order: past_due (t0+20) applied, then a late active of t0+10 is stale; then the
    // deletion (t0+40) and a late past_due of t0+30.
    let past_due = fake_stripe::event(
        "evt_5",
        "customer.subscription.updated",
        t0 + 20,
        fake_stripe::subscription(sub, &customer, "past_due", PRICE_PRO, period_end),
    );
    let late_active = fake_stripe::event(
        "evt_6",
        "customer.subscription.updated",
        t0 + 10,
        fake_stripe::subscription(sub, &customer, "active", PRICE_PRO, period_end),
    );
    let failed = fake_stripe::event(
        "evt_7",
        "invoice.payment_failed",
        t0 + 20,
        fake_stripe::invoice("in_2", &customer, sub, "open"),
    );
    let (st, v) = deliver(a, &past_due, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("applied")), "{v}");
    let (st, v) = deliver(b, &late_active, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("skipped")), "{v}");
    assert!(v["reason"].as_str().unwrap().starts_with("stale"), "{v}");
    let (st, v) = deliver(b, &failed, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("applied")), "{v}");
    let v = account_of(b, &dana).await;
    assert_eq!(
        v["tier"], "pro",
        "past_due keeps the tier in its grace: {v}"
    );
    assert_eq!(v["subscription"]["status"], "past_due");
    assert_eq!(v["subscription"]["past_due_since"], t0 + 20);
    let deleted = fake_stripe::event(
        "evt_8",
        "customer.subscription.deleted",
        t0 + 40,
        fake_stripe::subscription(sub, &customer, "canceled", PRICE_PRO, period_end),
    );
    let late_past_due = fake_stripe::event(
        "evt_9",
        "customer.subscription.updated",
        t0 + 30,
        fake_stripe::subscription(sub, &customer, "past_due", PRICE_PRO, period_end),
    );
    let (st, v) = deliver(a, &deleted, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("applied")), "{v}");
    let (st, v) = deliver(a, &late_past_due, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("skipped")), "{v}");
    let t = Instant::now();
    loop {
        let (st, v) = pro_action(b, &dana).await;
        if st == 403 {
            assert_eq!(code(&v), "upgrade_required");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "still allowed: {st} {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = account_of(a, &dana).await;
    assert_eq!(
        (v["tier"].as_str(), v["subscription"]["status"].as_str()),
        (Some("free"), Some("canceled")),
        "{v}"
    );
    let outcomes = pg_query(
        &pg.name,
        &format!("SELECT id, outcome FROM billing_events WHERE account_id = '{id}' ORDER BY id"),
    )
    .await;
    let outcomes: Vec<(String, String)> = outcomes.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(outcomes.len(), 9, "{outcomes:?}");
    assert!(
        outcomes[5].1.starts_with("stale") && outcomes[8].1.starts_with("stale"),
        "{outcomes:?}"
    );

    // Bad signatures: 400 invalid_signature, and nothing is read or stored.
    let renewed = fake_stripe::event(
        "evt_10",
        "customer.subscription.created",
        t0 + 50,
        fake_stripe::subscription("sub_2", &customer, "active", PRICE_ENT, period_end),
    );
    let body = renewed.to_string();
    let now = fake_stripe::now();
    let good = fake_stripe::signature(body.as_bytes(), WHSEC, now);
    let hex = good.split_once(",v1=").unwrap().1.to_string();
    let mut changed = body.clone().into_bytes();
    let i = changed.iter().position(|b| *b == b'E').unwrap();
    changed[i] = b'e';
    let bad: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        ("missing", body.clone().into_bytes(), None),
        (
            "wrong secret",
            body.clone().into_bytes(),
            Some(fake_stripe::signature(body.as_bytes(), "whsec_wrong", now)),
        ),
        (
            "stale",
            body.clone().into_bytes(),
            Some(fake_stripe::signature(body.as_bytes(), WHSEC, now - 301)),
        ),
        (
            "future",
            body.clone().into_bytes(),
            Some(fake_stripe::signature(body.as_bytes(), WHSEC, now + 301)),
        ),
        ("one byte changed", changed, Some(good.clone())),
        (
            "v0 only",
            body.clone().into_bytes(),
            Some(format!("t={now},v0={hex}")),
        ),
        (
            "malformed",
            body.clone().into_bytes(),
            Some(format!("v1={hex}")),
        ),
    ];
    for (what, b, sig) in bad {
        let (st, v) = deliver_raw(a, b, sig).await;
        assert_eq!((st, code(&v)), (400, "invalid_signature"), "{what}: {v}");
    }
    assert_eq!(event_rows(&pg.name).await, 9, "no bad delivery was stored");
    assert_eq!(account_of(b, &dana).await["tier"], "free");
    // A type billing does not act on: 200, ignored, not stored.
    let other = fake_stripe::event(
        "evt_11",
        "payment_intent.succeeded",
        t0 + 60,
        json!({"id": "pi_1", "object": "payment_intent"}),
    );
    let (st, v) = deliver(a, &other, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("ignored")), "{v}");
    assert_eq!(event_rows(&pg.name).await, 9);

    // A store failure is 500, so Stripe retries; its retry is applied once the store is back.
    pg_query(
        &pg.name,
        "ALTER TABLE billing_events RENAME TO billing_events_away",
    )
    .await;
    let (st, v) = deliver(a, &renewed, WHSEC).await;
    assert_eq!((st, code(&v)), (500, "internal"), "{v}");
    assert!(
        !v.to_string().contains("billing_events"),
        "no store detail for the client: {v}"
    );
    pg_query(
        &pg.name,
        "ALTER TABLE billing_events_away RENAME TO billing_events",
    )
    .await;
    assert_eq!(
        account_of(a, &dana).await["tier"],
        "free",
        "nothing half-applied"
    );
    let (st, v) = deliver(a, &renewed, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("applied")), "{v}");
    // A new subscription after the old one ended: Enterprise, on B too.
    tier_within(b, &dana, "enterprise").await;

    // An account found through its customer's metadata (a customer made in the Dashboard),
    // whose past_due grace then runs out: the sweeper makes it Free on every origin.
    let erin_id = account_of(a, &erin).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    fake.add_customer("cus_manualErin", json!({"heady_account": erin_id}));
    let grace = 7 * 86_400;
    let started = fake_stripe::now() - grace - 60;
    let e1 = fake_stripe::event(
        "evt_20",
        "customer.subscription.created",
        started,
        fake_stripe::subscription(
            "sub_erin",
            "cus_manualErin",
            "active",
            PRICE_PRO,
            period_end,
        ),
    );
    let (st, v) = deliver(b, &e1, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("applied")), "{v}");
    assert_eq!(account_of(a, &erin).await["tier"], "pro");
    assert_eq!(
        fake.requests_to("GET", "/v1/customers/cus_manualErin")
            .len(),
        1
    );
    // Past due since 3 s short of the grace: Pro now, Free within the sweep after.
    let e2 = fake_stripe::event(
        "evt_21",
        "customer.subscription.updated",
        fake_stripe::now() - grace + 3,
        fake_stripe::subscription(
            "sub_erin",
            "cus_manualErin",
            "past_due",
            PRICE_PRO,
            period_end,
        ),
    );
    let (st, v) = deliver(b, &e2, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("applied")), "{v}");
    assert_eq!(account_of(a, &erin).await["tier"], "pro");
    let t = Instant::now();
    loop {
        let v = account_of(a, &erin).await;
        if v["tier"] == "free" {
            assert_eq!(v["subscription"]["status"], "past_due");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "grace never ended: {v}"
        );
        // Slowly: once Free, the account may make 30 requests a minute, these included.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "the grace sweeper ended the grace {:?} after the event",
        t.elapsed()
    );
    // The customer is now stored: no second lookup at Stripe.
    let e3 = fake_stripe::event(
        "evt_22",
        "invoice.payment_failed",
        fake_stripe::now() - 1,
        fake_stripe::invoice("in_9", "cus_manualErin", "sub_erin", "open"),
    );
    let (st, v) = deliver(a, &e3, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("applied")), "{v}");
    assert_eq!(
        fake.requests_to("GET", "/v1/customers/cus_manualErin")
            .len(),
        1
    );
    // Customers Stripe does not know, or that name no account: recorded, nothing changes.
    let stray = fake_stripe::event(
        "evt_23",
        "customer.subscription.updated",
        t0,
        fake_stripe::subscription("sub_x", "cus_unknown", "active", PRICE_PRO, period_end),
    );
    let (st, v) = deliver(a, &stray, WHSEC).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("skipped")), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("no customer"), "{v}");
    let m = metrics(a, &dana).await;
    for needle in [
        "heady_billing_webhooks_total{event=\"customer.subscription.updated\",outcome=\"applied\"}",
        "heady_billing_webhooks_total{event=\"unknown\",outcome=\"invalid_signature\"} 7",
        "heady_billing_webhooks_total{event=\"other\",outcome=\"ignored\"} 1",
    ] {
        assert!(m.contains(needle), "{needle} in {m}");
    }
    // One origin's sweeper moved the account; the other found nothing left to do.
    let mut expired = 0.0;
    for base in [a, b] {
        expired += metric(
            &metrics(base, &dana).await,
            "heady_billing_grace_expired_total",
        );
    }
    assert_eq!(expired, 1.0);
    drop(daemons);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signatures_are_limited_per_address_like_bad_keys() {
    let fake = FakeStripe::start(SECRET_KEY).await;
    let s = TestServer::start(|c| {
        with_billing(c, &fake);
        c.defense.enabled = true;
        c.defense.max_failed_auth_per_minute = 3;
    })
    .await;
    let body = fake_stripe::event(
        "evt_x",
        "customer.created",
        fake_stripe::now(),
        json!({"id": "cus_1"}),
    )
    .to_string();
    // The count is per minute: start it well inside one.
    if fake_stripe::now() % 60 > 50 {
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    for _ in 0..3 {
        let sig = fake_stripe::signature(body.as_bytes(), "whsec_guess", fake_stripe::now());
        let (st, v) = deliver_raw(&s.base, body.clone().into_bytes(), Some(sig)).await;
        assert_eq!((st, code(&v)), (400, "invalid_signature"), "{v}");
    }
    let sig = fake_stripe::signature(body.as_bytes(), WHSEC, fake_stripe::now());
    let (st, v) = deliver_raw(&s.base, body.clone().into_bytes(), Some(sig)).await;
    assert_eq!((st, code(&v)), (429, "too_many_failed_auth"), "{v}");
    // The request limiter does not count deliveries: a Free address sends more than 30.
    let other = TestServer::start(|c| {
        with_billing(c, &fake);
        c.defense.enabled = true;
    })
    .await;
    for i in 0..40 {
        let e = fake_stripe::event(
            &format!("evt_many{i}"),
            "customer.created",
            fake_stripe::now(),
            json!({"id": "cus_1"}),
        );
        let (st, v) = deliver(&other.base, &e, WHSEC).await;
        assert_eq!(
            (st, v["outcome"].as_str()),
            (200, Some("ignored")),
            "{i}: {v}"
        );
    }
    // Bodies over the webhook's limit are refused before they are read whole.
    let big = vec![b'x'; heady_origin::api::billing::WEBHOOK_MAX_BYTES + 1];
    let (st, v) = deliver_raw(&other.base, big, Some("t=1,v1=00".into())).await;
    assert_eq!((st, code(&v)), (413, "body_too_large"), "{v}");
    other.stop().await;
    s.stop().await;
}

/// The official `stripe` package (PyPI), in deploy/setup.sh's venv.
fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("HEADY_PYTHON") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    std::path::PathBuf::from(home).join(".cache/heady/venv/bin/python")
}

const PEER: &str = r#"
import json, sys, stripe
base, key, secret, payload, our_header, account, customer = sys.argv[1:8]
out = {}
out["signed"] = stripe.WebhookSignature.generate_signature_header(payload, secret)
try:
    stripe.WebhookSignature.verify_header(payload, our_header, secret, tolerance=300)
    out["ours_verified"] = True
except Exception as e:
    out["ours_verified"] = str(e)
client = stripe.StripeClient(key, base_addresses={"api": base}, max_network_retries=0)
session = client.v1.checkout.sessions.create(params={
    "mode": "subscription", "customer": customer, "client_reference_id": account,
    "line_items": [{"price": sys.argv[8], "quantity": 1}],
    "success_url": sys.argv[9], "cancel_url": sys.argv[10],
    "metadata": {"heady_account": account},
    "subscription_data": {"metadata": {"heady_account": account}},
}, options={"idempotency_key": "python-peer-1"})
out["session"] = session.id
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn stripes_own_library_signs_and_encodes_as_the_daemon_does() {
    let py = python();
    assert!(
        py.exists(),
        "{} is missing: run deploy/setup.sh (its venv has the stripe package)",
        py.display()
    );
    let fake = FakeStripe::start(SECRET_KEY).await;
    let s = TestServer::start(|c| with_billing(c, &fake)).await;
    let (key, account) = new_key(&s.state, "ivy", Tier::Free, Classification::Internal).await;
    let (st, v) = post_json(
        &s.url("/api/billing/checkout"),
        Some(&key),
        json!({"tier": "pro"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let customer = fake.customers().keys().next().unwrap().clone();
    let ours = fake.requests_to("POST", "/v1/checkout/sessions")[0].clone();

    let payload = fake_stripe::event(
        "evt_py1",
        "customer.subscription.created",
        fake_stripe::now(),
        fake_stripe::subscription(
            "sub_py",
            &customer,
            "active",
            PRICE_PRO,
            fake_stripe::now() + 86_400,
        ),
    )
    .to_string();
    let our_header = fake_stripe::signature(payload.as_bytes(), WHSEC, fake_stripe::now());
    let out = tokio::process::Command::new(&py)
        .arg("-c")
        .arg(PEER)
        .args([
            fake.base_url.as_str(),
            SECRET_KEY,
            WHSEC,
            payload.as_str(),
            our_header.as_str(),
            account.as_str(),
            customer.as_str(),
            PRICE_PRO,
            SUCCESS,
            CANCEL,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The harness's signatures are Stripe's.
    assert_eq!(got["ours_verified"], true, "{got}");
    // What Stripe's library signs, the daemon accepts.
    let (st, v) = deliver_raw(
        &s.base,
        payload.into_bytes(),
        Some(got["signed"].as_str().unwrap().to_string()),
    )
    .await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("applied")), "{v}");
    let a = s
        .state
        .defense
        .accounts
        .account(&account)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.tier, a.subscription.status),
        (Tier::Pro, Some(SubscriptionStatus::Active))
    );
    // The same Checkout request from Stripe's library and from the daemon: the same bytes.
    let theirs = fake
        .requests_to("POST", "/v1/checkout/sessions")
        .last()
        .unwrap()
        .clone();
    assert_eq!(theirs.header("idempotency-key"), Some("python-peer-1"));
    assert_eq!(theirs.header("content-type"), ours.header("content-type"));
    assert_eq!(theirs.header("authorization"), ours.header("authorization"));
    assert_eq!(theirs.form, ours.form);
    assert_eq!(theirs.raw, ours.raw);
    s.stop().await;
}

#[test]
fn check_config_shows_no_stripe_secret_and_names_a_missing_key() {
    let run = |envs: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_heady-origin"));
        c.arg("check-config");
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let full = [
        ("HEADY_STRIPE_SECRET_KEY", SECRET_KEY),
        (
            "HEADY_STRIPE_WEBHOOK_SECRET",
            "whsec_current_0123456789abcdef,whsec_previous_0123456789abcdef",
        ),
        ("HEADY_STRIPE_PRICE_PRO", PRICE_PRO),
        ("HEADY_STRIPE_SUCCESS_URL", SUCCESS),
        ("HEADY_STRIPE_CANCEL_URL", CANCEL),
    ];
    let (ok, text) = run(&full);
    assert!(ok && text.contains("OK"), "{text}");
    assert!(text.contains(PRICE_PRO), "{text}");
    for secret in [SECRET_KEY, WHSEC, WHSEC_OLD] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    // Half a configuration stops the daemon, naming what is missing.
    let (ok, text) = run(&full[..3]);
    assert!(!ok, "{text}");
    assert!(text.contains("billing.success_url"), "{text}");
    let (ok, text) = run(&[("HEADY_STRIPE_WEBHOOK_SECRET", "whsec_x")]);
    assert!(!ok && text.contains("HEADY_STRIPE_SECRET_KEY"), "{text}");
}
