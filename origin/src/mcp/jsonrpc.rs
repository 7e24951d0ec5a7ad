//! JSON-RPC 2.0 as MCP uses it over HTTP: one message per POST (batches were removed in the
//! 2025-06-18 revision), classified into a request, a notification or a response.

use serde_json::{json, Map, Value};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

/// One client message.
#[derive(Debug, PartialEq)]
pub enum Message {
    /// Expects a response echoing `id` (a string or a number, never null).
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    /// No `id`: answered with nothing.
    Notification { method: String },
    /// The client's answer to a request of ours. This server sends none, so it is dropped.
    Response,
}

/// Why a body is not one message we can act on.
#[derive(Debug, PartialEq)]
pub enum Malformed {
    /// Not JSON at all.
    Parse(String),
    /// A JSON array: a batch.
    Batch,
    /// JSON, but not a JSON-RPC 2.0 message; `id` is the request's when it had a usable one.
    Invalid { id: Value, why: String },
}

impl Malformed {
    /// The JSON-RPC error object that answers it.
    pub fn answer(&self) -> Value {
        match self {
            Malformed::Parse(e) => error(&Value::Null, PARSE_ERROR, &format!("Parse error: {e}")),
            Malformed::Batch => error(
                &Value::Null,
                INVALID_REQUEST,
                "Invalid Request: batches are not supported; send one message per POST",
            ),
            Malformed::Invalid { id, why } => {
                error(id, INVALID_REQUEST, &format!("Invalid Request: {why}"))
            }
        }
    }
}

fn usable_id(v: Option<&Value>) -> Option<Value> {
    match v {
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
        _ => None,
    }
}

/// Parses and classifies one message.
pub fn parse(body: &[u8]) -> Result<Message, Malformed> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Malformed::Parse(e.to_string()))?;
    let obj: Map<String, Value> = match v {
        Value::Object(o) => o,
        Value::Array(_) => return Err(Malformed::Batch),
        _ => {
            return Err(Malformed::Invalid {
                id: Value::Null,
                why: "a message is a JSON object".into(),
            })
        }
    };
    let id = usable_id(obj.get("id"));
    let shown_id = id.clone().unwrap_or(Value::Null);
    let invalid = |why: &str| Malformed::Invalid {
        id: shown_id.clone(),
        why: why.into(),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("\"jsonrpc\" must be \"2.0\""));
    }
    if obj.contains_key("id") && id.is_none() {
        return Err(invalid("\"id\" must be a string or a number"));
    }
    match (obj.get("method"), id) {
        (Some(Value::String(m)), Some(id)) => Ok(Message::Request {
            id,
            method: m.clone(),
            params: obj.get("params").cloned(),
        }),
        (Some(Value::String(m)), None) => Ok(Message::Notification { method: m.clone() }),
        (Some(_), _) => Err(invalid("\"method\" must be a string")),
        (None, Some(_)) if obj.contains_key("result") || obj.contains_key("error") => {
            Ok(Message::Response)
        }
        (None, _) => Err(invalid(
            "a message has a \"method\", or a \"result\" or \"error\"",
        )),
    }
}

/// A success response.
pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response.
pub fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified_by_method_and_id() {
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
            Ok(Message::Request {
                id: json!(7),
                method: "ping".into(),
                params: None
            })
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x"}}"#),
            Ok(Message::Request {
                id: json!("a"),
                method: "tools/call".into(),
                params: Some(json!({"name": "x"}))
            })
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification {
                method: "notifications/initialized".into()
            })
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Ok(Message::Response)
        );
    }

    #[test]
    fn what_is_not_one_message_is_named() {
        assert!(matches!(parse(b"{nope"), Err(Malformed::Parse(_))));
        assert!(matches!(parse(b""), Err(Malformed::Parse(_))));
        assert_eq!(parse(b"[]"), Err(Malformed::Batch));
        let e = parse(br#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#).unwrap_err();
        assert_eq!(e.answer()["id"], 3);
        assert_eq!(e.answer()["error"]["code"], INVALID_REQUEST);
        let e = parse(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).unwrap_err();
        assert_eq!(e.answer()["id"], Value::Null);
        assert!(parse(br#"{"jsonrpc":"2.0","id":1,"method":5}"#).is_err());
        assert!(parse(br#"{"jsonrpc":"2.0","id":1}"#).is_err());
        assert!(parse(b"3").is_err());
        assert_eq!(
            Malformed::Parse("x".into()).answer()["error"]["code"],
            PARSE_ERROR
        );
    }
}
