//! The vocabulary every subsystem's configuration is written in: the error that names a key,
//! range and URL checks, and the reference metadata (`KeyDoc`) each section lists its keys
//! with. `config` composes the sections and loads them; the sections import only this, so no
//! module depends on `config` and `config` on it back.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What is wrong with the configuration, naming the key (or the file) it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

pub fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

pub fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be between {min} and {max} (got {value})"),
        ))
    }
}

pub fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(invalid(
            key,
            format!("must be an http(s) URL with a host (got {url:?})"),
        )),
    }
}

/// The environment variable the rule gives a dotted key: `memory.hnsw_ef_search` ->
/// `HEADY_MEMORY__HNSW_EF_SEARCH`.
pub fn rule_var(key: &str) -> String {
    format!("HEADY_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// How a key's value is read from an environment variable (the file's TOML is typed already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Taken as it is (enumerations too: their type checks them).
    Str,
    Int,
    Float,
    /// `true`/`false`, `on`/`off`, `1`/`0`.
    Bool,
    /// A TOML array, or a comma list.
    List,
    /// An array of tables, as a TOML array of inline tables.
    Table,
}

/// One key of the reference.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// The dotted TOML path; `a[].b` is field `b` of each `[[a]]` entry.
    pub key: &'static str,
    pub ty: Ty,
    /// One short sentence.
    pub meaning: &'static str,
    /// Variables of earlier releases that set this key too.
    pub aliases: &'static [&'static str],
    /// Variables that affect the key through its section's own code (`HEADY_OPENAI_*`).
    pub env_extra: &'static [&'static str],
    /// No default: an entry must give it.
    pub required: bool,
}

impl KeyDoc {
    pub const fn new(key: &'static str, ty: Ty, meaning: &'static str) -> KeyDoc {
        KeyDoc {
            key,
            ty,
            meaning,
            aliases: &[],
            env_extra: &[],
            required: false,
        }
    }

    pub const fn aliases(self, aliases: &'static [&'static str]) -> KeyDoc {
        KeyDoc { aliases, ..self }
    }

    pub const fn env_extra(self, env_extra: &'static [&'static str]) -> KeyDoc {
        KeyDoc { env_extra, ..self }
    }

    pub const fn required(self) -> KeyDoc {
        KeyDoc {
            required: true,
            ..self
        }
    }

    /// The variable the rule gives the key; none for a field of an array entry.
    pub fn env_var(&self) -> Option<String> {
        (!self.key.contains("[]")).then(|| rule_var(self.key))
    }

    /// The table the key is in (`""` for the top level).
    pub fn section(&self) -> &'static str {
        self.key.rsplit_once('.').map_or("", |(s, _)| s)
    }
}

/// A configuration value that must not be printed: its `Debug` shows only its length, it
/// serializes as `"<redacted>"`, and a value of the wrong type is refused without echoing it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<secret, {} bytes>", self.0.len())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // serde's own "invalid type" message would quote the value.
        String::deserialize(d)
            .map(Secret)
            .map_err(|_| serde::de::Error::custom("must be a string (the value is not shown)"))
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}
