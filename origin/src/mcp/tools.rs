//! The tools: each has a name, a description, a declared JSON input schema, and the REST route
//! it calls. Arguments are checked here (unknown fields refused, so a tool can never forward
//! what its schema does not declare, like a memory search's `owner`) and turned into that
//! route's request body; the route's own handler does the rest.

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    MemorySearch,
    MemoryStore,
    MemorySessions,
    ConductorRoute,
    Chat,
}

/// What the schemas state that depends on configuration.
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    /// `memory.max_top_k`.
    pub max_top_k: usize,
    /// The embedding dimension (`memory.dim`).
    pub dim: usize,
}

/// The REST request a tool call becomes.
#[derive(Debug, PartialEq)]
pub struct RestCall {
    pub method: Method,
    pub path: &'static str,
    /// The JSON body; `None` for a GET.
    pub body: Option<Value>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct MemorySearchArgs {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct MemoryStoreArgs {
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<Vec<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ConductorRouteArgs {
    action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ChatArgs {
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
}

fn session_schema(what: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 128, "description": what})
}

fn embedding_schema(dim: usize, what: &str) -> Value {
    json!({"type": "array", "items": {"type": "number"}, "minItems": dim, "maxItems": dim, "description": what})
}

fn object(properties: Value, required: &[&str]) -> Value {
    let mut schema =
        json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// The arguments as `T`; the error names the field (`top_k: invalid type: string "x", ...`).
fn decode<T: serde::de::DeserializeOwned>(tool: Tool, args: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let name = tool.name();
        if path.is_empty() || path == "." {
            format!("invalid arguments for {name}: {}", e.inner())
        } else {
            format!("invalid arguments for {name}: {path}: {}", e.inner())
        }
    })
}

fn encode(v: &impl Serialize) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| format!("could not encode the request: {e}"))
}

impl Tool {
    pub const ALL: [Tool; 5] = [
        Tool::MemorySearch,
        Tool::MemoryStore,
        Tool::MemorySessions,
        Tool::ConductorRoute,
        Tool::Chat,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::MemorySearch => "memory_search",
            Tool::MemoryStore => "memory_store",
            Tool::MemorySessions => "memory_sessions",
            Tool::ConductorRoute => "conductor_route",
            Tool::Chat => "chat",
        }
    }

    pub fn by_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == name)
    }

    fn title(self) -> &'static str {
        match self {
            Tool::MemorySearch => "Search memory",
            Tool::MemoryStore => "Store in memory",
            Tool::MemorySessions => "List memory sessions",
            Tool::ConductorRoute => "Route an action",
            Tool::Chat => "Chat",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Tool::MemorySearch => "Similarity search (cosine) over your account's vector memory, by text or by an embedding. Answers the top_k closest rows with their scores.",
            Tool::MemoryStore => "Stores one row in your account's vector memory; the server embeds the content unless an embedding is given. Answers the row's id.",
            Tool::MemorySessions => "Lists your account's memory sessions with their row counts and first and last times.",
            Tool::ConductorRoute => "Asks the conductor which service group serves an action, with its weight and, given text, the vector zone.",
            Tool::Chat => "Sends a message through the Heady pipeline (conductor, providers, memory) with your plan's limits. Answers the reply's text; the structured content is the whole chat completion.",
        }
    }

    /// The REST route the tool calls (its policy and handler are that route's).
    pub fn route(self) -> (Method, &'static str) {
        match self {
            Tool::MemorySearch => (Method::POST, heady_shared::api_paths::MEMORY_SEARCH),
            Tool::MemoryStore => (Method::POST, "/api/memory/vectors"),
            Tool::MemorySessions => (Method::GET, "/api/memory/sessions"),
            Tool::ConductorRoute => (Method::POST, "/api/conductor/route"),
            Tool::Chat => (Method::POST, "/api/brain/chat"),
        }
    }

    pub fn input_schema(self, limits: SchemaLimits) -> Value {
        let dim = limits.dim;
        match self {
            Tool::MemorySearch => {
                let mut s = object(
                    json!({
                        "text": {"type": "string", "minLength": 1, "description": "Text to search for, embedded by the server. Give text or embedding."},
                        "embedding": embedding_schema(dim, "A query embedding. Give text or embedding."),
                        "top_k": {"type": "integer", "minimum": 1, "maximum": limits.max_top_k, "default": 10, "description": "How many rows to answer."},
                        "session_id": session_schema("Search only this session's rows."),
                    }),
                    &[],
                );
                s["oneOf"] = json!([{"required": ["text"]}, {"required": ["embedding"]}]);
                s
            }
            Tool::MemoryStore => object(
                json!({
                    "content": {"type": "string", "minLength": 1, "description": "The text to store."},
                    "role": {"type": "string", "enum": ["user", "assistant", "system", "tool"], "default": "user"},
                    "session_id": session_schema("The session the row belongs to."),
                    "metadata": {"type": "object", "description": "Any JSON object kept with the row."},
                    "embedding": embedding_schema(dim, "The row's embedding; computed from content when absent."),
                }),
                &["content"],
            ),
            Tool::MemorySessions => object(json!({}), &[]),
            Tool::ConductorRoute => object(
                json!({
                    "action": {"type": "string", "minLength": 1, "description": "An action of the conductor's table, like chat, code, search or simulate."},
                    "text": {"type": "string", "minLength": 1, "description": "Text whose vector zone the decision should carry."},
                }),
                &["action"],
            ),
            Tool::Chat => object(
                json!({
                    "message": {"type": "string", "minLength": 1, "description": "The user's message."},
                    "session_id": session_schema("A memory session: earlier turns are recalled and this turn is stored."),
                    "model": {"type": "string", "description": "A model your key may use; the provider's default when absent."},
                    "max_tokens": {"type": "integer", "minimum": 1, "description": "Most tokens in the reply (capped by your plan)."},
                }),
                &["message"],
            ),
        }
    }

    fn annotations(self) -> Value {
        let read_only = matches!(
            self,
            Tool::MemorySearch | Tool::MemorySessions | Tool::ConductorRoute
        );
        json!({
            "title": self.title(),
            "readOnlyHint": read_only,
            "destructiveHint": false,
            "idempotentHint": read_only,
            "openWorldHint": self == Tool::Chat,
        })
    }

    /// The tool as `tools/list` describes it. No `outputSchema`: clients would then demand
    /// structured content that matches it even from a route whose answer grows a field.
    pub fn listing(self, limits: SchemaLimits) -> Value {
        json!({
            "name": self.name(),
            "title": self.title(),
            "description": self.description(),
            "inputSchema": self.input_schema(limits),
            "annotations": self.annotations(),
        })
    }

    /// The REST request for a call's `arguments` (absent: none); `Err` names what is wrong
    /// with them.
    pub fn request(self, arguments: Option<Value>) -> Result<RestCall, String> {
        let args = match arguments {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                return Err(format!(
                    "arguments for {} must be a JSON object",
                    self.name()
                ))
            }
        };
        let body = match self {
            Tool::MemorySearch => {
                let a: MemorySearchArgs = decode(self, args)?;
                Some(encode(&a)?)
            }
            Tool::MemoryStore => {
                let a: MemoryStoreArgs = decode(self, args)?;
                Some(encode(&a)?)
            }
            Tool::MemorySessions => {
                let _: NoArgs = decode(self, args)?;
                None
            }
            Tool::ConductorRoute => {
                let a: ConductorRouteArgs = decode(self, args)?;
                Some(encode(&a)?)
            }
            Tool::Chat => {
                let a: ChatArgs = decode(self, args)?;
                let mut body = encode(&a)?;
                // The tool answers once, with the whole reply.
                body["stream"] = json!(false);
                Some(body)
            }
        };
        let (method, path) = self.route();
        Ok(RestCall { method, path, body })
    }

    /// The text content of a successful answer: the reply itself for chat, the JSON otherwise.
    pub fn text_of(self, answer: &Value) -> String {
        if self == Tool::Chat {
            if let Some(text) = answer
                .pointer("/choices/0/message/content")
                .and_then(Value::as_str)
            {
                return text.to_string();
            }
        }
        answer.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SchemaLimits = SchemaLimits {
        max_top_k: 100,
        dim: 384,
    };

    #[test]
    fn every_tool_has_an_object_schema_that_lists_what_it_accepts() {
        for t in Tool::ALL {
            assert_eq!(Tool::by_name(t.name()), Some(t));
            let l = t.listing(LIMITS);
            let s = &l["inputSchema"];
            assert_eq!(s["type"], "object", "{}", t.name());
            assert_eq!(s["additionalProperties"], false, "{}", t.name());
            for required in s["required"].as_array().into_iter().flatten() {
                let r = required.as_str().unwrap();
                assert!(
                    s["properties"].get(r).is_some(),
                    "{} requires {r}",
                    t.name()
                );
            }
        }
        assert_eq!(Tool::by_name("nope"), None);
        let search = Tool::MemorySearch.input_schema(LIMITS);
        assert_eq!(search["properties"]["top_k"]["maximum"], 100);
        assert_eq!(search["properties"]["embedding"]["minItems"], 384);
    }

    #[test]
    fn arguments_become_the_route_s_body() {
        let c = Tool::MemorySearch
            .request(Some(json!({"text": "hello", "top_k": 3})))
            .unwrap();
        assert_eq!(c.method, Method::POST);
        assert_eq!(c.path, "/api/memory/search");
        assert_eq!(c.body, Some(json!({"text": "hello", "top_k": 3})));
        let c = Tool::MemorySessions.request(None).unwrap();
        assert_eq!((c.method, c.body), (Method::GET, None));
        let c = Tool::Chat
            .request(Some(json!({"message": "hi", "session_id": "s"})))
            .unwrap();
        assert_eq!(
            c.body,
            Some(json!({"message": "hi", "session_id": "s", "stream": false}))
        );
        let c = Tool::MemoryStore
            .request(Some(json!({"content": "x", "metadata": {"k": 1}})))
            .unwrap();
        assert_eq!(c.body, Some(json!({"content": "x", "metadata": {"k": 1}})));
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = Tool::MemorySearch
            .request(Some(
                json!({"text": "x", "owner": "acct_aaaaaaaaaaaaaaaaaaaaaaaa"}),
            ))
            .unwrap_err();
        assert!(e.contains("unknown field `owner`"), "{e}");
        let e = Tool::MemorySearch
            .request(Some(json!({"all_owners": true})))
            .unwrap_err();
        assert!(e.contains("all_owners"), "{e}");
        let e = Tool::MemorySearch
            .request(Some(json!({"text": "x", "top_k": "ten"})))
            .unwrap_err();
        assert!(
            e.starts_with("invalid arguments for memory_search: top_k: invalid type"),
            "{e}"
        );
        let e = Tool::Chat.request(Some(json!({}))).unwrap_err();
        assert!(e.contains("missing field `message`"), "{e}");
        let e = Tool::MemorySessions
            .request(Some(json!({"x": 1})))
            .unwrap_err();
        assert!(e.contains("unknown field `x`"), "{e}");
        let e = Tool::ConductorRoute.request(Some(json!([1]))).unwrap_err();
        assert!(e.contains("must be a JSON object"), "{e}");
    }

    #[test]
    fn chat_answers_the_reply_s_text() {
        let completion =
            json!({"choices": [{"message": {"role": "assistant", "content": "hello"}}]});
        assert_eq!(Tool::Chat.text_of(&completion), "hello");
        assert_eq!(
            Tool::ConductorRoute.text_of(&json!({"group": "reasoning"})),
            r#"{"group":"reasoning"}"#
        );
    }
}
