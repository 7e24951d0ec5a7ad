//! The conductor at the edge (pure): which `POST /api/{action}` requests the edge answers
//! itself, with which input, and the request bodies it accepts for them.
//!
//! `route(action)` (heady-shared) names the service group. Light work runs at the edge when
//! its binding is present: chat/complete with a short prompt on Workers AI, embed on Workers
//! AI embeddings, search on Vectorize. Everything else goes through the tunnel.

use heady_shared::api_paths::{self, action_path};
use heady_shared::embedding;
use heady_shared::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const DEFAULT_CHAT_MODEL: &str = "@cf/meta/llama-3.1-8b-instruct";
/// Prompts up to this many characters (all messages together) may run at the edge.
pub const DEFAULT_EDGE_PROMPT_MAX_CHARS: usize = 4000;
pub const MAX_EMBED_TEXTS: usize = 100;
/// Vectorize returns at most 20 matches when metadata is requested.
pub const MAX_TOP_K: usize = 20;
pub const DEFAULT_TOP_K: usize = 5;
/// Request bodies larger than this are refused before they are read into memory.
pub const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Work the edge can do itself.
#[derive(Debug, Clone, PartialEq)]
pub enum EdgeJob {
    Chat {
        messages: Vec<ChatMessage>,
        max_tokens: Option<u32>,
    },
    Embed {
        texts: Vec<String>,
    },
    /// Exactly one of `embedding` / `text` is set.
    Search {
        embedding: Option<Vec<f32>>,
        text: Option<String>,
        top_k: usize,
    },
}

/// Which bindings this Worker has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bindings {
    pub ai: bool,
    pub vectorize: bool,
}

/// The conductor's decision for a request it accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum Dispatch {
    Edge(EdgeJob),
    /// Tunnel to this origin path (with the original query and body).
    Origin {
        path: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatBody {
    messages: Option<Vec<ChatMessage>>,
    prompt: Option<String>,
    max_tokens: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbedBody {
    text: OneOrMany,
}

/// The origin's `/api/memory/search` body, so the same request works on both sides.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    text: Option<String>,
    embedding: Option<Vec<f64>>,
    top_k: Option<usize>,
    #[allow(dead_code)] // accepted so the body stays valid for the origin
    session_id: Option<String>,
}

/// Whether `action` reads the caller's memory (search: Vectorize at the edge, DuckDB at the
/// origin).
pub fn uses_memory(action: &str) -> bool {
    matches!(action, "search" | "query")
}

/// Decides where `action` runs. Bodies of the edge actions are validated here whichever side
/// runs them, so a bad request is a 400 at the edge, never a wasted round trip.
pub fn dispatch(
    action: &str,
    body: &[u8],
    bindings: Bindings,
    prompt_max_chars: usize,
) -> Result<Dispatch, ApiError> {
    let origin = |path: String| Ok(Dispatch::Origin { path });
    match action {
        "chat" | "complete" => {
            let body: ChatBody = parse(body)?;
            let messages = match (body.messages, body.prompt) {
                (Some(m), None) if !m.is_empty() => m,
                (None, Some(p)) if !p.trim().is_empty() => vec![ChatMessage {
                    role: "user".into(),
                    content: p,
                }],
                _ => {
                    return Err(ApiError::bad_request(
                        "send either \"messages\" (a non-empty list of {role, content}) or \"prompt\" (a non-empty string)",
                    ))
                }
            };
            if let Some(m) = messages
                .iter()
                .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
            {
                return Err(ApiError::bad_request(format!(
                    "message role {:?} is not system, user or assistant",
                    m.role
                )));
            }
            let chars: usize = messages.iter().map(|m| m.content.chars().count()).sum();
            if bindings.ai && chars <= prompt_max_chars {
                Ok(Dispatch::Edge(EdgeJob::Chat {
                    messages,
                    max_tokens: body.max_tokens,
                }))
            } else {
                origin(action_path(action))
            }
        }
        "embed" => {
            let body: EmbedBody = parse(body)?;
            let texts = match body.text {
                OneOrMany::One(t) => vec![t],
                OneOrMany::Many(ts) => ts,
            };
            if texts.is_empty() || texts.len() > MAX_EMBED_TEXTS {
                return Err(ApiError::bad_request(format!(
                    "\"text\" must hold 1 to {MAX_EMBED_TEXTS} strings"
                )));
            }
            if bindings.ai {
                Ok(Dispatch::Edge(EdgeJob::Embed { texts }))
            } else {
                origin(action_path(action))
            }
        }
        "search" | "query" => {
            let body: SearchBody = parse(body)?;
            let top_k = body.top_k.unwrap_or(DEFAULT_TOP_K);
            if top_k == 0 || top_k > MAX_TOP_K {
                return Err(ApiError::bad_request(format!(
                    "\"top_k\" must be 1 to {MAX_TOP_K}"
                )));
            }
            let embedding = match body.embedding {
                Some(v) if v.len() != embedding::DEFAULT_DIMENSIONS => {
                    return Err(ApiError::bad_request(format!(
                        "\"embedding\" has {} dimensions; the index has {}",
                        v.len(),
                        embedding::DEFAULT_DIMENSIONS
                    )))
                }
                Some(v) if v.iter().any(|x| !x.is_finite()) => {
                    return Err(ApiError::bad_request(
                        "\"embedding\" must hold finite numbers",
                    ))
                }
                Some(v) => Some(v.into_iter().map(|x| x as f32).collect::<Vec<f32>>()),
                None => None,
            };
            let text = body.text.filter(|t| !t.trim().is_empty());
            if embedding.is_some() == text.is_some() {
                return Err(ApiError::bad_request(
                    "send exactly one of \"text\" (a non-empty string) or \"embedding\"",
                ));
            }
            let edge = bindings.vectorize && (embedding.is_some() || bindings.ai);
            if edge {
                Ok(Dispatch::Edge(EdgeJob::Search {
                    embedding,
                    text,
                    top_k,
                }))
            } else {
                // The origin's DuckDB memory answers the same body.
                origin(api_paths::MEMORY_SEARCH.into())
            }
        }
        other => origin(action_path(other)),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("request body: {e}")))
}

/// Workers AI text generation answer: `{"response": "..."}` (plus optional usage).
pub fn chat_output(answer: &Value) -> Result<String, String> {
    answer
        .get("response")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "Workers AI answer has no \"response\" string".to_owned())
}

/// Workers AI embeddings answer: `{"shape": [n, dimensions], "data": [[...], ...]}`.
pub fn embedding_output(answer: &Value, expected: usize) -> Result<Vec<Vec<f64>>, String> {
    let data = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or("Workers AI answer has no \"data\" list")?;
    let mut out = Vec::with_capacity(data.len());
    for row in data {
        let row: Vec<f64> = row
            .as_array()
            .ok_or("Workers AI \"data\" rows must be lists")?
            .iter()
            .map(|x| x.as_f64().ok_or("Workers AI vectors must hold numbers"))
            .collect::<Result<_, _>>()?;
        if row.len() != embedding::DEFAULT_DIMENSIONS {
            return Err(format!(
                "Workers AI returned {} dimensions, expected {}",
                row.len(),
                embedding::DEFAULT_DIMENSIONS
            ));
        }
        out.push(row);
    }
    if out.len() != expected {
        return Err(format!(
            "Workers AI returned {} vectors for {expected} texts",
            out.len()
        ));
    }
    Ok(out)
}

/// One Vectorize match as the edge returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    pub id: String,
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// Vectorize `query()` answer: `{"count": n, "matches": [{"id", "score", "metadata"?}]}`.
pub fn vectorize_output(answer: &Value) -> Result<Vec<Match>, String> {
    let matches = answer
        .get("matches")
        .cloned()
        .ok_or("Vectorize answer has no \"matches\" list")?;
    serde_json::from_value(matches).map_err(|e| format!("Vectorize matches: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use heady_shared::ErrorCode;
    use serde_json::json;

    const BOTH: Bindings = Bindings {
        ai: true,
        vectorize: true,
    };
    const NONE: Bindings = Bindings {
        ai: false,
        vectorize: false,
    };

    fn run(action: &str, body: Value, bindings: Bindings) -> Result<Dispatch, ApiError> {
        dispatch(
            action,
            body.to_string().as_bytes(),
            bindings,
            DEFAULT_EDGE_PROMPT_MAX_CHARS,
        )
    }

    #[test]
    fn short_chat_runs_at_the_edge_long_chat_and_no_binding_go_to_origin() {
        assert!(matches!(
            run("chat", json!({"prompt": "hi"}), BOTH),
            Ok(Dispatch::Edge(EdgeJob::Chat { .. }))
        ));
        let long = "x".repeat(DEFAULT_EDGE_PROMPT_MAX_CHARS + 1);
        assert_eq!(
            run("complete", json!({"prompt": long}), BOTH),
            Ok(Dispatch::Origin {
                path: "/api/complete".into()
            })
        );
        assert_eq!(
            run(
                "chat",
                json!({"messages": [{"role":"user","content":"hi"}]}),
                NONE
            ),
            Ok(Dispatch::Origin {
                path: "/api/chat".into()
            })
        );
    }

    #[test]
    fn bad_chat_bodies_are_400s_naming_the_problem() {
        for (body, needle) in [
            (json!({}), "messages"),
            (json!({"prompt": " "}), "prompt"),
            (json!({"messages": []}), "messages"),
            (
                json!({"prompt": "a", "messages": [{"role":"user","content":"b"}]}),
                "either",
            ),
            (json!({"messages": [{"role":"root","content":"b"}]}), "root"),
            (json!({"prompt": 5}), "request body"),
            (json!({"prompt": "a", "temperature": 2}), "temperature"),
        ] {
            let err = run("chat", body.clone(), BOTH).unwrap_err();
            assert_eq!((err.status(), err.code), (400, ErrorCode::InvalidRequest));
            assert!(err.message.contains(needle), "{body}: {}", err.message);
        }
        let err = dispatch("chat", b"{not json", BOTH, 10).unwrap_err();
        assert!(err.message.contains("request body"));
        let err = dispatch("chat", b"", BOTH, 10).unwrap_err();
        assert!(err.message.contains("JSON object"));
    }

    #[test]
    fn embed_takes_one_or_many_texts() {
        assert_eq!(
            run("embed", json!({"text": "a"}), BOTH),
            Ok(Dispatch::Edge(EdgeJob::Embed {
                texts: vec!["a".into()]
            }))
        );
        assert!(matches!(
            run("embed", json!({"text": ["a", "b"]}), BOTH),
            Ok(Dispatch::Edge(EdgeJob::Embed { texts })) if texts.len() == 2
        ));
        assert!(run("embed", json!({"text": []}), BOTH).is_err());
        assert!(matches!(
            run("embed", json!({"text": "a"}), NONE),
            Ok(Dispatch::Origin { .. })
        ));
    }

    #[test]
    fn search_needs_vectorize_and_a_way_to_get_a_vector() {
        let v: Vec<f64> = vec![0.1; embedding::DEFAULT_DIMENSIONS];
        assert!(matches!(
            run(
                "search",
                json!({"embedding": v, "top_k": 3}),
                Bindings {
                    ai: false,
                    vectorize: true
                }
            ),
            Ok(Dispatch::Edge(EdgeJob::Search { top_k: 3, .. }))
        ));
        assert_eq!(
            run(
                "search",
                json!({"text": "cats"}),
                Bindings {
                    ai: false,
                    vectorize: true
                }
            ),
            Ok(Dispatch::Origin {
                path: "/api/memory/search".into()
            })
        );
        assert!(matches!(
            run("search", json!({"text": "cats"}), BOTH),
            Ok(Dispatch::Edge(EdgeJob::Search {
                top_k: DEFAULT_TOP_K,
                ..
            }))
        ));
        for (body, needle) in [
            (json!({"embedding": [0.1, 0.2]}), "2 dimensions"),
            (json!({"text": "a", "top_k": 0}), "top_k"),
            (json!({"text": "a", "top_k": 21}), "top_k"),
            (json!({}), "exactly one"),
            (json!({"text": "a", "embedding": v}), "exactly one"),
        ] {
            let err = run("search", body.clone(), BOTH).unwrap_err();
            assert!(err.message.contains(needle), "{body}: {}", err.message);
        }
    }

    #[test]
    fn other_actions_go_to_origin_unchanged() {
        assert_eq!(
            dispatch("monte_carlo", b"anything", BOTH, 10),
            Ok(Dispatch::Origin {
                path: "/api/monte_carlo".into()
            })
        );
    }

    #[test]
    fn workers_ai_and_vectorize_answers_are_read_strictly() {
        assert_eq!(
            chat_output(&json!({"response": "hello"})),
            Ok("hello".into())
        );
        assert!(chat_output(&json!({"result": "hello"})).is_err());
        let row: Vec<f64> = vec![0.5; embedding::DEFAULT_DIMENSIONS];
        let answer = json!({"shape": [1, embedding::DEFAULT_DIMENSIONS], "data": [row]});
        assert_eq!(embedding_output(&answer, 1).unwrap().len(), 1);
        assert!(embedding_output(&answer, 2).is_err());
        assert!(embedding_output(&json!({"data": [[1.0, 2.0]]}), 1).is_err());
        let matches = vectorize_output(
            &json!({"count": 1, "matches": [{"id": "a", "score": 0.9, "metadata": {"k": 1}}]}),
        )
        .unwrap();
        assert_eq!(matches[0].id, "a");
        assert!(vectorize_output(&json!({"count": 0})).is_err());
    }
}
