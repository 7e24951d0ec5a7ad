//! Discord's REST API, the calls Heady makes: the OAuth2 code exchange, `users/@me`, the
//! interaction webhook (the deferred answer and its follow-ups), and command registration.
//! Calls are retried as Discord asks ([`super::interaction::retry_delay`]) within a deadline.
//! Tokens and secrets go in headers or form bodies, never in an error or a log line.

use super::config::DiscordConfig;
use super::interaction::retry_delay;
use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Why a call to Discord failed; the text is safe to show (no tokens, no secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscordError {
    /// A key this call needs is not set (`discord.bot_token`, `discord.client_secret`).
    #[error("{0} is not set")]
    Missing(&'static str),
    /// Discord answered with an error: its status and message.
    #[error("Discord answered {status} to {what}: {message}")]
    Refused {
        what: &'static str,
        status: u16,
        message: String,
    },
    /// No usable answer (connection, timeout, a body that is not what Discord sends).
    #[error("calling Discord for {what}: {message}")]
    Transport { what: &'static str, message: String },
}

/// The user `users/@me` names.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Me {
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub global_name: Option<String>,
}

/// A command as Discord registered it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Registered {
    pub id: String,
    pub name: String,
}

pub struct DiscordClient {
    http: reqwest::Client,
    base: String,
    application_id: String,
    bot_token: Option<String>,
    client_secret: Option<String>,
    redirect_uri: String,
}

impl DiscordClient {
    pub fn new(cfg: &DiscordConfig) -> anyhow::Result<DiscordClient> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .user_agent(concat!(
                "DiscordBot (https://discord.headysystems.com, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .build()?;
        Ok(DiscordClient {
            http,
            base: cfg.api_base.trim_end_matches('/').to_string(),
            application_id: cfg.application_id.clone().unwrap_or_default(),
            bot_token: cfg.bot_token.as_ref().map(|s| s.expose().to_string()),
            client_secret: cfg.client_secret.as_ref().map(|s| s.expose().to_string()),
            redirect_uri: cfg.redirect_uri(),
        })
    }

    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// Sends what `build` makes, retrying 429 (after Discord's `retry_after`) and 5xx or no
    /// answer (backing off) until `deadline`; answers the 2xx body as JSON (`Null` when empty).
    async fn call(
        &self,
        what: &'static str,
        deadline: Instant,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, DiscordError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (status, retry_after, error) = match build().send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let header = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok());
                    let body = resp.bytes().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        if body.is_empty() {
                            return Ok(Value::Null);
                        }
                        return serde_json::from_slice(&body).map_err(|e| {
                            DiscordError::Transport {
                                what,
                                message: format!("an answer that is not JSON: {e}"),
                            }
                        });
                    }
                    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let retry_after = json.get("retry_after").and_then(Value::as_f64).or(header);
                    let message = discord_message(&json).unwrap_or_else(|| {
                        String::from_utf8_lossy(&body).chars().take(200).collect()
                    });
                    (
                        Some(status),
                        retry_after,
                        DiscordError::Refused {
                            what,
                            status,
                            message,
                        },
                    )
                }
                Err(e) => (
                    None,
                    None,
                    DiscordError::Transport {
                        what,
                        // reqwest's text holds the URL, which for a webhook holds the token.
                        message: transport_reason(&e).to_string(),
                    },
                ),
            };
            match retry_delay(status, retry_after, attempt) {
                Some(wait) if Instant::now() + wait < deadline => {
                    tracing::info!(
                        what,
                        ?status,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "Discord call: retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// `POST /oauth2/token`: the access token for an authorization code (not kept).
    pub async fn exchange_code(&self, code: &str) -> Result<String, DiscordError> {
        let secret = self
            .client_secret
            .as_deref()
            .ok_or(DiscordError::Missing("discord.client_secret"))?;
        let url = format!("{}/oauth2/token", self.base);
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("client_id", self.application_id.as_str()),
            ("client_secret", secret),
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        let v = self
            .call("the code exchange", deadline, || {
                self.http.post(&url).form(&form)
            })
            .await?;
        v.get("access_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(DiscordError::Transport {
                what: "the code exchange",
                message: "the answer has no access_token".into(),
            })
    }

    /// `GET /users/@me` with a user's access token.
    pub async fn me(&self, access_token: &str) -> Result<Me, DiscordError> {
        let url = format!("{}/users/@me", self.base);
        let deadline = Instant::now() + Duration::from_secs(10);
        let v = self
            .call("users/@me", deadline, || {
                self.http.get(&url).bearer_auth(access_token)
            })
            .await?;
        let me: Me = serde_json::from_value(v).map_err(|e| DiscordError::Transport {
            what: "users/@me",
            message: format!("not a user: {e}"),
        })?;
        if !super::config::is_snowflake(&me.id) {
            return Err(DiscordError::Transport {
                what: "users/@me",
                message: "the user's id is not a Discord id".into(),
            });
        }
        Ok(me)
    }

    /// Sends one message of an interaction's answer: the first replaces the deferred answer
    /// (`PATCH /webhooks/{app}/{token}/messages/@original`), the others follow it
    /// (`POST /webhooks/{app}/{token}`).
    pub async fn answer(
        &self,
        token: &str,
        content: &str,
        first: bool,
        deadline: Instant,
    ) -> Result<(), DiscordError> {
        let hook = format!("{}/webhooks/{}/{token}", self.base, self.application_id);
        let body = super::interaction::webhook_message(content);
        let (what, url) = if first {
            ("the deferred answer", format!("{hook}/messages/@original"))
        } else {
            ("a follow-up message", hook)
        };
        self.call(what, deadline, || {
            let req = if first {
                self.http.patch(&url)
            } else {
                self.http.post(&url)
            };
            req.json(&body)
        })
        .await
        .map(drop)
    }

    /// Overwrites the application's commands with Heady's (global, or one guild's).
    pub async fn register_commands(
        &self,
        guild: Option<&str>,
    ) -> Result<Vec<Registered>, DiscordError> {
        let token = self
            .bot_token
            .as_deref()
            .ok_or(DiscordError::Missing("discord.bot_token"))?;
        let url = match guild {
            Some(g) => format!(
                "{}/applications/{}/guilds/{g}/commands",
                self.base, self.application_id
            ),
            None => format!(
                "{}/applications/{}/commands",
                self.base, self.application_id
            ),
        };
        let body = super::interaction::commands();
        let deadline = Instant::now() + Duration::from_secs(60);
        let v = self
            .call("command registration", deadline, || {
                self.http
                    .put(&url)
                    .header("authorization", format!("Bot {token}"))
                    .json(&body)
            })
            .await?;
        serde_json::from_value(v).map_err(|e| DiscordError::Transport {
            what: "command registration",
            message: format!("not a list of commands: {e}"),
        })
    }
}

/// Discord's error text: `message` (and OAuth2's `error_description` / `error`), plus the
/// first nested field error when there is one.
fn discord_message(v: &Value) -> Option<String> {
    let top = v
        .get("message")
        .or_else(|| v.get("error_description"))
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)?;
    let detail = v.get("errors").and_then(first_error);
    Some(match detail {
        Some(d) => format!("{top} ({d})"),
        None => top.to_string(),
    })
    .map(|m| m.chars().take(300).collect())
}

fn first_error(v: &Value) -> Option<String> {
    if let Some(list) = v.get("_errors").and_then(Value::as_array) {
        return list
            .first()
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    v.as_object()?
        .iter()
        .find_map(|(k, child)| first_error(child).map(|m| format!("{k}: {m}")))
}

fn transport_reason(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn discord_errors_are_read_with_their_first_field_error() {
        let v = json!({"code": 50035, "message": "Invalid Form Body", "errors": {"0": {"name": {"_errors": [{"code": "X", "message": "Must be lower case"}]}}}});
        assert_eq!(
            discord_message(&v).unwrap(),
            "Invalid Form Body (0: name: Must be lower case)"
        );
        let oauth =
            json!({"error": "invalid_grant", "error_description": "Invalid \"code\" in request."});
        assert_eq!(
            discord_message(&oauth).unwrap(),
            "Invalid \"code\" in request."
        );
        assert_eq!(discord_message(&json!({})), None);
    }
}
