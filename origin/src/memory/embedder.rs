//! Embedders turn text into vectors. Three implementations behind one trait:
//! `LexicalEmbedder` (built in, offline, deterministic), `OpenAiEmbedder` (any OpenAI-compatible
//! `/embeddings` endpoint: Ollama, TEI, vLLM, OpenAI) and `WorkersAiEmbedder` (Cloudflare's REST API).

use super::embedder_config::{EmbedderConfig, EmbedderKind};
use super::local::{LocalEmbedder, ModelError};
use super::meta::{self, EmbedderRecord};
use super::MemoryError;
use crate::db::Database;
use crate::providers::error_message;
use heady_shared::zone::splitmix64;
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedder {provider} could not be reached: {message}")]
    Unreachable {
        provider: &'static str,
        message: String,
    },
    #[error("embedder {provider} answered {status}: {message}")]
    Upstream {
        provider: &'static str,
        status: u16,
        message: String,
    },
    #[error("embedder {provider} answered something unexpected: {message}")]
    BadResponse {
        provider: &'static str,
        message: String,
    },
    #[error("embedder {provider} returned {got}-dimensional vectors; this database stores {want}")]
    Dimension {
        provider: &'static str,
        got: usize,
        want: usize,
    },
}

pub type EmbedFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send + 'a>>;

/// Vectors and, when the embedder reports it, the tokens its input cost.
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// The provider's `usage.prompt_tokens`; `None` when it reports none.
    pub prompt_tokens: Option<u64>,
}

pub type CountedFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Embedded, EmbedError>> + Send + 'a>>;

/// The input of a `/v1/embeddings` request: strings, or token arrays (`cl100k_base` ids).
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedInput {
    Texts(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

impl EmbedInput {
    pub fn len(&self) -> usize {
        match self {
            EmbedInput::Texts(t) => t.len(),
            EmbedInput::Tokens(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inputs as text: token arrays decoded with `cl100k_base`; `Err(i)` names an input
    /// whose ids are not text.
    pub fn texts(&self) -> Result<Vec<String>, usize> {
        match self {
            EmbedInput::Texts(t) => Ok(t.clone()),
            EmbedInput::Tokens(ts) => ts
                .iter()
                .enumerate()
                // cl100k_base: the tokenizer of OpenAI's embedding models (and of usage counts).
                .map(|(i, t)| {
                    tiktoken_rs::cl100k_base_singleton()
                        .decode(t)
                        .map_err(|_| i)
                })
                .collect(),
        }
    }
}

/// A `/v1/embeddings` request as the embedder sees it.
#[derive(Debug, Clone)]
pub struct EmbedRequest {
    pub input: EmbedInput,
    /// The model asked for; `None` (or `heady`, `heady-embed`): the configured one.
    pub model: Option<String>,
    pub dimensions: Option<usize>,
}

/// What answers it: one vector per input, the model that made them, the provider's count.
pub struct EmbedAnswer {
    pub vectors: Vec<Vec<f32>>,
    pub model: String,
    pub prompt_tokens: Option<u64>,
}

/// Why a `/v1/embeddings` request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum EmbedApiError {
    #[error("model: {asked:?} is not served here; this embedder serves {served:?} (\"heady\" names it too)")]
    Model { asked: String, served: String },
    #[error("dimensions: this embedder produces {dim}-dimensional vectors")]
    Dimensions { dim: usize },
    #[error("input[{0}]: the token ids are not cl100k_base text")]
    Tokens(usize),
    #[error(transparent)]
    Failed(#[from] EmbedError),
}

pub type ApiFuture<'a> =
    Pin<Box<dyn Future<Output = Result<EmbedAnswer, EmbedApiError>> + Send + 'a>>;

/// Names that mean "the configured embedder".
pub fn is_alias(model: &str) -> bool {
    matches!(model, "heady" | "heady-embed")
}

pub trait Embedder: Send + Sync {
    /// A short name for logs and `/api/memory/stats`.
    fn name(&self) -> &'static str;
    /// The model that embeds (usage is recorded under it).
    fn model(&self) -> &str;
    fn dim(&self) -> usize;
    /// What tells two copies of the same model apart (the local model's sha256); `None` when
    /// the name says it all.
    fn fingerprint(&self) -> Option<&str> {
        None
    }
    /// One vector per input text, in order.
    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a>;
    /// [`Embedder::embed`] with the token count the provider reports, if it reports one.
    fn embed_counted<'a>(&'a self, texts: &'a [String]) -> CountedFuture<'a> {
        Box::pin(async move {
            Ok(Embedded {
                vectors: self.embed(texts).await?,
                prompt_tokens: None,
            })
        })
    }
    /// A `/v1/embeddings` request. By default: the configured model only, its dimension only,
    /// token arrays decoded to text.
    fn embed_api<'a>(&'a self, req: &'a EmbedRequest) -> ApiFuture<'a> {
        Box::pin(async move {
            check_model(req.model.as_deref(), self.model())?;
            if req.dimensions.is_some_and(|d| d != self.dim()) {
                return Err(EmbedApiError::Dimensions { dim: self.dim() });
            }
            let texts = req.input.texts().map_err(EmbedApiError::Tokens)?;
            let e = self.embed_counted(&texts).await?;
            Ok(EmbedAnswer {
                vectors: e.vectors,
                model: self.model().to_string(),
                prompt_tokens: e.prompt_tokens,
            })
        })
    }
}

fn check_model(asked: Option<&str>, served: &str) -> Result<(), EmbedApiError> {
    match asked {
        None => Ok(()),
        Some(m) if is_alias(m) || m == served => Ok(()),
        Some(m) => Err(EmbedApiError::Model {
            asked: m.to_string(),
            served: served.to_string(),
        }),
    }
}

/// The embedder `cfg` names; `auto` and `local` name the lexical one here (see [`select`],
/// which loads the model).
pub fn from_config(cfg: &EmbedderConfig, dim: usize) -> Arc<dyn Embedder> {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    match cfg.kind {
        EmbedderKind::Auto | EmbedderKind::Local | EmbedderKind::Lexical => {
            Arc::new(LexicalEmbedder::new(dim))
        }
        EmbedderKind::Openai => Arc::new(OpenAiEmbedder::new(
            cfg.base_url.clone().unwrap_or_default(),
            cfg.api_key.as_ref().map(|k| k.expose().to_string()),
            cfg.model.clone().unwrap_or_default(),
            dim,
            timeout,
        )),
        EmbedderKind::WorkersAi => Arc::new(WorkersAiEmbedder::new(
            cfg.base_url
                .clone()
                .unwrap_or_else(|| WorkersAiEmbedder::API_ROOT.to_string()),
            cfg.account_id.clone().unwrap_or_default(),
            cfg.api_key
                .as_ref()
                .map(|k| k.expose().to_string())
                .unwrap_or_default(),
            cfg.model
                .clone()
                .unwrap_or_else(|| WorkersAiEmbedder::DEFAULT_MODEL.to_string()),
            dim,
            timeout,
        )),
    }
}

/// Why [`select`] could not pick an embedder.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// The embedder chosen at start, and why (the start-up log says both).
pub struct Selected {
    pub embedder: Arc<dyn Embedder>,
    pub why: String,
}

/// Threads for the local model's matrix products: `embedder.threads`, else one per core.
pub fn local_threads(cfg: &EmbedderConfig) -> usize {
    cfg.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(std::num::NonZeroUsize::get)
            .unwrap_or(1)
    })
}

/// Starts the local model from `cfg`'s folder (`<data_dir>/models/all-MiniLM-L6-v2` unless
/// `embedder.model_dir`).
pub fn start_local(
    cfg: &EmbedderConfig,
    dim: usize,
    data_dir: &Path,
) -> Result<Arc<dyn Embedder>, ModelError> {
    let dir = cfg.model_dir(data_dir);
    Ok(Arc::new(LocalEmbedder::start(
        &dir,
        dim,
        local_threads(cfg),
    )?))
}

/// Picks the embedder for the database in `db` (whose table holds `rows` rows) and records
/// it there when nothing is recorded yet.
///
/// - An explicit `embedder.kind` is used as configured; a bad model folder is an error, and
///   so is a database that records another embedder ([`MemoryError::EmbedderMismatch`]).
/// - `auto`: the embedder the database records (a database with rows but no record is
///   recorded `lexical`, the embedder such databases were made with); an empty one gets
///   `local` when the model folder is valid, else `lexical`.
/// - An unfinished `memory reembed` is an error either way.
pub fn select(
    cfg: &EmbedderConfig,
    dim: usize,
    data_dir: &Path,
    db: &Database,
    rows: u64,
) -> Result<Selected, SelectError> {
    if let Some(target) = meta::unfinished_reembed(db)? {
        return Err(MemoryError::ReembedUnfinished {
            target,
            path: db.path().to_path_buf(),
        }
        .into());
    }
    let recorded = meta::recorded(db)?.filter(|_| rows > 0 || cfg.kind != EmbedderKind::Auto);
    let lexical = || -> Arc<dyn Embedder> { Arc::new(LexicalEmbedder::new(dim)) };
    let (embedder, why) = match (cfg.kind, &recorded) {
        (EmbedderKind::Auto, Some(r)) if r.embedder == "lexical" => (
            lexical(),
            format!("embedder.kind = auto and the database's vectors are lexical ({} rows; `heady-origin memory reembed --to local` switches)", rows),
        ),
        (EmbedderKind::Auto, Some(r)) if r.embedder == "local" => (
            start_local(cfg, dim, data_dir)?,
            "embedder.kind = auto and the database's vectors are local".to_string(),
        ),
        (EmbedderKind::Auto, Some(r)) => {
            return Err(MemoryError::EmbedderMismatch {
                stored: r.describe(),
                configured: "auto (local or lexical)".into(),
                path: db.path().to_path_buf(),
            }
            .into())
        }
        (EmbedderKind::Auto, None) if rows > 0 => (
            lexical(),
            format!("embedder.kind = auto and the database holds {rows} rows with no record of their embedder: lexical, the embedder they were made with"),
        ),
        (EmbedderKind::Auto, None) => match start_local(cfg, dim, data_dir) {
            Ok(e) => (
                e,
                format!(
                    "embedder.kind = auto and the model is installed in {}",
                    cfg.model_dir(data_dir).display()
                ),
            ),
            Err(e) => (
                lexical(),
                format!("embedder.kind = auto and no usable model: {e}"),
            ),
        },
        (EmbedderKind::Local, _) => (
            start_local(cfg, dim, data_dir)?,
            "embedder.kind = local".to_string(),
        ),
        (kind, _) => (
            from_config(cfg, dim),
            format!("embedder.kind = {}", kind_name(kind)),
        ),
    };
    let chosen = EmbedderRecord::of(&*embedder);
    match &recorded {
        Some(r) if !r.same(&chosen) => {
            return Err(MemoryError::EmbedderMismatch {
                stored: r.describe(),
                configured: chosen.describe(),
                path: db.path().to_path_buf(),
            }
            .into())
        }
        Some(_) => {}
        None => meta::record(db, &chosen)?,
    }
    Ok(Selected { embedder, why })
}

fn kind_name(kind: EmbedderKind) -> &'static str {
    match kind {
        EmbedderKind::Auto => "auto",
        EmbedderKind::Local => "local",
        EmbedderKind::Lexical => "lexical",
        EmbedderKind::Openai => "openai",
        EmbedderKind::WorkersAi => "workers-ai",
    }
}

/// Hashed lexical features: lower-cased words (weight 1.0), word bigrams (0.5) and character
/// trigrams of each word (0.25), each hashed (splitmix64 of FNV-1a) to a bucket with a sign,
/// then L2-normalised. Deterministic across processes and platforms; no model, no network.
/// Texts that share words land close together; it knows nothing of synonyms.
pub struct LexicalEmbedder {
    dim: usize,
}

impl LexicalEmbedder {
    pub fn new(dim: usize) -> Self {
        LexicalEmbedder { dim }
    }

    fn fnv1a(bytes: &[u8], salt: u64) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        splitmix64(h)
    }

    fn add(&self, v: &mut [f32], feature: &[u8], salt: u64, weight: f32) {
        let h = Self::fnv1a(feature, salt);
        let bucket = (h % self.dim as u64) as usize;
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[bucket] += sign * weight;
    }

    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dim];
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        for w in &words {
            self.add(&mut v, w.as_bytes(), 1, 1.0);
            let padded: Vec<char> = std::iter::once('^')
                .chain(w.chars())
                .chain(std::iter::once('$'))
                .collect();
            for tri in padded.windows(3) {
                let s: String = tri.iter().collect();
                self.add(&mut v, s.as_bytes(), 3, 0.25);
            }
        }
        for pair in words.windows(2) {
            let s = format!("{} {}", pair[0], pair[1]);
            self.add(&mut v, s.as_bytes(), 2, 0.5);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

impl Embedder for LexicalEmbedder {
    fn name(&self) -> &'static str {
        "lexical"
    }
    fn model(&self) -> &str {
        "lexical"
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(async move { Ok(texts.iter().map(|t| self.embed_one(t)).collect()) })
    }
    /// Hashing works at any width: `dimensions` from 1 to 4,096 is honoured.
    fn embed_api<'a>(&'a self, req: &'a EmbedRequest) -> ApiFuture<'a> {
        Box::pin(async move {
            check_model(req.model.as_deref(), self.model())?;
            let texts = req.input.texts().map_err(EmbedApiError::Tokens)?;
            let vectors = match req.dimensions {
                None => texts.iter().map(|t| self.embed_one(t)).collect(),
                Some(d) if (1..=4_096).contains(&d) => {
                    let other = LexicalEmbedder::new(d);
                    texts.iter().map(|t| other.embed_one(t)).collect()
                }
                Some(_) => return Err(EmbedApiError::Dimensions { dim: self.dim }),
            };
            Ok(EmbedAnswer {
                vectors,
                model: self.model().to_string(),
                prompt_tokens: None,
            })
        })
    }
}

fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn check_dims(
    provider: &'static str,
    vectors: &[Vec<f32>],
    want: usize,
    n: usize,
) -> Result<(), EmbedError> {
    if vectors.len() != n {
        return Err(EmbedError::BadResponse {
            provider,
            message: format!("{} vectors for {} inputs", vectors.len(), n),
        });
    }
    if let Some(v) = vectors.iter().find(|v| v.len() != want) {
        return Err(EmbedError::Dimension {
            provider,
            got: v.len(),
            want,
        });
    }
    Ok(())
}

async fn post_json(
    provider: &'static str,
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: serde_json::Value,
) -> Result<String, EmbedError> {
    let mut req = client.post(url).json(&body);
    if let Some(key) = bearer.filter(|k| !k.is_empty()) {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.map_err(|e| EmbedError::Unreachable {
        provider,
        message: e.to_string(),
    })?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| EmbedError::Unreachable {
        provider,
        message: e.to_string(),
    })?;
    if !status.is_success() {
        return Err(EmbedError::Upstream {
            provider,
            status: status.as_u16(),
            message: error_message(&text),
        });
    }
    Ok(text)
}

/// OpenAI-compatible `POST {base_url}/embeddings` with `{"model","input":[...]}`.
pub struct OpenAiEmbedder {
    url: String,
    api_key: Option<String>,
    model: String,
    dim: usize,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct OpenAiEmbeddings {
    data: Vec<OpenAiEmbedding>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    model: Option<String>,
}
#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: Option<u64>,
}
#[derive(Deserialize)]
struct OpenAiEmbedding {
    index: usize,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    pub fn new(
        base_url: String,
        api_key: Option<String>,
        model: String,
        dim: usize,
        timeout: Duration,
    ) -> Self {
        let url = format!("{}/embeddings", base_url.trim_end_matches('/'));
        OpenAiEmbedder {
            url,
            api_key,
            model,
            dim,
            client: http_client(timeout),
        }
    }
}

impl Embedder for OpenAiEmbedder {
    fn name(&self) -> &'static str {
        "openai"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(async move { Ok(self.embed_counted(texts).await?.vectors) })
    }
    /// Passed on as asked: strings or token arrays, the client's `model` (any the endpoint
    /// serves; `heady` is the configured one) and `dimensions`; the provider's usage.
    fn embed_api<'a>(&'a self, req: &'a EmbedRequest) -> ApiFuture<'a> {
        Box::pin(async move {
            const P: &str = "openai";
            let model = match req.model.as_deref() {
                Some(m) if !is_alias(m) => m.to_string(),
                _ => self.model.clone(),
            };
            let mut body = json!({"model": model, "encoding_format": "float"});
            body["input"] = match &req.input {
                EmbedInput::Texts(t) => json!(t),
                EmbedInput::Tokens(t) => json!(t),
            };
            if let Some(d) = req.dimensions {
                body["dimensions"] = json!(d);
            }
            let text = post_json(P, &self.client, &self.url, self.api_key.as_deref(), body).await?;
            let mut parsed: OpenAiEmbeddings =
                serde_json::from_str(&text).map_err(|e| EmbedError::BadResponse {
                    provider: P,
                    message: e.to_string(),
                })?;
            parsed.data.sort_by_key(|d| d.index);
            let vectors: Vec<Vec<f32>> = parsed.data.into_iter().map(|d| d.embedding).collect();
            let want = req
                .dimensions
                .or_else(|| vectors.first().map(Vec::len))
                .unwrap_or(self.dim);
            check_dims(P, &vectors, want, req.input.len())?;
            Ok(EmbedAnswer {
                vectors,
                model: parsed.model.unwrap_or(model),
                prompt_tokens: parsed.usage.and_then(|u| u.prompt_tokens),
            })
        })
    }
    fn embed_counted<'a>(&'a self, texts: &'a [String]) -> CountedFuture<'a> {
        Box::pin(async move {
            const P: &str = "openai";
            let body = json!({"model": self.model, "input": texts, "encoding_format": "float"});
            let text = post_json(P, &self.client, &self.url, self.api_key.as_deref(), body).await?;
            let mut parsed: OpenAiEmbeddings =
                serde_json::from_str(&text).map_err(|e| EmbedError::BadResponse {
                    provider: P,
                    message: e.to_string(),
                })?;
            parsed.data.sort_by_key(|d| d.index);
            let vectors: Vec<Vec<f32>> = parsed.data.into_iter().map(|d| d.embedding).collect();
            check_dims(P, &vectors, self.dim, texts.len())?;
            Ok(Embedded {
                vectors,
                prompt_tokens: parsed.usage.and_then(|u| u.prompt_tokens),
            })
        })
    }
}

/// Workers AI REST: `POST {root}/accounts/{account}/ai/run/{model}` with `{"text":[...]}`,
/// answered `{"result":{"shape":[n,d],"data":[[...]]},"success":true,"errors":[],"messages":[]}`.
pub struct WorkersAiEmbedder {
    url: String,
    model: String,
    api_key: String,
    dim: usize,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct CfEnvelope {
    success: bool,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
    result: Option<CfEmbeddings>,
}
#[derive(Deserialize)]
struct CfEmbeddings {
    data: Vec<Vec<f32>>,
}

impl WorkersAiEmbedder {
    pub const API_ROOT: &'static str = "https://api.cloudflare.com/client/v4";
    pub const DEFAULT_MODEL: &'static str = heady_shared::embedding::DEFAULT_MODEL;

    pub fn new(
        root: String,
        account_id: String,
        api_key: String,
        model: String,
        dim: usize,
        timeout: Duration,
    ) -> Self {
        let url = format!(
            "{}/accounts/{}/ai/run/{}",
            root.trim_end_matches('/'),
            account_id,
            model
        );
        WorkersAiEmbedder {
            url,
            model,
            api_key,
            dim,
            client: http_client(timeout),
        }
    }
}

impl Embedder for WorkersAiEmbedder {
    fn name(&self) -> &'static str {
        "workers-ai"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(async move {
            const P: &str = "workers-ai";
            let text = post_json(
                P,
                &self.client,
                &self.url,
                Some(&self.api_key),
                json!({"text": texts}),
            )
            .await?;
            let env: CfEnvelope =
                serde_json::from_str(&text).map_err(|e| EmbedError::BadResponse {
                    provider: P,
                    message: e.to_string(),
                })?;
            if !env.success {
                return Err(EmbedError::BadResponse {
                    provider: P,
                    message: error_message(&json!({"errors": env.errors}).to_string()),
                });
            }
            let vectors = env
                .result
                .ok_or_else(|| EmbedError::BadResponse {
                    provider: P,
                    message: "no result".into(),
                })?
                .data;
            check_dims(P, &vectors, self.dim, texts.len())?;
            Ok(vectors)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn lexical_is_deterministic_normalised_and_lexically_close() {
        let e = LexicalEmbedder::new(384);
        let a = e.embed_one("The cat sat on the mat");
        assert_eq!(a, e.embed_one("The cat sat on the mat"));
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        let near = e.embed_one("a cat sat on a mat");
        let far = e.embed_one("quarterly revenue forecast spreadsheet");
        assert!(
            cos(&a, &near) > cos(&a, &far) + 0.3,
            "{} vs {}",
            cos(&a, &near),
            cos(&a, &far)
        );
        assert!(e.embed_one("  !!! ").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn error_messages_are_extracted_from_each_wire_format() {
        assert_eq!(
            error_message(
                r#"{"error":{"message":"Invalid API key","type":"invalid_request_error"}}"#
            ),
            "Invalid API key"
        );
        assert_eq!(
            error_message(r#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(
            error_message(
                r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#
            ),
            "10000 Authentication error"
        );
        assert_eq!(error_message("plain"), "plain");
    }
}
