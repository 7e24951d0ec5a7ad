//! The pure part of the bot: reading an interaction, the commands it registers, splitting an
//! answer into messages Discord accepts, the OAuth2 authorize URL, and when to retry a call.
//! No I/O and no clock: time comes in as arguments.

use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// Discord's limit on a message's `content`, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// Most characters of `/ask`'s question (declared to Discord as the option's `max_length`).
pub const MAX_QUESTION_CHARS: usize = 1500;
/// Most characters of `/search`'s query.
pub const MAX_QUERY_CHARS: usize = 500;
/// How many rows `/search` shows.
pub const SEARCH_TOP_K: usize = 5;
/// How much of a row `/search` shows.
pub const SNIPPET_CHARS: usize = 300;
/// An interaction token works for 15 minutes; the follow-up gives up a minute before.
pub const FOLLOW_UP_DEADLINE: Duration = Duration::from_secs(14 * 60);

/// A slash command Heady answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/ask question:<text>`: answered through the pipeline, deferred.
    Ask { question: String },
    /// `/search query:<text>`: the linked account's memory.
    Search { query: String },
    /// A command this server does not know (registered elsewhere, or stale).
    Unknown { name: String },
}

impl Command {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Command::Ask { .. } => "ask",
            Command::Search { .. } => "search",
            Command::Unknown { .. } => "unknown",
        }
    }
}

/// One interaction, as much of it as Heady reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub kind: u8,
    /// The interaction token: the follow-up webhook's credential. Never logged.
    pub token: String,
    /// The user who ran the command: `member.user` in a guild, `user` in a DM.
    pub user: Option<User>,
    /// For an application command.
    pub command: Option<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub username: String,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    token: String,
    #[serde(default)]
    member: Option<Member>,
    #[serde(default)]
    user: Option<User>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Member {
    user: Option<User>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    name: String,
    #[serde(default)]
    options: Vec<Opt>,
}

#[derive(Deserialize)]
struct Opt {
    name: String,
    #[serde(default)]
    value: Value,
}

impl Interaction {
    /// Reads a (verified) interaction body; `Err` says what is wrong with it.
    pub fn parse(body: &[u8]) -> Result<Interaction, String> {
        let w: Wire = serde_json::from_slice(body)
            .map_err(|e| format!("the interaction is not the JSON Discord sends: {e}"))?;
        let user = w.member.and_then(|m| m.user).or(w.user);
        if let Some(u) = &user {
            if !super::config::is_snowflake(&u.id) {
                return Err(format!(
                    "user.id must be a Discord id (got {:?})",
                    excerpt(&u.id, 40)
                ));
            }
        }
        let command = match (w.kind, w.data) {
            (heady_shared::discord::interaction_type::APPLICATION_COMMAND, Some(d)) => {
                let text = |option: &str| {
                    d.options
                        .iter()
                        .find(|o| o.name == option)
                        .and_then(|o| o.value.as_str())
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default()
                };
                Some(match d.name.as_str() {
                    "ask" => Command::Ask {
                        question: text("question"),
                    },
                    "search" => Command::Search {
                        query: text("query"),
                    },
                    other => Command::Unknown {
                        name: excerpt(other, 32),
                    },
                })
            }
            (heady_shared::discord::interaction_type::APPLICATION_COMMAND, None) => {
                return Err("an application command without data".into())
            }
            _ => None,
        };
        if command.is_some() && (user.is_none() || w.token.is_empty()) {
            return Err("an application command needs its user and token".into());
        }
        Ok(Interaction {
            kind: w.kind,
            token: w.token,
            user,
            command,
        })
    }
}

/// The first `max` characters of `text`.
pub fn excerpt(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The global commands Heady registers (`PUT /applications/{id}/commands`).
pub fn commands() -> Value {
    json!([
        {
            "name": "ask",
            "type": 1,
            "description": "Ask Heady (answers with your linked account's plan and memory)",
            "options": [{
                "type": 3,
                "name": "question",
                "description": "What to ask",
                "required": true,
                "max_length": MAX_QUESTION_CHARS,
            }],
        },
        {
            "name": "search",
            "type": 1,
            "description": "Search your linked Heady account's memory",
            "options": [{
                "type": 3,
                "name": "query",
                "description": "What to look for",
                "required": true,
                "max_length": MAX_QUERY_CHARS,
            }],
        },
    ])
}

/// An immediate answer: a message (ephemeral: only the user sees it).
pub fn message(content: &str, ephemeral: bool) -> Value {
    let mut data = json!({
        "content": excerpt(content, MAX_MESSAGE_CHARS),
        "allowed_mentions": {"parse": []},
    });
    if ephemeral {
        data["flags"] = json!(heady_shared::discord::EPHEMERAL);
    }
    json!({"type": heady_shared::discord::response_type::CHANNEL_MESSAGE, "data": data})
}

/// The deferred answer ("Heady is thinking..."), the message following through the webhook.
pub fn deferred() -> Value {
    json!({"type": heady_shared::discord::response_type::DEFERRED_CHANNEL_MESSAGE})
}

/// A webhook message body (no one is pinged by what a model wrote).
pub fn webhook_message(content: &str) -> Value {
    json!({"content": content, "allowed_mentions": {"parse": []}})
}

/// `text` as messages of at most `max` characters, cut at a line break or a space when one
/// is in the second half of a piece; an empty text is one message saying so.
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    let text = text.trim();
    if text.is_empty() {
        return vec!["(the answer was empty)".to_string()];
    }
    let mut out = Vec::new();
    let mut rest: Vec<char> = text.chars().collect();
    while rest.len() > max {
        let window = &rest[..max];
        let cut = ['\n', ' ']
            .iter()
            .find_map(|sep| {
                window
                    .iter()
                    .rposition(|c| c == sep)
                    .filter(|&i| i >= max / 2)
            })
            .map_or(max, |i| i + 1);
        let piece: String = rest[..cut].iter().collect();
        out.push(piece.trim_end().to_string());
        rest.drain(..cut);
    }
    if !rest.is_empty() {
        out.push(rest.iter().collect::<String>());
    }
    out
}

/// `/search`'s answer from the memory search route's JSON (`{"results":[{"content","score"}]}`).
pub fn search_text(query: &str, answer: &Value) -> String {
    let rows: Vec<&Value> = answer
        .get("results")
        .and_then(Value::as_array)
        .map(|r| r.iter().take(SEARCH_TOP_K).collect())
        .unwrap_or_default();
    if rows.is_empty() {
        return format!("No memory matches \"{}\".", excerpt(query, 100));
    }
    let mut text = format!(
        "Top {} in your memory for \"{}\":",
        rows.len(),
        excerpt(query, 100)
    );
    for (i, row) in rows.iter().enumerate() {
        let content = row.get("content").and_then(Value::as_str).unwrap_or("");
        let snippet = excerpt(&content.replace('\n', " "), SNIPPET_CHARS);
        let more = if content.chars().count() > SNIPPET_CHARS {
            "..."
        } else {
            ""
        };
        let score = row.get("score").and_then(Value::as_f64).unwrap_or(0.0);
        text.push_str(&format!("\n{}. ({score:.2}) {snippet}{more}", i + 1));
    }
    excerpt(&text, MAX_MESSAGE_CHARS)
}

/// Where `/discord/login` sends the browser: Discord's authorize page asking for `identify`.
pub fn authorize_url(authorize: &str, client_id: &str, state: &str, redirect_uri: &str) -> String {
    let mut url = match url::Url::parse(authorize) {
        Ok(u) => u,
        Err(_) => return authorize.to_string(),
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("scope", "identify")
        .append_pair("state", state)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("prompt", "consent");
    url.to_string()
}

/// How long to wait before retrying a call Discord answered with `status` (after `attempt`
/// tries, from 1), or `None`: do not retry. A 429 waits what Discord says (`retry_after`
/// seconds in its body, else the `Retry-After` header); a 5xx or no answer at all backs off
/// 0.5 s, 1 s, 2 s... up to 8 s. Four tries at most.
pub fn retry_delay(
    status: Option<u16>,
    retry_after_secs: Option<f64>,
    attempt: u32,
) -> Option<Duration> {
    const TRIES: u32 = 4;
    if attempt >= TRIES {
        return None;
    }
    match status {
        Some(429) => {
            let secs = retry_after_secs
                .filter(|s| s.is_finite() && *s >= 0.0)
                .unwrap_or(1.0);
            Some(Duration::from_secs_f64(secs.min(60.0)))
        }
        Some(s) if s < 500 => None,
        _ => {
            Some(Duration::from_millis(500u64 << (attempt - 1).min(4)).min(Duration::from_secs(8)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guild_command_reads_the_member_and_a_dm_the_user() {
        let guild = br#"{"type":2,"id":"1","token":"tok","member":{"user":{"id":"42","username":"ana"}},"data":{"name":"ask","options":[{"name":"question","type":3,"value":" why? "}]}}"#;
        let i = Interaction::parse(guild).unwrap();
        assert_eq!(i.user.as_ref().unwrap().id, "42");
        assert_eq!(
            i.command,
            Some(Command::Ask {
                question: "why?".into()
            })
        );
        let dm = br#"{"type":2,"token":"tok","user":{"id":"43","username":"bo"},"data":{"name":"search","options":[{"name":"query","value":"cats"}]}}"#;
        let i = Interaction::parse(dm).unwrap();
        assert_eq!(i.user.unwrap().username, "bo");
        assert_eq!(
            i.command,
            Some(Command::Search {
                query: "cats".into()
            })
        );
        let other = br#"{"type":2,"token":"t","user":{"id":"1"},"data":{"name":"dance"}}"#;
        assert_eq!(
            Interaction::parse(other).unwrap().command,
            Some(Command::Unknown {
                name: "dance".into()
            })
        );
        let ping = Interaction::parse(br#"{"type":1}"#).unwrap();
        assert_eq!((ping.kind, ping.command), (1, None));
    }

    #[test]
    fn malformed_interactions_are_named() {
        for (body, says) in [
            (&b"not json"[..], "not the JSON"),
            (
                &br#"{"type":2,"token":"t","user":{"id":"1"}}"#[..],
                "without data",
            ),
            (
                &br#"{"type":2,"data":{"name":"ask"}}"#[..],
                "its user and token",
            ),
            (
                &br#"{"type":2,"token":"t","user":{"id":"x;DROP"},"data":{"name":"ask"}}"#[..],
                "user.id",
            ),
        ] {
            let e = Interaction::parse(body).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn long_answers_split_into_messages_discord_accepts() {
        assert_eq!(split_message("short", 2000), vec!["short"]);
        assert_eq!(split_message("  ", 2000), vec!["(the answer was empty)"]);
        let words = "word ".repeat(1000);
        let parts = split_message(&words, MAX_MESSAGE_CHARS);
        assert!(parts.len() >= 3);
        assert!(parts
            .iter()
            .all(|p| p.chars().count() <= MAX_MESSAGE_CHARS && !p.is_empty()));
        assert!(parts.iter().all(|p| p.ends_with("word")), "cut at spaces");
        assert_eq!(parts.join(" ").split_whitespace().count(), 1000);
        // No separator: cut hard, multi-byte characters kept whole.
        let wide = "é".repeat(4500);
        let parts = split_message(&wide, MAX_MESSAGE_CHARS);
        assert_eq!(
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            [2000, 2000, 500]
        );
    }

    #[test]
    fn retries_follow_discord_then_back_off_then_stop() {
        assert_eq!(
            retry_delay(Some(429), Some(1.5), 1),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_delay(Some(429), None, 1),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry_delay(Some(502), None, 1),
            Some(Duration::from_millis(500))
        );
        assert_eq!(retry_delay(None, None, 3), Some(Duration::from_secs(2)));
        assert_eq!(retry_delay(Some(404), None, 1), None);
        assert_eq!(retry_delay(Some(400), None, 1), None);
        assert_eq!(retry_delay(Some(500), None, 4), None);
    }

    #[test]
    fn the_authorize_url_asks_for_identify_with_the_state() {
        let u = authorize_url(
            "https://discord.com/oauth2/authorize",
            "123",
            "st ate",
            "https://d.example/discord/callback",
        );
        let parsed = url::Url::parse(&u).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "123");
        assert_eq!(q["scope"], "identify");
        assert_eq!(q["state"], "st ate");
        assert_eq!(q["redirect_uri"], "https://d.example/discord/callback");
    }

    #[test]
    fn search_answers_show_snippets_and_commands_declare_their_options() {
        let answer = json!({"results": [
            {"content": "a".repeat(400), "score": 0.91},
            {"content": "line\nbreak", "score": 0.5},
        ]});
        let t = search_text("q", &answer);
        assert!(
            t.contains("1. (0.91) ") && t.contains("...") && t.contains("2. (0.50) line break"),
            "{t}"
        );
        assert!(search_text("q", &json!({"results": []})).starts_with("No memory matches"));
        let c = commands();
        assert_eq!(c[0]["name"], "ask");
        assert_eq!(c[0]["options"][0]["max_length"], 1500);
        assert_eq!(c[1]["options"][0]["required"], true);
        let m = message("hi", true);
        assert_eq!(m["data"]["flags"], 64);
        assert_eq!(m["type"], 4);
    }
}
