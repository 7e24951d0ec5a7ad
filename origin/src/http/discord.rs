//! The Discord property's routes: the interactions endpoint and the OAuth2 sign-in that links
//! a Discord user to an account. Commands run as REST routes called in-process
//! ([`super::mcp::call_route`]) as the linked account, or as an anonymous caller limited per
//! Discord user, so they get the routes' own policies, limits, metering and memory scoping.

use super::mcp::call_route;
use crate::accounts::DiscordLink;
use crate::api::{Ctx, Reply};
use crate::app::App;
use crate::defense::{anonymous, Identity, Presented};
use crate::discord::interaction::{self, Command, Interaction};
use crate::discord::state::{browser_hash, random_token, Pending};
use crate::discord::{Discord, LOGIN_PATH, STATE_COOKIE};
use crate::error::{Error, ErrorCode};
use crate::mcp::Tool;
use heady_shared::discord::{interaction_type, PONG_BODY};
use heady_shared::Subject;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Discord's interactions are a few KiB; a larger body is refused before it is read whole.
pub const INTERACTION_MAX_BYTES: usize = 64 * 1024;
/// The sign-in form posts one key.
pub const LOGIN_MAX_BYTES: usize = 4 * 1024;
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

fn configured(s: &App) -> Result<&Arc<Discord>, Error> {
    s.discord.as_ref().ok_or_else(|| {
        Error::new(
            ErrorCode::DiscordNotConfigured,
            "Discord is not configured on this server ([discord]: application_id and public_key, HEADY_DISCORD_APPLICATION_ID and HEADY_DISCORD_PUBLIC_KEY)",
        )
    })
}

/// The sign-in needs the OAuth2 client secret too.
fn sign_in(s: &App) -> Result<&Arc<Discord>, Error> {
    let d = configured(s)?;
    if d.config.client_secret.is_none() {
        return Err(Error::new(
            ErrorCode::DiscordNotConfigured,
            "linking Discord users needs discord.client_secret (HEADY_DISCORD_CLIENT_SECRET)",
        ));
    }
    Ok(d)
}

fn now_unix() -> u64 {
    crate::accounts::now_secs().max(0) as u64
}

fn header<'a>(c: &'a Ctx, name: &str) -> Option<&'a str> {
    c.headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /discord/interactions`: Discord's signature first (401 `invalid_discord_signature`),
/// then `PING` -> `PONG`, `/ask` -> deferred (the answer follows through the webhook),
/// `/search` -> the linked account's memory.
pub async fn interactions(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let discord = configured(&s)?.clone();
    let m = &discord.metrics;
    if let Err(refusal) = discord.key.verify(
        header(&c, heady_shared::discord::SIGNATURE_HEADER),
        header(&c, heady_shared::discord::TIMESTAMP_HEADER),
        &c.body,
        now_unix(),
    ) {
        m.interaction("invalid", "", "bad_signature");
        return Err(Error::unauthorized(
            ErrorCode::InvalidDiscordSignature,
            refusal.to_string(),
        ));
    }
    let inbound = Interaction::parse(&c.body).map_err(|e| {
        m.interaction("invalid", "", "malformed");
        Error::invalid_json(e)
    })?;
    if inbound.kind == interaction_type::PING {
        m.interaction("ping", "", "pong");
        return Ok(Reply::bytes(200, JSON, PONG_BODY));
    }
    let (Some(command), Some(user)) = (inbound.command.clone(), inbound.user.clone()) else {
        m.interaction("other", "", "unsupported");
        return message(
            "Heady answers its slash commands only (/ask, /search).",
            true,
        );
    };
    let label = command.label();
    let linked = s
        .defense
        .accounts
        .discord_account(&user.id)
        .await
        .map_err(crate::api::accounts::error_of)?;
    let identity = identity_of(&c, &user.id, linked.as_ref().map(|(_, a)| a))?;
    if s.defense.enabled {
        if let Err(e) = s.defense.limit(&identity).await {
            m.interaction("command", label, "limited");
            return message(&format!("{} Try again later.", e.public_message()), true);
        }
    }
    let login = discord.config.login_url();
    match command {
        Command::Ask { question } => {
            if let Some(refusal) = out_of_bounds(
                "/ask needs a question",
                &question,
                interaction::MAX_QUESTION_CHARS,
            ) {
                m.interaction("command", label, "invalid");
                return refusal;
            }
            m.interaction("command", label, "deferred");
            let footer = linked.is_none().then(|| {
                format!("\n\n-# Answered anonymously (Free plan, no memory). Link your Heady account: {login}")
            });
            spawn_answer(
                s.clone(),
                discord.clone(),
                identity,
                c.request_id.clone(),
                inbound.token,
                question,
                footer,
            );
            Reply::ok(&interaction::deferred())
        }
        Command::Search { query } => {
            if linked.is_none() {
                m.interaction("command", label, "unlinked");
                return message(
                    &format!("Searching memory needs a linked Heady account: sign in at {login} and link your Discord user, then try again."),
                    true,
                );
            }
            if let Some(refusal) = out_of_bounds(
                "/search needs a query",
                &query,
                interaction::MAX_QUERY_CHARS,
            ) {
                m.interaction("command", label, "invalid");
                return refusal;
            }
            let args = json!({"text": query, "top_k": interaction::SEARCH_TOP_K});
            let text = match run_tool(&s, &identity, &c.request_id, Tool::MemorySearch, args).await
            {
                Ok(answer) => {
                    m.interaction("command", label, "answered");
                    interaction::search_text(&query, &answer)
                }
                Err(e) => {
                    m.interaction("command", label, "failed");
                    failure_text("search", &e, &c.request_id)
                }
            };
            message(&text, true)
        }
        Command::Unknown { name } => {
            m.interaction("command", label, "unknown");
            message(
                &format!("Heady does not know the command /{name}; it answers /ask and /search."),
                true,
            )
        }
    }
}

/// An ephemeral refusal when `text` is empty or longer than `max` characters.
fn out_of_bounds(what: &str, text: &str, max: usize) -> Option<Result<Reply, Error>> {
    (text.is_empty() || text.chars().count() > max)
        .then(|| message(&format!("{what} of 1 to {max} characters."), true))
}

fn message(content: &str, ephemeral: bool) -> Result<Reply, Error> {
    Reply::ok(&interaction::message(content, ephemeral))
}

/// The caller a command runs as: the linked account, or an anonymous caller counted per
/// Discord user (`user:discord-<id>`, which no account id can be).
fn identity_of(
    c: &Ctx,
    user_id: &str,
    account: Option<&crate::accounts::Account>,
) -> Result<Identity, Error> {
    Ok(match account {
        Some(a) => Identity {
            subject: Subject::account(&a.id),
            tier: a.tier,
            clearance: a.clearance,
            key_id: None,
            client_ip: c.identity.client_ip,
            anonymous: false,
            models: None,
            via_edge: c.identity.via_edge,
            semantic_cache: a.semantic_cache,
        },
        None => Identity {
            subject: Subject::user(&format!("discord-{user_id}"))
                .map_err(|e| Error::bad_request(e.to_string()))?,
            ..anonymous(c.identity.client_ip)
        },
    })
}

/// A tool's route, in-process, as `identity`: its JSON answer.
async fn run_tool(
    s: &Arc<App>,
    identity: &Identity,
    request_id: &str,
    tool: Tool,
    args: Value,
) -> Result<Value, Error> {
    let rest = tool.request(Some(args)).map_err(Error::bad_request)?;
    let bytes = call_route(s, identity, request_id, http::HeaderMap::new(), &rest).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::internal(format!("{} answered something not JSON: {e}", rest.path)))
}

/// What the user reads when a command failed; the log has the details under the request id.
fn failure_text(what: &str, e: &Error, request_id: &str) -> String {
    if e.is_server_error() {
        tracing::error!(request_id, status = e.status(), code = %e.code, message = %e.message, "Discord {what} failed");
    } else {
        tracing::info!(request_id, status = e.status(), code = %e.code, message = %e.message, "Discord {what} refused");
    }
    let mut text = format!(
        "Sorry, the {what} failed: {} ({})",
        e.public_message(),
        e.code
    );
    if let Some(secs) = e.retry_after {
        text.push_str(&format!("; try again in {secs} s"));
    }
    text.push_str(&format!(". Request id: {request_id}"));
    text
}

/// Answers `/ask` in the background: the pipeline as `identity`, then the text through the
/// interaction's webhook, before the token's 15 minutes are up. Shutdown does not cut it off
/// silently: the user is told to ask again.
fn spawn_answer(
    s: Arc<App>,
    discord: Arc<Discord>,
    identity: Identity,
    request_id: String,
    token: String,
    question: String,
    footer: Option<String>,
) {
    let stop = s.background.token();
    let background = s.background.clone();
    background.spawn_to_end(async move {
        let deadline = Instant::now() + interaction::FOLLOW_UP_DEADLINE;
        let mut args = json!({"message": question});
        if identity.account().is_some() {
            args["session_id"] = json!("discord");
        }
        // Leave a minute to deliver whatever the pipeline says.
        let budget = interaction::FOLLOW_UP_DEADLINE - Duration::from_secs(60);
        let ask = run_tool(&s, &identity, &request_id, Tool::Chat, args);
        let mut text = tokio::select! {
            r = tokio::time::timeout(budget, ask) => match r {
                Ok(Ok(answer)) => Tool::Chat.text_of(&answer),
                Ok(Err(e)) => failure_text("answer", &e, &request_id),
                Err(_) => failure_text("answer", &Error::new(ErrorCode::NotReady, "no answer within the time Discord allows"), &request_id),
            },
            _ = stop.cancelled() => "Heady restarted before it could answer: please ask again.".to_string(),
        };
        if let Some(f) = footer {
            text.push_str(&f);
        }
        deliver(&discord, &token, &text, deadline, &request_id).await;
    });
}

async fn deliver(discord: &Discord, token: &str, text: &str, deadline: Instant, request_id: &str) {
    let sent = |outcome: &'static str| {
        discord
            .metrics
            .follow_ups
            .get_or_create(&crate::metrics::OutcomeLabels { outcome })
            .inc();
    };
    for (i, part) in interaction::split_message(text, interaction::MAX_MESSAGE_CHARS)
        .iter()
        .enumerate()
    {
        match discord.client.answer(token, part, i == 0, deadline).await {
            Ok(()) => sent("sent"),
            Err(e) => {
                sent("failed");
                tracing::warn!(request_id, part = i, error = %e, "Discord: could not deliver the answer");
                return;
            }
        }
    }
}

/// `GET /discord/login`: with `Authorization: Bearer hk_...` (an API client) straight to
/// Discord (303); otherwise the form where a user pastes an API key.
pub async fn login_page(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let discord = sign_in(&s)?;
    if let Some(account) = c.identity.account() {
        return begin(discord, account).await;
    }
    Ok(page(200, discord, LOGIN_FORM.to_string()))
}

/// `POST /discord/login` (`key=hk_...`, form-encoded): the key is checked as the defense checks
/// one (failed attempts count per address), then the browser goes to Discord (303) with a
/// fresh `state` and the cookie that binds it to this browser.
pub async fn login(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let discord = sign_in(&s)?;
    let key = url::form_urlencoded::parse(&c.body)
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.trim().to_string())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Error::bad_request("the form needs key: your Heady API key (hk_...)"))?;
    let mut headers = http::HeaderMap::new();
    let bearer = http::HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
        Error::unauthorized(
            ErrorCode::InvalidApiKey,
            "the API key is malformed: expected hk_ followed by 64 lowercase hex digits",
        )
    })?;
    headers.insert(http::header::AUTHORIZATION, bearer);
    let uri = http::Uri::from_static(LOGIN_PATH);
    let who = s
        .defense
        .identify(Presented {
            method: &http::Method::POST,
            uri: &uri,
            headers: &headers,
            body: &[],
            peer: c.identity.client_ip,
        })
        .await?;
    let account = who
        .account()
        .ok_or_else(|| crate::defense::authentication_required("linking needs an account"))?;
    begin(discord, account).await
}

async fn begin(discord: &Discord, account: heady_shared::AccountId) -> Result<Reply, Error> {
    let state = random_token();
    let cookie = random_token();
    let pending = Pending {
        account,
        browser: browser_hash(&cookie),
    };
    discord
        .states
        .put(&state, &pending, now_unix())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "Discord sign-in: could not store the state");
            Error::unavailable("could not store the sign-in; try again shortly")
        })?;
    let cfg = &discord.config;
    let location = interaction::authorize_url(
        &cfg.authorize_url,
        discord.client.application_id(),
        &state,
        &cfg.redirect_uri(),
    );
    Ok(Reply::bytes(303, "text/plain; charset=utf-8", "")
        .header("location", location)
        .header(
            "set-cookie",
            format!(
                "{STATE_COOKIE}={cookie}; Path=/discord; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
                crate::discord::state::STATE_TTL_SECS
            ),
        )
        .header("cache-control", "no-store"))
}

/// `GET /discord/callback?code=..&state=..` (or `error=access_denied`): the state must be one
/// this server issued, unused, within ten minutes, and come back to the browser that got its
/// cookie; then the code is exchanged, the Discord user read, and the link stored. Discord's
/// access token is not kept.
pub async fn callback(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let discord = sign_in(&s)?;
    let m = &discord.metrics.links;
    let count = |outcome: &'static str| {
        m.get_or_create(&crate::metrics::OutcomeLabels { outcome })
            .inc()
    };
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(c.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    if let Some(error) = get("error") {
        count("denied");
        return Err(Error::bad_request(format!(
            "Discord did not authorize the link ({}): nothing was linked",
            interaction::excerpt(error, 64)
        )));
    }
    let (Some(code), Some(state)) = (get("code"), get("state")) else {
        return Err(Error::bad_request(
            "the callback needs code and state (start at /discord/login)",
        ));
    };
    let pending = discord
        .states
        .take(state, now_unix())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "Discord sign-in: could not read the state");
            Error::unavailable("could not read the sign-in; try again shortly")
        })?
        .ok_or_else(|| {
            count("bad_state");
            Error::bad_request(
                "this sign-in is unknown, expired or finished already: start again at /discord/login",
            )
        })?;
    let cookie = cookie_value(&c, STATE_COOKIE);
    if !cookie.is_some_and(|v| pending.same_browser(v)) {
        count("other_browser");
        return Err(Error::new(
            ErrorCode::InvalidRequest,
            "this sign-in was started in another browser (its cookie is missing or different): start again at /discord/login",
        )
        .with_status(403));
    }
    let discord_failed = |e: crate::discord::client::DiscordError| {
        count("discord_failed");
        tracing::warn!(request_id = %c.request_id, error = %e, "Discord sign-in: Discord's API refused or failed");
        Error::new(ErrorCode::UpstreamFailed, format!("linking failed: {e}"))
    };
    let access = discord
        .client
        .exchange_code(code)
        .await
        .map_err(discord_failed)?;
    let me = discord.client.me(&access).await.map_err(discord_failed)?;
    drop(access);
    let link = DiscordLink {
        user_id: me.id.clone(),
        username: me.username.clone(),
        account_id: pending.account.clone(),
        linked_at: crate::accounts::now_secs(),
    };
    s.defense
        .accounts
        .link_discord(&link)
        .await
        .map_err(crate::api::accounts::error_of)?;
    count("linked");
    tracing::info!(request_id = %c.request_id, account = %link.account_id, discord_user = %link.user_id, "Discord user linked to an account");
    let name = escape(me.global_name.as_deref().unwrap_or(&me.username));
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Heady for Discord</title></head><body><h1>Linked as {name}</h1><p>Your Discord user <b>{}</b> now acts for your Heady account: <code>/ask</code> uses your plan and <code>/search</code> your memory. You can close this page.</p></body></html>",
        escape(&me.username)
    );
    Ok(page(200, discord, body).header(
        "set-cookie",
        format!("{STATE_COOKIE}=; Path=/discord; Max-Age=0; HttpOnly; Secure; SameSite=Lax"),
    ))
}

fn cookie_value<'a>(c: &'a Ctx, name: &str) -> Option<&'a str> {
    c.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A page of ours: no scripts, nothing from elsewhere, never framed; the form may post here
/// and the redirect after it may go to Discord's authorize page.
fn page(status: u16, discord: &Discord, body: String) -> Reply {
    let authorize = url::Url::parse(&discord.config.authorize_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    Reply::bytes(status, HTML, body)
        .header(
            "content-security-policy",
            format!("default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {authorize}; frame-ancestors 'none'; base-uri 'none'"),
        )
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("cache-control", "no-store")
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

const LOGIN_FORM: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Link Discord to Heady</title>
<style>body{font:16px system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}input{width:100%;padding:.5rem;font:inherit}button{margin-top:1rem;padding:.5rem 1rem;font:inherit}</style>
</head><body>
<h1>Link your Discord user to Heady</h1>
<p>Paste one of your account's API keys. Discord then asks you to authorize Heady to read your Discord user name (the <code>identify</code> scope only); after that, your <code>/ask</code> and <code>/search</code> commands act for this account.</p>
<form method="post" action="/discord/login">
<label for="key">Heady API key</label>
<input id="key" name="key" type="password" autocomplete="off" required placeholder="hk_...">
<button type="submit">Continue to Discord</button>
</form>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_escaped_and_the_callback_path_is_the_default_redirect() {
        assert_eq!(escape("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
        assert!(crate::discord::config::DiscordConfig::default()
            .redirect_uri()
            .ends_with(crate::discord::CALLBACK_PATH));
        assert!(
            LOGIN_FORM.contains("action=\"/discord/login\"") && !LOGIN_FORM.contains("<script")
        );
    }
}
