//! `[embedder]`: which embedder turns text into vectors, and how to reach it.

use crate::settings::Secret;
use crate::settings::{check_http_url, in_range, invalid, ConfigError, KeyDoc, Ty};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EmbedderKind {
    /// `local` when the model folder holds a valid model, else `lexical`; a database that
    /// records another embedder keeps it (`embedder::select`).
    Auto,
    /// all-MiniLM-L6-v2 run in-process (`memory/local.rs`), from `model_dir`.
    Local,
    /// Built-in, offline: hashed word and character n-grams.
    Lexical,
    /// Any OpenAI-compatible `/v1/embeddings` endpoint.
    Openai,
    /// Cloudflare Workers AI REST API.
    WorkersAi,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedderConfig {
    pub kind: EmbedderKind,
    /// Base URL: for openai e.g. `http://127.0.0.1:11434/v1`; for workers-ai the API root.
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub model: Option<String>,
    /// Workers AI account id.
    pub account_id: Option<String>,
    pub timeout_ms: u64,
    /// The local model's folder; unset: `<data_dir>/models/all-MiniLM-L6-v2`.
    pub model_dir: Option<PathBuf>,
    /// Threads of the local model's matrix products; unset: one per core.
    pub threads: Option<usize>,
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        EmbedderConfig {
            kind: EmbedderKind::Auto,
            base_url: None,
            api_key: None,
            model: None,
            account_id: None,
            timeout_ms: 10_000,
            model_dir: None,
            threads: None,
        }
    }
}

impl EmbedderConfig {
    /// What each kind needs (checked here, so `embedder::from_config` cannot fail).
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("embedder.timeout_ms", self.timeout_ms, 1, 600_000)?;
        if let Some(t) = self.threads {
            in_range("embedder.threads", t as u64, 1, 1_024)?;
        }
        match self.kind {
            EmbedderKind::Auto | EmbedderKind::Local | EmbedderKind::Lexical => {}
            EmbedderKind::Openai => {
                let url = self.base_url.as_deref().ok_or_else(|| {
                    invalid(
                        "embedder.base_url",
                        "required for kind = \"openai\" (e.g. http://127.0.0.1:11434/v1)",
                    )
                })?;
                check_http_url("embedder.base_url", url)?;
                if self.model.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid("embedder.model", "required for kind = \"openai\""));
                }
            }
            EmbedderKind::WorkersAi => {
                if let Some(url) = &self.base_url {
                    check_http_url("embedder.base_url", url)?;
                }
                if self.account_id.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid(
                        "embedder.account_id",
                        "required for kind = \"workers-ai\"",
                    ));
                }
                if self.api_key.as_ref().is_none_or(|k| k.expose().is_empty()) {
                    return Err(invalid(
                        "embedder.api_key",
                        "required for kind = \"workers-ai\"",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Where the local model is read from.
    pub fn model_dir(&self, data_dir: &Path) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("models").join(super::local::MODEL_NAME))
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("embedder.kind", Ty::Str, "`auto` (`local` when the model is installed, else `lexical`; a database keeps the embedder it records), `local` (all-MiniLM-L6-v2 in-process), `lexical` (built in, offline), `openai` (any OpenAI-compatible `/embeddings`) or `workers-ai`")
        .aliases(&["HEADY_EMBEDDER"]),
    KeyDoc::new("embedder.base_url", Ty::Str, "OpenAI-compatible base, e.g. `http://127.0.0.1:11434/v1` (required for `openai`); the Workers AI API root (optional)")
        .aliases(&["HEADY_EMBEDDER_BASE_URL"]),
    KeyDoc::new("embedder.api_key", Ty::Str, "bearer token (required for `workers-ai`: a Cloudflare API token with Workers AI access); never printed")
        .aliases(&["HEADY_EMBEDDER_API_KEY"]),
    KeyDoc::new("embedder.model", Ty::Str, "model name: required for `openai`; Workers AI default `@cf/baai/bge-small-en-v1.5` (384 dimensions)")
        .aliases(&["HEADY_EMBEDDER_MODEL"]),
    KeyDoc::new("embedder.account_id", Ty::Str, "Cloudflare account id (required for `workers-ai`)")
        .aliases(&["HEADY_EMBEDDER_ACCOUNT_ID"]),
    KeyDoc::new("embedder.timeout_ms", Ty::Int, "per-call timeout"),
    KeyDoc::new("embedder.model_dir", Ty::Str, "the local model's folder (deploy/setup.sh installs it); unset: `<data_dir>/models/all-MiniLM-L6-v2`")
        .aliases(&["HEADY_EMBEDDER_MODEL_DIR"]),
    KeyDoc::new("embedder.threads", Ty::Int, "threads of the local model's matrix products; unset: one per core"),
];
