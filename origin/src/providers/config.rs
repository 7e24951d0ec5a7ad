//! `[[providers]]`: the inference providers the brain router may call, and the
//! `HEADY_OPENAI_*` shortcut for the one-provider case.

use crate::config::ConfigError;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Any OpenAI-compatible `/chat/completions` endpoint: OpenAI, Ollama, vLLM, llama.cpp.
    #[default]
    Openai,
    /// Cloudflare Workers AI REST API (`/accounts/{id}/ai/run/{model}`).
    WorkersAi,
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique name, shown in responses, metrics and logs.
    pub name: String,
    #[serde(default)]
    pub kind: ProviderKind,
    /// openai: e.g. `http://127.0.0.1:11434/v1`; workers-ai: the API root (optional).
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    /// Workers AI account id.
    pub account_id: Option<String>,
    /// Model sent upstream. Unset (openai only): the client's `model` is forwarded, or the
    /// first model the endpoint lists when the client asks for `heady`.
    pub model: Option<String>,
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
}

/// `check-config` prints the configuration: keys never appear in it.
impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("account_id", &self.account_id)
            .field("model", &self.model)
            .field("groups", &self.groups)
            .field("weight", &self.weight)
            .field("priority", &self.priority)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn default_weight() -> f64 {
    1.0
}

fn default_timeout_ms() -> u64 {
    60_000
}

pub const WORKERS_AI_ROOT: &str = "https://api.cloudflare.com/client/v4";

fn invalid(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// `HEADY_OPENAI_BASE_URL` (+ `HEADY_OPENAI_API_KEY`, `HEADY_OPENAI_MODEL`) adds a provider
/// named `openai` serving every group, ahead of those in the file.
pub fn apply_env(providers: &mut Vec<ProviderConfig>, env: &dyn Fn(&str) -> Option<String>) {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if let Some(base_url) = get("HEADY_OPENAI_BASE_URL") {
        providers.retain(|p| p.name != "openai");
        providers.insert(
            0,
            ProviderConfig {
                name: "openai".into(),
                kind: ProviderKind::Openai,
                base_url: Some(base_url),
                api_key: get("HEADY_OPENAI_API_KEY"),
                account_id: None,
                model: get("HEADY_OPENAI_MODEL"),
                groups: Vec::new(),
                weight: 1.0,
                priority: 0,
                timeout_ms: default_timeout_ms(),
            },
        );
    }
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
                if p.api_key.as_deref().unwrap_or("").is_empty() {
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
        one("[[providers]]\nname = \"a\"\nbase_url = \"http://127.0.0.1:1/v1\"\ngroups = [\"reasoning\"]\nweight = 2.0\n").unwrap();
    }

    #[test]
    fn env_shortcut_adds_one_provider_first() {
        let mut ps = vec![];
        let env = |k: &str| match k {
            "HEADY_OPENAI_BASE_URL" => Some("http://127.0.0.1:11434/v1".to_string()),
            "HEADY_OPENAI_API_KEY" => Some("sk-x".to_string()),
            _ => None,
        };
        apply_env(&mut ps, &env);
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].name, "openai");
        assert_eq!(ps[0].api_key.as_deref(), Some("sk-x"));
        assert!(ps[0].model.is_none());
    }
}
