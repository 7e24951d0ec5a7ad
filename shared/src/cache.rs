//! The response cache's pure rules: which requests may be answered from the cache and for how
//! long (the client's `Cache-Control`, the request's `heady.cache` parameter, the operator's
//! defaults), and the canonical hash that names an answer.
//!
//! The key hashes everything in a chat request that can change its answer: every field except
//! the few that only change how it is delivered or logged ([`DELIVERY_FIELDS`]). Object keys are
//! sorted and numbers written in one form, so two requests that mean the same JSON have the same
//! key whatever their field order or spacing. The semantic cache uses a second hash, of the same
//! request without the last user message's text ([`context_hash`]): a paraphrase may reuse an
//! answer only where everything else (model, system prompt, history, tools, sampling) is equal.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Bumped when the key's meaning changes, so old entries are never read as new ones.
pub const KEY_VERSION: &str = "v1";

/// Fields that do not change the answer, only its delivery or bookkeeping: left out of the key.
/// (`stream` is part of the key's format instead: a stream is replayed as a stream.)
pub const DELIVERY_FIELDS: [&str; 6] = [
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "heady",
];

/// Writes `v` as canonical JSON: object keys sorted, no spaces, and one form per number (a
/// whole number is written as an integer: `0`, `0.0` and `0e0` are the same temperature).
pub fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                out.push_str(&(f as i64).to_string())
            }
            _ => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

fn hash_of(body: &Map<String, Value>, skip_last_user_text: bool) -> String {
    let mut kept = Map::new();
    for (k, v) in body {
        if !DELIVERY_FIELDS.contains(&k.as_str()) {
            kept.insert(k.clone(), v.clone());
        }
    }
    if skip_last_user_text {
        if let Some(Value::Array(ms)) = kept.get_mut("messages") {
            if let Some(last) = ms.iter_mut().rev().find(|m| m["role"] == "user") {
                if let Some(m) = last.as_object_mut() {
                    m.insert("content".into(), Value::Null);
                }
            }
        }
    }
    let mut text = String::with_capacity(256);
    canonical(&Value::Object(kept), &mut text);
    crate::hex::encode(&Sha256::digest(text.as_bytes()))
}

/// SHA-256 (hex) of the request's canonical form without [`DELIVERY_FIELDS`].
pub fn request_hash(body: &Map<String, Value>) -> String {
    hash_of(body, false)
}

/// [`request_hash`] with the last user message's content left out: what must be equal for a
/// paraphrase of that message to reuse an answer.
pub fn context_hash(body: &Map<String, Value>) -> String {
    hash_of(body, true)
}

/// The exact cache's key: per owner account, per format (`json` or `sse`).
pub fn entry_key(owner: &str, format: Format, hash: &str) -> String {
    format!(
        "heady:cache:{KEY_VERSION}:{owner}:{}:{hash}",
        format.as_str()
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A `chat.completion` object.
    Json,
    /// The chunks of a streamed answer.
    Sse,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Sse => "sse",
        }
    }
}

/// How an answer relates to the cache (`heady.cache`, `X-Heady-Cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Answered from the exact cache.
    Hit,
    /// Answered from the semantic cache (a similar prompt's answer).
    SemanticHit,
    /// Looked up, not found; the answer is stored if it may be.
    Miss,
    /// The cache was not used for this request.
    #[default]
    Bypass,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Hit => "hit",
            Status::SemanticHit => "semantic_hit",
            Status::Miss => "miss",
            Status::Bypass => "bypass",
        }
    }

    pub fn is_hit(self) -> bool {
        matches!(self, Status::Hit | Status::SemanticHit)
    }
}

/// The operator's rules (`pipeline.cache.*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub enabled: bool,
    pub default_ttl_secs: u64,
    pub max_ttl_secs: u64,
    /// Cache only requests that ask for a repeatable answer (temperature 0 or a seed), unless
    /// the client asks for caching itself (a TTL in `Cache-Control: max-age` or `heady.cache`).
    pub deterministic_only: bool,
}

/// The request's `heady.cache` parameter: `false` (do not use the cache), `true` (use it with
/// the default TTL, even for a request that is not deterministic), or an object
/// `{"ttl": seconds, "semantic": bool}` (ttl 0: do not use the cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Param {
    /// `Some(false)`: off for this request; `Some(true)`: asked for.
    pub enabled: Option<bool>,
    pub ttl_secs: Option<u64>,
    /// `Some(false)`: no semantic lookup for this request.
    pub semantic: Option<bool>,
}

impl Param {
    /// Parses the value of `heady.cache`; the error names what is wrong.
    pub fn parse(v: &Value) -> Result<Param, String> {
        match v {
            Value::Null => Ok(Param::default()),
            Value::Bool(b) => Ok(Param {
                enabled: Some(*b),
                ..Param::default()
            }),
            Value::Object(m) => {
                let mut p = Param {
                    enabled: Some(true),
                    ..Param::default()
                };
                for (k, v) in m {
                    match k.as_str() {
                        "ttl" => {
                            let ttl = v.as_u64().ok_or("ttl must be a whole number of seconds")?;
                            p.ttl_secs = Some(ttl);
                            if ttl == 0 {
                                p.enabled = Some(false);
                            }
                        }
                        "semantic" => {
                            p.semantic = Some(v.as_bool().ok_or("semantic must be true or false")?)
                        }
                        other => {
                            return Err(format!(
                                "unknown field {other:?} (ttl and semantic are known)"
                            ))
                        }
                    }
                }
                Ok(p)
            }
            _ => Err(
                "must be true, false or an object {\"ttl\": seconds, \"semantic\": bool}".into(),
            ),
        }
    }
}

/// The request's `Cache-Control` directives that the cache honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directives {
    /// `no-store`: neither read nor write the cache.
    pub no_store: bool,
    /// `no-cache`: do not answer from the cache (the fresh answer is still stored).
    pub no_cache: bool,
    /// `max-age=N`: answer only from an entry at most N seconds old, and keep the fresh answer
    /// N seconds.
    pub max_age: Option<u64>,
}

impl Directives {
    /// Parses a `Cache-Control` header value; unknown directives are ignored (RFC 9111 5.2).
    /// A malformed `max-age` is an error naming it.
    pub fn parse(value: &str) -> Result<Directives, String> {
        let mut d = Directives::default();
        for part in value.split(',') {
            let part = part.trim();
            let (name, arg) = match part.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (part, None),
            };
            match name.to_ascii_lowercase().as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "max-age" => {
                    let secs = arg.and_then(|a| a.parse::<u64>().ok()).ok_or_else(|| {
                        format!("max-age needs a whole number of seconds (got {part:?})")
                    })?;
                    d.max_age = Some(secs);
                }
                _ => {}
            }
        }
        Ok(d)
    }
}

/// What the cache does for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not used; the reason is for the trace.
    Bypass(&'static str),
    Use {
        /// Answer from the cache when an entry is found.
        read: bool,
        /// The oldest entry the client accepts, in seconds (`None`: any live entry).
        max_age_secs: Option<u64>,
        /// Store the fresh answer for this long (0: do not store).
        ttl_secs: u64,
        /// A semantic lookup is allowed by the request.
        semantic: bool,
    },
}

/// The request asks for a repeatable answer: `temperature` 0 or a `seed`.
pub fn is_deterministic(body: &Map<String, Value>) -> bool {
    body.get("temperature").and_then(Value::as_f64) == Some(0.0)
        || body.get("seed").is_some_and(Value::is_number)
}

/// Decides from the policy, the request's body, its `Cache-Control` and its `heady.cache`.
pub fn decide(
    policy: &Policy,
    body: &Map<String, Value>,
    directives: &Directives,
    param: &Param,
) -> Decision {
    if !policy.enabled {
        return Decision::Bypass("disabled");
    }
    if param.enabled == Some(false) {
        return Decision::Bypass("heady.cache");
    }
    if directives.no_store {
        return Decision::Bypass("no-store");
    }
    if directives.max_age == Some(0) && param.ttl_secs.is_none() {
        return Decision::Bypass("max-age=0");
    }
    let asked = param.enabled == Some(true) || directives.max_age.is_some();
    if policy.deterministic_only && !asked && !is_deterministic(body) {
        return Decision::Bypass("not deterministic");
    }
    let ttl = param
        .ttl_secs
        .or(directives.max_age)
        .unwrap_or(policy.default_ttl_secs)
        .min(policy.max_ttl_secs);
    let read = !directives.no_cache && directives.max_age != Some(0);
    Decision::Use {
        read,
        max_age_secs: directives.max_age,
        ttl_secs: ttl,
        semantic: read && param.semantic != Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const POLICY: Policy = Policy {
        enabled: true,
        default_ttl_secs: 300,
        max_ttl_secs: 3600,
        deterministic_only: true,
    };

    #[test]
    fn the_hash_ignores_order_spacing_and_delivery() {
        let a =
            obj(json!({"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]}));
        let b: Map<String, Value> = serde_json::from_str(
            r#"{ "messages": [ {"content": "hi", "role": "user"} ], "temperature": 0, "model": "m", "stream": true, "user": "u1" }"#,
        )
        .unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        let c =
            obj(json!({"model":"m","temperature":0,"messages":[{"role":"user","content":"hi!"}]}));
        assert_ne!(request_hash(&a), request_hash(&c));
        let d = obj(
            json!({"model":"m","temperature":0,"seed":1,"messages":[{"role":"user","content":"hi"}]}),
        );
        assert_ne!(request_hash(&a), request_hash(&d));
        let tools = obj(
            json!({"model":"m","temperature":0,"tools":[],"messages":[{"role":"user","content":"hi"}]}),
        );
        assert_ne!(request_hash(&a), request_hash(&tools));
        assert_eq!(request_hash(&a).len(), 64);
        let float: Map<String, Value> = serde_json::from_str(
            r#"{"model":"m","temperature":0.0,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        assert_eq!(request_hash(&a), request_hash(&float));
        let mut s = String::new();
        canonical(&json!({"b": [1.5, -0.0, 2e3], "a": null}), &mut s);
        assert_eq!(s, r#"{"a":null,"b":[1.5,0,2000]}"#);
    }

    #[test]
    fn the_context_hash_leaves_out_only_the_last_user_text() {
        let a = obj(
            json!({"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"reset my password"}]}),
        );
        let b = obj(
            json!({"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"I forgot my password"}]}),
        );
        let c = obj(
            json!({"model":"m","messages":[{"role":"system","content":"t"},{"role":"user","content":"reset my password"}]}),
        );
        assert_eq!(context_hash(&a), context_hash(&b));
        assert_ne!(context_hash(&a), context_hash(&c));
        assert_ne!(context_hash(&a), request_hash(&a));
    }

    #[test]
    fn keys_are_per_owner_and_format() {
        let k = entry_key("acct_a", Format::Sse, "ff");
        assert_eq!(k, "heady:cache:v1:acct_a:sse:ff");
        assert_ne!(k, entry_key("acct_b", Format::Sse, "ff"));
    }

    #[test]
    fn only_deterministic_requests_by_default() {
        let none = Directives::default();
        let p = Param::default();
        let hot = obj(json!({"temperature": 0.7}));
        assert_eq!(
            decide(&POLICY, &hot, &none, &p),
            Decision::Bypass("not deterministic")
        );
        assert_eq!(
            decide(&POLICY, &obj(json!({})), &none, &p),
            Decision::Bypass("not deterministic")
        );
        let cold = obj(json!({"temperature": 0}));
        assert_eq!(
            decide(&POLICY, &cold, &none, &p),
            Decision::Use {
                read: true,
                max_age_secs: None,
                ttl_secs: 300,
                semantic: true
            }
        );
        assert!(matches!(
            decide(&POLICY, &obj(json!({"seed": 7})), &none, &p),
            Decision::Use { .. }
        ));
        // Asked for by the client: cached though not deterministic.
        let asked = Param::parse(&json!({"ttl": 60})).unwrap();
        assert!(matches!(
            decide(&POLICY, &hot, &none, &asked),
            Decision::Use { ttl_secs: 60, .. }
        ));
        let off = Policy {
            enabled: false,
            ..POLICY
        };
        assert_eq!(decide(&off, &cold, &none, &p), Decision::Bypass("disabled"));
    }

    #[test]
    fn cache_control_and_the_parameter() {
        let cold = obj(json!({"temperature": 0}));
        let p = Param::default();
        let d = Directives::parse("no-store").unwrap();
        assert_eq!(decide(&POLICY, &cold, &d, &p), Decision::Bypass("no-store"));
        let d = Directives::parse("No-Cache").unwrap();
        assert!(matches!(
            decide(&POLICY, &cold, &d, &p),
            Decision::Use {
                read: false,
                ttl_secs: 300,
                semantic: false,
                ..
            }
        ));
        let d = Directives::parse("private, max-age=\"120\"").unwrap();
        assert_eq!(
            decide(&POLICY, &obj(json!({"temperature": 1})), &d, &p),
            Decision::Use {
                read: true,
                max_age_secs: Some(120),
                ttl_secs: 120,
                semantic: true
            }
        );
        let d = Directives::parse("max-age=999999").unwrap();
        assert!(matches!(
            decide(&POLICY, &cold, &d, &p),
            Decision::Use { ttl_secs: 3600, .. }
        ));
        assert_eq!(
            decide(&POLICY, &cold, &Directives::parse("max-age=0").unwrap(), &p),
            Decision::Bypass("max-age=0")
        );
        assert!(Directives::parse("max-age=soon").is_err());
        assert_eq!(
            decide(
                &POLICY,
                &cold,
                &Directives::default(),
                &Param::parse(&json!(false)).unwrap()
            ),
            Decision::Bypass("heady.cache")
        );
        assert_eq!(
            decide(
                &POLICY,
                &cold,
                &Directives::default(),
                &Param::parse(&json!({"ttl": 0})).unwrap()
            ),
            Decision::Bypass("heady.cache")
        );
        assert!(matches!(
            decide(
                &POLICY,
                &cold,
                &Directives::default(),
                &Param::parse(&json!({"semantic": false})).unwrap()
            ),
            Decision::Use {
                semantic: false,
                ..
            }
        ));
        assert!(Param::parse(&json!({"ttl": -1})).is_err());
        assert!(Param::parse(&json!({"tll": 5}))
            .unwrap_err()
            .contains("tll"));
        assert!(Param::parse(&json!("yes")).is_err());
    }
}
