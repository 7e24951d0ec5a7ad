//! `[[providers]]`: the inference providers the brain router may call, and the
//! `HEADY_OPENAI_*` shortcut for the one-provider case.

use crate::settings::Secret;
use crate::settings::{ConfigError, KeyDoc, Ty};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Any OpenAI-compatible `/chat/completions` endpoint: OpenAI, Ollama, vLLM, llama.cpp.
    #[default]
    Openai,
    /// Cloudflare Workers AI REST API (`/accounts/{id}/ai/run/{model}`).
    WorkersAi,
    /// Anthropic's Messages API (`/v1/messages`), translated to and from the OpenAI shapes.
    Anthropic,
}

/// What a request may need of a provider beyond plain chat. The router skips a provider that
/// lacks one the request needs; it never sends a request stripped of it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// `tools` declared, or tool calls and tool results in the history.
    Tools,
    /// `response_format` of type `json_schema` (structured outputs).
    JsonSchema,
    /// Image content parts in a message.
    Images,
    /// `n` greater than 1: several choices in one answer.
    MultipleChoices,
}

impl Feature {
    pub const ALL: [Feature; 4] = [
        Feature::Tools,
        Feature::JsonSchema,
        Feature::Images,
        Feature::MultipleChoices,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Tools => "tools",
            Feature::JsonSchema => "json_schema",
            Feature::Images => "images",
            Feature::MultipleChoices => "multiple_choices",
        }
    }
}

impl ProviderKind {
    /// What a provider of this kind can do when `features` is not set: an OpenAI-compatible
    /// endpoint takes the whole request (a model that cannot do something refuses it with its
    /// own 400, passed on); Workers AI's text generation takes plain chat only; the Messages API
    /// has tools and images, but neither structured outputs nor several choices.
    pub fn default_features(self) -> &'static [Feature] {
        match self {
            ProviderKind::Openai => &Feature::ALL,
            ProviderKind::WorkersAi => &[],
            ProviderKind::Anthropic => &[Feature::Tools, Feature::Images],
        }
    }

    /// What the kind's client can pass on at all: `features` may list only these (Workers AI
    /// takes `response_format` with a JSON schema on the models that support it; its client
    /// sends no tools, images or `n`).
    pub fn possible_features(self) -> &'static [Feature] {
        match self {
            ProviderKind::Openai => &Feature::ALL,
            ProviderKind::WorkersAi => &[Feature::JsonSchema],
            // Its client translates tools and images; the Messages API has no `n` and no
            // OpenAI-style `response_format`.
            ProviderKind::Anthropic => &[Feature::Tools, Feature::Images],
        }
    }
}

/// `Debug` (what `check-config` prints) shows the key as `<secret, N bytes>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique name, shown in responses, metrics and logs.
    pub name: String,
    #[serde(default)]
    pub kind: ProviderKind,
    /// openai: e.g. `http://127.0.0.1:11434/v1`; workers-ai: the API root (optional);
    /// anthropic: the API root (optional, [`ANTHROPIC_ROOT`]).
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    /// Workers AI account id.
    pub account_id: Option<String>,
    /// Model sent upstream. Unset (openai, anthropic): the client's `model` is forwarded, or the
    /// first model the endpoint lists when the client asks for `heady`.
    pub model: Option<String>,
    /// anthropic: the `anthropic-version` header; unset: [`ANTHROPIC_VERSION`].
    #[serde(default)]
    pub anthropic_version: Option<String>,
    /// Service groups this provider serves; empty means every group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Share of first picks among providers of the same priority.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Fallback order: lower priorities are tried first.
    #[serde(default)]
    pub priority: u32,
    /// Per-call timeout (for streams: to the response head, and between chunks).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// What the provider can do beyond plain chat; unset: its kind's defaults.
    #[serde(default)]
    pub features: Option<Vec<Feature>>,
}

impl ProviderConfig {
    /// An entry with every default, as the reference documents it (`name` is required).
    pub fn sample() -> ProviderConfig {
        ProviderConfig {
            name: "ollama".into(),
            kind: ProviderKind::default(),
            base_url: None,
            api_key: None,
            account_id: None,
            model: None,
            anthropic_version: None,
            groups: Vec::new(),
            weight: default_weight(),
            priority: 0,
            timeout_ms: default_timeout_ms(),
            features: None,
        }
    }

    /// Whether the provider can do `f` (its `features`, else its kind's defaults).
    pub fn can(&self, f: Feature) -> bool {
        match &self.features {
            Some(list) => list.contains(&f),
            None => self.kind.default_features().contains(&f),
        }
    }
}

fn default_weight() -> f64 {
    1.0
}

fn default_timeout_ms() -> u64 {
    60_000
}

pub const WORKERS_AI_ROOT: &str = "https://api.cloudflare.com/client/v4";

/// Anthropic's API root; requests go to `{root}/v1/messages`.
pub const ANTHROPIC_ROOT: &str = "https://api.anthropic.com";

/// The Messages API version sent as `anthropic-version` unless `anthropic_version` is set.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

fn invalid(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The shortcut's variables; only `HEADY_OPENAI_BASE_URL` turns it on.
pub const ENV_SHORTCUT: [&str; 3] = [
    "HEADY_OPENAI_BASE_URL",
    "HEADY_OPENAI_API_KEY",
    "HEADY_OPENAI_MODEL",
];

/// `HEADY_OPENAI_BASE_URL` (+ `HEADY_OPENAI_API_KEY`, `HEADY_OPENAI_MODEL`) adds a provider
/// named `openai` serving every group, ahead of those in the file (replacing one of that name).
/// Works on the configuration table before it is deserialized; returns whether it did.
pub fn apply_env(root: &mut toml::Table, env: &dyn Fn(&str) -> Option<String>) -> bool {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let Some(base_url) = get("HEADY_OPENAI_BASE_URL") else {
        return false;
    };
    let mut entry = toml::Table::new();
    entry.insert("name".into(), "openai".into());
    entry.insert("kind".into(), "openai".into());
    entry.insert("base_url".into(), base_url.into());
    if let Some(k) = get("HEADY_OPENAI_API_KEY") {
        entry.insert("api_key".into(), k.into());
    }
    if let Some(m) = get("HEADY_OPENAI_MODEL") {
        entry.insert("model".into(), m.into());
    }
    let list = root
        .entry("providers")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    if !list.is_array() {
        *list = toml::Value::Array(Vec::new());
    }
    if let toml::Value::Array(list) = list {
        list.retain(|p| p.get("name").and_then(toml::Value::as_str) != Some("openai"));
        list.insert(0, toml::Value::Table(entry));
    }
    true
}

pub fn validate(
    providers: &[ProviderConfig],
    groups: &heady_shared::GroupTable,
) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, p) in providers.iter().enumerate() {
        let key = |field: &str| format!("providers[{i}].{field}");
        if p.name.is_empty()
            || p.name.len() > 64
            || !p
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(invalid(
                key("name"),
                format!(
                    "must be 1-64 characters of [A-Za-z0-9._-] (got {:?})",
                    p.name
                ),
            ));
        }
        if !seen.insert(p.name.as_str()) {
            return Err(invalid(
                key("name"),
                format!("{:?} is used by two providers", p.name),
            ));
        }
        if !(p.weight.is_finite() && p.weight > 0.0 && p.weight <= 1_000.0) {
            return Err(invalid(
                key("weight"),
                format!("must be in (0, 1000] (got {})", p.weight),
            ));
        }
        if !(1..=600_000).contains(&p.timeout_ms) {
            return Err(invalid(
                key("timeout_ms"),
                format!("must be between 1 and 600000 (got {})", p.timeout_ms),
            ));
        }
        for g in &p.groups {
            if groups.group(g).is_none() {
                return Err(invalid(
                    key("groups"),
                    format!("unknown service group {g:?}"),
                ));
            }
        }
        if let Some(m) = &p.model {
            if m.trim().is_empty() {
                return Err(invalid(key("model"), "must not be empty when set"));
            }
        }
        for f in p.features.iter().flatten() {
            if !p.kind.possible_features().contains(f) {
                return Err(invalid(
                    key("features"),
                    format!(
                        "a {:?} provider cannot pass on {} (it can: {})",
                        p.kind,
                        f.name(),
                        p.kind
                            .possible_features()
                            .iter()
                            .map(|f| f.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        match p.kind {
            ProviderKind::Openai => {
                let url = p.base_url.as_deref().ok_or_else(|| {
                    invalid(
                        key("base_url"),
                        "required for kind = \"openai\" (e.g. http://127.0.0.1:11434/v1)",
                    )
                })?;
                check_url(&key("base_url"), url)?;
            }
            ProviderKind::WorkersAi => {
                if let Some(url) = &p.base_url {
                    check_url(&key("base_url"), url)?;
                }
                if p.account_id.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid(
                        key("account_id"),
                        "required for kind = \"workers-ai\"",
                    ));
                }
                if p.api_key.as_ref().is_none_or(|k| k.expose().is_empty()) {
                    return Err(invalid(
                        key("api_key"),
                        "required for kind = \"workers-ai\"",
                    ));
                }
                if p.model.is_none() {
                    return Err(invalid(
                        key("model"),
                        "required for kind = \"workers-ai\" (e.g. @cf/meta/llama-3.1-8b-instruct)",
                    ));
                }
            }
            ProviderKind::Anthropic => {
                if let Some(url) = &p.base_url {
                    check_url(&key("base_url"), url)?;
                }
                match &p.api_key {
                    Some(k) if !k.expose().is_empty() => {
                        // Sent as a header; the message must not quote it.
                        if !k.expose().bytes().all(|b| b.is_ascii_graphic()) {
                            return Err(invalid(
                                key("api_key"),
                                "must be visible ASCII without spaces (it is sent as x-api-key)",
                            ));
                        }
                    }
                    _ => {
                        return Err(invalid(
                            key("api_key"),
                            "required for kind = \"anthropic\" (sent as x-api-key)",
                        ))
                    }
                }
            }
        }
        match (&p.anthropic_version, p.kind) {
            (None, _) => {}
            (Some(v), ProviderKind::Anthropic) => {
                // A header value: a date such as 2023-06-01, nothing a header could not carry.
                let b = v.as_bytes();
                let date = b.len() == 10
                    && b.iter().enumerate().all(|(i, c)| {
                        if i == 4 || i == 7 {
                            *c == b'-'
                        } else {
                            c.is_ascii_digit()
                        }
                    });
                if !date {
                    return Err(invalid(
                        key("anthropic_version"),
                        format!("must be a date such as {ANTHROPIC_VERSION} (got {v:?})"),
                    ));
                }
            }
            (Some(_), _) => {
                return Err(invalid(
                    key("anthropic_version"),
                    "only for kind = \"anthropic\"",
                ))
            }
        }
    }
    Ok(())
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(invalid(
            key.to_string(),
            format!("must be an http(s) URL with a host (got {url:?})"),
        )),
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("providers", Ty::Table, "inference providers for the brain router: `[[providers]]` entries (below); env: a TOML array of inline tables. `HEADY_OPENAI_BASE_URL` (+ `_API_KEY`, `_MODEL`) adds one named `openai` serving every group, ahead of the others")
        .env_extra(&ENV_SHORTCUT),
    KeyDoc::new("providers[].name", Ty::Str, "unique name, shown in responses, metrics and logs").required(),
    KeyDoc::new("providers[].kind", Ty::Str, "`openai` (OpenAI, Ollama, vLLM, llama.cpp), `workers-ai` or `anthropic` (the Messages API)"),
    KeyDoc::new("providers[].base_url", Ty::Str, "openai: e.g. `http://127.0.0.1:11434/v1` (required); workers-ai: the API root (optional); anthropic: the API root (optional, `https://api.anthropic.com`; calls go to `{base_url}/v1/messages`)"),
    KeyDoc::new("providers[].api_key", Ty::Str, "bearer token; for `anthropic` sent as `x-api-key` (required for `workers-ai` and `anthropic`); never printed"),
    KeyDoc::new("providers[].account_id", Ty::Str, "Cloudflare account id (required for `workers-ai`)"),
    KeyDoc::new("providers[].model", Ty::Str, "model sent upstream (required for `workers-ai`); unset: the client's model, or the endpoint's first listed (`GET /models`; anthropic: `GET /v1/models`, newest first) for `heady`"),
    KeyDoc::new("providers[].anthropic_version", Ty::Str, "anthropic only: the `anthropic-version` header; unset: `2023-06-01`"),
    KeyDoc::new("providers[].groups", Ty::List, "service groups served; empty: all"),
    KeyDoc::new("providers[].weight", Ty::Float, "share of first picks among providers of the same priority"),
    KeyDoc::new("providers[].priority", Ty::Int, "fallback order: lower first"),
    KeyDoc::new("providers[].timeout_ms", Ty::Int, "per-call timeout (streams: to the response head, and between chunks)"),
    KeyDoc::new("providers[].features", Ty::List, "what it can do beyond plain chat: `tools`, `json_schema`, `images`, `multiple_choices` (n > 1); unset: all for `openai`, none for `workers-ai` (which may list `json_schema`), `tools` and `images` for `anthropic`. A request needing a feature skips providers without it"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn one(toml_text: &str) -> Result<(), ConfigError> {
        #[derive(Deserialize)]
        struct F {
            providers: Vec<ProviderConfig>,
        }
        let f: F = toml::from_str(toml_text).map_err(|e| invalid("toml".into(), e.to_string()))?;
        validate(&f.providers, &heady_shared::GroupTable::default())
    }

    #[test]
    fn errors_name_the_provider_field() {
        let e = one("[[providers]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("providers[0].base_url:"), "{e}");
        let e = one("[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\ngroups = [\"nope\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("providers[0].groups:"), "{e}");
        let e = one("[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\n[[providers]]\nname = \"a\"\nbase_url = \"http://y\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("providers[1].name:"), "{e}");
        let e = one(
            "[[providers]]\nname = \"w\"\nkind = \"workers-ai\"\napi_key = \"k\"\nmodel = \"m\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("providers[0].account_id:"), "{e}");
        let e = one("[[providers]]\nname = \"w\"\nkind = \"workers-ai\"\naccount_id = \"a\"\napi_key = \"k\"\nmodel = \"m\"\nfeatures = [\"tools\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("providers[0].features:") && e.contains("tools"),
            "{e}"
        );
        one("[[providers]]\nname = \"a\"\nbase_url = \"http://127.0.0.1:1/v1\"\ngroups = [\"reasoning\"]\nweight = 2.0\n").unwrap();
    }

    #[test]
    fn anthropic_needs_a_key_and_a_dated_version() {
        let e = one("[[providers]]\nname = \"c\"\nkind = \"anthropic\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("providers[0].api_key:"), "{e}");
        let e = one("[[providers]]\nname = \"c\"\nkind = \"anthropic\"\napi_key = \"k\"\nbase_url = \"api.anthropic.com\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("providers[0].base_url:"), "{e}");
        let e = one("[[providers]]\nname = \"c\"\nkind = \"anthropic\"\napi_key = \"k\"\nanthropic_version = \"2023-06-01\\r\\nx: y\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("providers[0].anthropic_version:"), "{e}");
        let e = one("[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\nanthropic_version = \"2023-06-01\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("providers[0].anthropic_version:") && e.contains("only for"),
            "{e}"
        );
        one("[[providers]]\nname = \"c\"\nkind = \"anthropic\"\napi_key = \"sk-ant-x\"\n").unwrap();
        one("[[providers]]\nname = \"c\"\nkind = \"anthropic\"\napi_key = \"sk-ant-x\"\nmodel = \"claude-sonnet-4-5\"\nanthropic_version = \"2023-06-01\"\nbase_url = \"http://127.0.0.1:9\"\n").unwrap();
        let p: ProviderConfig =
            toml::from_str("name = \"c\"\nkind = \"anthropic\"\napi_key = \"sk-ant-secret\"\n")
                .unwrap();
        assert!(!format!("{p:?}").contains("sk-ant-secret"));
        assert!(p.can(Feature::Tools) && p.can(Feature::Images));
        assert!(!p.can(Feature::JsonSchema) && !p.can(Feature::MultipleChoices));
    }

    #[test]
    fn env_shortcut_adds_one_provider_first() {
        let mut root: toml::Table = toml::from_str(
            "[[providers]]\nname = \"openai\"\nbase_url = \"http://a\"\n[[providers]]\nname = \"b\"\nbase_url = \"http://b\"\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "HEADY_OPENAI_BASE_URL" => Some("http://127.0.0.1:11434/v1".to_string()),
            "HEADY_OPENAI_API_KEY" => Some("sk-x".to_string()),
            _ => None,
        };
        assert!(apply_env(&mut root, &env));
        #[derive(Deserialize)]
        struct F {
            providers: Vec<ProviderConfig>,
        }
        let ps = toml::Value::Table(root).try_into::<F>().unwrap().providers;
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].name, "openai");
        assert_eq!(ps[0].base_url.as_deref(), Some("http://127.0.0.1:11434/v1"));
        assert_eq!(ps[0].api_key.as_ref().map(Secret::expose), Some("sk-x"));
        assert!(ps[0].model.is_none());
        assert_eq!(ps[1].name, "b");
        let mut empty = toml::Table::new();
        assert!(!apply_env(&mut empty, &|_| None));
        assert!(empty.is_empty());
    }
}
