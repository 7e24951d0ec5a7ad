//! Heady for Discord on a real daemon, against a fake of Discord's API (common::fake_discord)
//! and interactions signed by PyNaCl: the signature check (missing, forged, stale), PING, the
//! OAuth2 sign-in that links a Discord user to an account (state, cookie, replay, denial, a
//! refused code), `/ask` deferred then answered through the webhook (split when long, retried
//! on 429), `/search` scoped to the linked account, unlinked users told how to link, a
//! disabled account's link, unlinking, and `heady-origin discord register-commands`.

mod common;

use common::fake_discord::{FakeDiscord, Signer, APPLICATION_ID, BOT_TOKEN, CLIENT_SECRET};
use common::fake_provider::{Behavior, FakeProvider};
use common::{client_with, new_key, Answer, TestServer};
use heady_origin::config::DiscordConfig;
use heady_shared::{Classification, Tier};
use serde_json::{json, Value};

const PUBLIC_URL: &str = "https://discord.test";
const AUTHORIZE: &str = "https://discord.test/oauth2/authorize";
const REPLY: &str = "Hello from the fake provider.";

struct Bot {
    s: TestServer,
    fake: FakeDiscord,
    provider: FakeProvider,
    signer: Signer,
}

async fn bot() -> Bot {
    let signer = Signer::new(7);
    let fake = FakeDiscord::start(&format!("{PUBLIC_URL}/discord/callback")).await;
    let provider = FakeProvider::start(Behavior {
        reply: Some(REPLY.into()),
        ..Behavior::default()
    })
    .await;
    let (api_base, key, base_url) = (
        fake.api_base.clone(),
        signer.public_key.clone(),
        provider.base_url.clone(),
    );
    let s = TestServer::start(move |c| {
        c.providers = vec![common::openai_provider("fake", &base_url)];
        c.discord = DiscordConfig {
            application_id: Some(APPLICATION_ID.into()),
            public_key: Some(key),
            bot_token: Some(BOT_TOKEN.into()),
            client_secret: Some(CLIENT_SECRET.into()),
            api_base,
            authorize_url: AUTHORIZE.into(),
            public_url: PUBLIC_URL.into(),
            ..DiscordConfig::default()
        };
    })
    .await;
    Bot {
        s,
        fake,
        provider,
        signer,
    }
}

/// A client that does not follow redirects (the 303s are what is tested).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Bot {
    /// Posts `body` to the interactions endpoint with the given signature and timestamp
    /// headers (`None`: left out).
    async fn post(&self, body: &[u8], signature: Option<&str>, timestamp: Option<&str>) -> Answer {
        let mut req = common::client()
            .post(self.s.url("/discord/interactions"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("x-signature-ed25519", sig);
        }
        if let Some(ts) = timestamp {
            req = req.header("x-signature-timestamp", ts);
        }
        Answer::of(req).await
    }

    /// Posts `body` signed now, as Discord does.
    async fn interact(&self, body: &Value) -> Answer {
        let body = body.to_string();
        let ts = common::unix_now().to_string();
        let sig = self.signer.sign(&ts, body.as_bytes());
        self.post(body.as_bytes(), Some(&sig), Some(&ts)).await
    }

    /// Signs in with `key` and comes back from Discord as `user`: the callback's answer.
    async fn link(&self, key: &str, user_id: &str, username: &str) -> Answer {
        let (state, cookie) = self.login(key).await;
        let code = self.fake.authorize(user_id, username);
        self.callback(&format!("code={code}&state={state}"), Some(&cookie))
            .await
    }

    /// `POST /discord/login`: the state in the redirect and the cookie.
    async fn login(&self, key: &str) -> (String, String) {
        let r = Answer::of(
            browser()
                .post(self.s.url("/discord/login"))
                .form(&[("key", key)]),
        )
        .await;
        assert_eq!(r.status, 303, "{}", r.text);
        state_and_cookie(&r)
    }

    async fn callback(&self, query: &str, cookie: Option<&str>) -> Answer {
        let mut req = browser().get(self.s.url(&format!("/discord/callback?{query}")));
        if let Some(c) = cookie {
            req = req.header("cookie", format!("other=1; heady_discord_state={c}"));
        }
        Answer::of(req).await
    }
}

fn state_and_cookie(r: &Answer) -> (String, String) {
    let location = url::Url::parse(r.header("location")).unwrap();
    assert!(location.as_str().starts_with(AUTHORIZE), "{location}");
    let q: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], APPLICATION_ID);
    assert_eq!(q["scope"], "identify");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["redirect_uri"], format!("{PUBLIC_URL}/discord/callback"));
    let set_cookie = r.header("set-cookie");
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/discord",
        "Max-Age=600",
    ] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    let cookie = set_cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("heady_discord_state=")
        .unwrap()
        .to_string();
    (q["state"].clone(), cookie)
}

fn command(
    name: &str,
    option: &str,
    value: &str,
    user_id: &str,
    token: &str,
    guild: bool,
) -> Value {
    let user = json!({"id": user_id, "username": format!("user{user_id}")});
    let mut body = json!({
        "type": 2, "id": "5550001", "application_id": APPLICATION_ID, "token": token, "version": 1,
        "data": {"id": "1", "name": name, "type": 1, "options": [{"name": option, "type": 3, "value": value}]},
    });
    if guild {
        body["guild_id"] = json!("777");
        body["member"] = json!({"user": user, "roles": []});
    } else {
        body["user"] = user;
    }
    body
}

fn code(a: &Answer) -> &str {
    a.body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn interactions_must_be_signed_fresh_and_ping_is_answered_pong() {
    let b = bot().await;
    let ping =
        br#"{"type":1,"id":"1","application_id":"123456789012345678","token":"t","version":1}"#;
    let ts = common::unix_now().to_string();
    let sig = b.signer.sign(&ts, ping);
    let r = b.post(ping, Some(&sig), Some(&ts)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"type": 1}));
    assert_eq!(r.header("content-type"), "application/json");

    // Missing, forged (another body, another key), malformed, stale: 401 before anything.
    let other = Signer::new(9);
    let stale_ts = (common::unix_now() - 400).to_string();
    let stale_sig = b.signer.sign(&stale_ts, ping);
    let forged = other.sign(&ts, ping);
    let tampered = b.signer.sign(&ts, br#"{"type":1,"id":"2"}"#);
    for (sig, ts, says) in [
        (
            None,
            Some(ts.as_str()),
            "X-Signature-Ed25519 header is missing",
        ),
        (
            Some(sig.as_str()),
            None,
            "X-Signature-Timestamp header is missing",
        ),
        (Some(forged.as_str()), Some(ts.as_str()), "does not verify"),
        (
            Some(tampered.as_str()),
            Some(ts.as_str()),
            "does not verify",
        ),
        (Some("zz"), Some(ts.as_str()), "128 hex digits"),
        (
            Some(stale_sig.as_str()),
            Some(stale_ts.as_str()),
            "more than 300 s",
        ),
    ] {
        let r = b.post(ping, sig, ts).await;
        assert_eq!(
            (r.status, code(&r)),
            (401, "invalid_discord_signature"),
            "{says}: {}",
            r.text
        );
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(says),
            "{}",
            r.text
        );
    }
    // A good signature over a body that is not an interaction: 400.
    let junk = b"{\"not\":\"an interaction\"}";
    let sig = b.signer.sign(&ts, junk);
    let r = b.post(junk, Some(&sig), Some(&ts)).await;
    assert_eq!((r.status, code(&r)), (400, "invalid_json"), "{}", r.text);

    let m = common::metrics_text(&b.s).await;
    assert_eq!(
        common::metric_value(
            &m,
            "heady_discord_interactions_total{type=\"ping\",command=\"\",outcome=\"pong\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        common::metric_value(&m, "heady_discord_interactions_total{type=\"invalid\",command=\"\",outcome=\"bad_signature\"}"),
        6.0
    );
    assert!(b.fake.requests().is_empty(), "nothing reached Discord");
    b.s.stop().await;

    // Without [discord]: 503 naming what is missing.
    let plain = TestServer::start(|_| {}).await;
    for (method, path) in [
        ("POST", "/discord/interactions"),
        ("GET", "/discord/login"),
        ("GET", "/discord/callback"),
    ] {
        let r =
            Answer::of(common::client().request(method.parse().unwrap(), plain.url(path))).await;
        assert_eq!(
            (r.status, code(&r)),
            (503, "discord_not_configured"),
            "{path}"
        );
        assert!(r.text.contains("application_id"), "{}", r.text);
    }
    plain.stop().await;
}

#[tokio::test]
async fn the_sign_in_links_a_discord_user_once_per_state_and_browser() {
    let b = bot().await;
    let (key, account) = new_key(&b.s.state, "ana", Tier::Pro, Classification::Internal).await;

    // The form: HTML, no scripts, a strict policy.
    let r = Answer::of(browser().get(b.s.url("/discord/login"))).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(r.text.contains("name=\"key\"") && !r.text.contains("<script"));
    let csp = r.header("content-security-policy");
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("form-action 'self' https://discord.test"),
        "{csp}"
    );
    assert_eq!(r.header("x-frame-options"), "DENY");

    // A bad key is refused as the defense refuses it; no key is 400.
    let r = Answer::of(
        browser()
            .post(b.s.url("/discord/login"))
            .form(&[("key", format!("hk_{}", "0".repeat(64)))]),
    )
    .await;
    assert_eq!((r.status, code(&r)), (401, "invalid_api_key"), "{}", r.text);
    let r = Answer::of(
        browser()
            .post(b.s.url("/discord/login"))
            .form(&[("nokey", "x")]),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);

    // The whole flow: form -> Discord -> callback -> linked.
    let r = b.link(&key, "4242", "ana_d").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("Linked as ana_d"), "{}", r.text);
    assert!(
        r.header("set-cookie").contains("Max-Age=0"),
        "the state cookie is cleared"
    );
    let exchange = b.fake.requests_to("POST", "/api/v10/oauth2/token");
    assert_eq!(exchange.len(), 1);
    let form = exchange[0].form();
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert_eq!(form["grant_type"], "authorization_code");
    let me = b.fake.requests_to("GET", "/api/v10/users/@me");
    assert!(me[0].headers["authorization"].starts_with("Bearer access"));
    let r = Answer::of(client_with(&key).get(b.s.url("/api/account"))).await;
    assert_eq!(r.body["discord"]["user_id"], "4242", "{}", r.text);
    assert_eq!(r.body["discord"]["username"], "ana_d");
    let (link, linked) =
        b.s.state
            .defense
            .accounts
            .discord_account("4242")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        (link.account_id, linked.id.clone()),
        (account.clone(), account.clone())
    );

    // A state is used once; another browser (no cookie, or another cookie) is refused.
    let (state, cookie) = b.login(&key).await;
    let code1 = b.fake.authorize("4242", "ana_d");
    let r = b
        .callback(&format!("code={code1}&state={state}"), None)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("another browser"), "{}", r.text);
    let r = b
        .callback(&format!("code={code1}&state={state}"), Some(&cookie))
        .await;
    assert_eq!(
        r.status, 400,
        "a refused attempt used the state up: {}",
        r.text
    );
    let (state, _) = b.login(&key).await;
    let r = b
        .callback(
            &format!("code={code1}&state={state}"),
            Some("not-the-cookie"),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = b
        .callback(&format!("code={code1}&state=madeup"), Some(&cookie))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("unknown, expired or finished"),
        "{}",
        r.text
    );
    // A code Discord does not know: 502 with Discord's words; the user denied: 400.
    let (state, cookie) = b.login(&key).await;
    let r = b
        .callback(&format!("code=bogus&state={state}"), Some(&cookie))
        .await;
    assert_eq!((r.status, code(&r)), (502, "upstream_failed"), "{}", r.text);
    assert!(r.text.contains("Invalid \\\"code\\\""), "{}", r.text);
    let r = b.callback("error=access_denied&state=x", None).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("access_denied"), "{}", r.text);

    // An API client goes straight to Discord with its bearer key.
    let r = Answer::of(browser().get(b.s.url("/discord/login")).bearer_auth(&key)).await;
    assert_eq!(r.status, 303, "{}", r.text);
    state_and_cookie(&r);
    // Linking the same Discord user to another account moves the link.
    let (key2, account2) = new_key(&b.s.state, "bo", Tier::Free, Classification::Internal).await;
    let r = b.link(&key2, "4242", "ana_d").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, now) =
        b.s.state
            .defense
            .accounts
            .discord_account("4242")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(now.id, account2);
    let r = Answer::of(client_with(&key).get(b.s.url("/api/account"))).await;
    assert_eq!(r.body["discord"], Value::Null, "{}", r.text);

    // Unlinking.
    let r = Answer::of(client_with(&key2).delete(b.s.url("/api/account/discord"))).await;
    assert_eq!(r.body, json!({"unlinked": true}), "{}", r.text);
    let r = Answer::of(client_with(&key2).delete(b.s.url("/api/account/discord"))).await;
    assert_eq!(r.body, json!({"unlinked": false}));
    assert!(b
        .s
        .state
        .defense
        .accounts
        .discord_account("4242")
        .await
        .unwrap()
        .is_none());
    let m = common::metrics_text(&b.s).await;
    assert_eq!(
        common::metric_value(&m, "heady_discord_links_total{outcome=\"linked\"}"),
        2.0,
        "{m}"
    );
    b.s.stop().await;
}

#[tokio::test]
async fn ask_is_deferred_then_answered_through_the_webhook() {
    let b = bot().await;
    let (key, _) = new_key(&b.s.state, "ana", Tier::Pro, Classification::Internal).await;
    assert_eq!(b.link(&key, "4242", "ana_d").await.status, 200);

    // A linked user in a guild: deferred at once, then the provider's answer replaces it.
    let r = b
        .interact(&command(
            "ask",
            "question",
            "What is Heady?",
            "4242",
            "tok1",
            true,
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"type": 5}));
    let msgs = b.fake.wait_messages("tok1", 1).await;
    assert_eq!(msgs, vec![("PATCH".to_string(), REPLY.to_string())]);
    let sent = b.fake.requests_to(
        "PATCH",
        &format!("/api/v10/webhooks/{APPLICATION_ID}/tok1/messages/@original"),
    );
    assert_eq!(sent[0].json()["allowed_mentions"], json!({"parse": []}));
    let asked = b.provider.last();
    assert!(asked.to_string().contains("What is Heady?"), "{asked}");

    // An unlinked user in a DM: answered too, anonymously, and told how to link.
    let r = b
        .interact(&command("ask", "question", "Hi", "999", "tok2", false))
        .await;
    assert_eq!(r.body, json!({"type": 5}));
    let msgs = b.fake.wait_messages("tok2", 1).await;
    assert!(msgs[0].1.starts_with(REPLY), "{msgs:?}");
    assert!(
        msgs[0].1.contains("https://discord.test/discord/login"),
        "{msgs:?}"
    );

    // A long answer: the first 2000 characters replace the deferral, the rest follow.
    let long = "word ".repeat(900);
    b.provider.set(|be| be.reply = Some(long.clone()));
    b.interact(&command(
        "ask",
        "question",
        "Tell me more",
        "4242",
        "tok3",
        true,
    ))
    .await;
    let msgs = b.fake.wait_messages("tok3", 3).await;
    assert_eq!(
        msgs.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
        ["PATCH", "POST", "POST"]
    );
    assert!(msgs.iter().all(|(_, c)| c.chars().count() <= 2000));
    let words: usize = msgs.iter().map(|(_, c)| c.split_whitespace().count()).sum();
    assert_eq!(words, 900);

    // Discord says slow down: the answer waits retry_after and is sent.
    b.provider.set(|be| be.reply = Some(REPLY.into()));
    b.fake.fail_next(
        429,
        json!({"message": "You are being rate limited.", "retry_after": 0.2, "global": false}),
    );
    b.interact(&command("ask", "question", "Again", "4242", "tok4", true))
        .await;
    let msgs = b.fake.wait_messages("tok4", 2).await;
    assert_eq!(
        msgs[1],
        ("PATCH".to_string(), REPLY.to_string()),
        "{msgs:?}"
    );

    // The provider fails: the user reads why, with the request id.
    b.provider.set(|be| be.fail_status = Some(500));
    b.interact(&command("ask", "question", "Broken?", "4242", "tok5", true))
        .await;
    let msgs = b.fake.wait_messages("tok5", 1).await;
    assert!(
        msgs[0].1.starts_with("Sorry, the answer failed") && msgs[0].1.contains("Request id"),
        "{msgs:?}"
    );

    // An empty question is refused at once, only to the user.
    let r = b
        .interact(&command("ask", "question", "  ", "4242", "tok6", true))
        .await;
    assert_eq!(r.body["type"], 4);
    assert_eq!(r.body["data"]["flags"], 64);
    let m = common::metrics_text(&b.s).await;
    assert_eq!(
        common::metric_value(&m, "heady_discord_interactions_total{type=\"command\",command=\"ask\",outcome=\"deferred\"}"),
        5.0,
        "{m}"
    );
    assert!(common::metric_value(&m, "heady_discord_follow_ups_total{outcome=\"sent\"}") >= 7.0);
    b.s.stop().await;
}

#[tokio::test]
async fn search_answers_from_the_linked_accounts_memory_only() {
    let b = bot().await;
    let (ana, _) = new_key(&b.s.state, "ana", Tier::Pro, Classification::Internal).await;
    let (bo, _) = new_key(&b.s.state, "bo", Tier::Pro, Classification::Internal).await;
    for (key, content) in [
        (&ana, "ana keeps the orchard ledger in the blue notebook"),
        (&bo, "bo keeps the orchard secrets in the red notebook"),
    ] {
        let r = Answer::of(
            client_with(key)
                .post(b.s.url("/api/memory/vectors"))
                .json(&json!({"content": content})),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    b.s.wait_index().await;
    assert_eq!(b.link(&ana, "4242", "ana_d").await.status, 200);

    let r = b
        .interact(&command(
            "search",
            "query",
            "orchard notebook",
            "4242",
            "t1",
            true,
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["type"].clone(), r.body["data"]["flags"].clone()),
        (json!(4), json!(64))
    );
    let text = r.body["data"]["content"].as_str().unwrap();
    assert!(text.contains("blue notebook"), "{text}");
    assert!(
        !text.contains("red notebook"),
        "another account's row: {text}"
    );

    // Unlinked: told how to link; an unknown command: named.
    let r = b
        .interact(&command("search", "query", "orchard", "999", "t2", false))
        .await;
    let text = r.body["data"]["content"].as_str().unwrap();
    assert!(
        text.contains("linked Heady account")
            && text.contains("https://discord.test/discord/login"),
        "{text}"
    );
    assert_eq!(r.body["data"]["flags"], 64);
    let r = b
        .interact(&command("dance", "x", "y", "4242", "t3", true))
        .await;
    assert!(
        r.body["data"]["content"]
            .as_str()
            .unwrap()
            .contains("/dance"),
        "{}",
        r.text
    );

    // A disabled account's link does not work.
    let account =
        b.s.state
            .defense
            .accounts
            .account_by_name("ana")
            .await
            .unwrap()
            .unwrap();
    b.s.state
        .defense
        .accounts
        .update_account(
            &account.id,
            &heady_origin::accounts::AccountChange {
                status: Some(heady_shared::AccountStatus::Disabled),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let r = b
        .interact(&command("search", "query", "orchard", "4242", "t4", true))
        .await;
    let text = r.body["data"]["content"].as_str().unwrap();
    assert!(text.contains("linked Heady account"), "{text}");
    b.s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn register_commands_overwrites_the_applications_commands() {
    let fake = FakeDiscord::start("https://discord.test/discord/callback").await;
    let key = Signer::new(7).public_key;
    let run = |token: Option<&str>, args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_heady-origin"));
        cmd.args(["discord", "register-commands"])
            .args(args)
            .env("HEADY_DISCORD_APPLICATION_ID", APPLICATION_ID)
            .env("HEADY_DISCORD_PUBLIC_KEY", &key)
            .env("HEADY_DISCORD__API_BASE", &fake.api_base)
            .env_remove("HEADY_DISCORD_BOT_TOKEN");
        if let Some(t) = token {
            cmd.env("HEADY_DISCORD_BOT_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let out = tokio::task::block_in_place(|| run(Some(BOT_TOKEN), &[]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("registered 2 commands globally"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/ask\t10000") && stdout.contains("/search\t10001"),
        "{stdout}"
    );
    let put = fake.requests_to(
        "PUT",
        &format!("/api/v10/applications/{APPLICATION_ID}/commands"),
    );
    assert_eq!(put.len(), 1);
    assert_eq!(put[0].headers["authorization"], format!("Bot {BOT_TOKEN}"));
    let body = put[0].json();
    assert_eq!(body[0]["name"], "ask");
    assert_eq!(body[0]["options"][0]["name"], "question");
    assert_eq!(body[0]["options"][0]["required"], true);
    assert_eq!(body[1]["name"], "search");

    let out = tokio::task::block_in_place(|| run(Some(BOT_TOKEN), &["--guild", "777"]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("in guild 777"));
    assert_eq!(
        fake.requests_to(
            "PUT",
            &format!("/api/v10/applications/{APPLICATION_ID}/guilds/777/commands")
        )
        .len(),
        1
    );
    // Discord refuses the token: its words, exit 1, and the token is not printed.
    let out = tokio::task::block_in_place(|| run(Some("wrong-token-xyz"), &[]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("401: Unauthorized") && !stderr.contains("wrong-token-xyz"),
        "{stderr}"
    );
    // No token, or a bad guild: exit 2 naming the problem.
    let out = tokio::task::block_in_place(|| run(None, &[]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("discord.bot_token"));
    let out = tokio::task::block_in_place(|| run(Some(BOT_TOKEN), &["--guild", "abc"]));
    assert_eq!(out.status.code(), Some(2));
}
