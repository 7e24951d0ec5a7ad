//! Daemon configuration: TOML file, then `HEADY_*` environment overrides, then flags.
//! Validated once at start; every error names the key it is about.

use heady_shared::groups::ServiceGroup;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Directory for the DuckDB file and the persisted HNSW index.
    pub data_dir: PathBuf,
    /// Optional Redis (exact limiter, bans); `/ready` checks it when set.
    pub redis_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Log format: "text" or "json".
    pub log_format: String,
    pub memory: MemoryConfig,
    pub embedder: EmbedderConfig,
    pub conductor: ConductorConfig,
    pub defense: DefenseConfig,
    /// `[[providers]]`: the brain router's inference endpoints.
    pub providers: Vec<crate::providers::config::ProviderConfig>,
    pub pipeline: crate::pipeline::config::PipelineConfig,
}

/// The defense stage: keys, limits, bans, client addresses, the operator socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefenseConfig {
    /// Off: no rate limits, bans or classification checks (benchmarks, trusted networks only).
    pub enabled: bool,
    /// Peers (addresses or CIDR networks) whose `client_ip_header` is believed.
    pub trusted_proxies: Vec<String>,
    /// Header a trusted proxy puts the client address in (comma lists: right-most untrusted).
    pub client_ip_header: String,
    /// How long a key lookup (or a miss) is cached; a revocation takes effect within it.
    pub key_cache_secs: u64,
    /// Longest wait for one Redis limiter call before deciding in-process.
    pub redis_timeout_ms: u64,
    /// Auto-ban: threshold_factor x limit attempts in a window -> ban for base_ttl_secs,
    /// doubling per remembered offence up to max_ttl_secs.
    pub ban: heady_shared::limiter::BanPolicy,
    /// Unix socket for `heady-origin keys` / `bans` while the daemon runs (default
    /// `<data_dir>/admin.sock`; mode 0600).
    pub admin_socket: Option<PathBuf>,
    /// The secret the edge Worker signs tunnelled requests with (its `HEADY_TUNNEL_KEY`), at
    /// least 32 bytes. Without it, a request carrying an edge signature is refused.
    pub edge_key: Option<Secret>,
    /// How far an edge timestamp may be from our clock; nonces are kept for twice this.
    pub edge_max_skew_secs: u64,
    /// Refuse `/api` and `/v1` requests that did not come through the edge (production).
    pub require_edge: bool,
}

/// A configuration value that must not be printed (`check-config` prints the config).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<secret, {} bytes>", self.0.len())
    }
}

impl Default for DefenseConfig {
    fn default() -> Self {
        DefenseConfig {
            enabled: true,
            trusted_proxies: Vec::new(),
            client_ip_header: "cf-connecting-ip".into(),
            key_cache_secs: 5,
            redis_timeout_ms: 250,
            ban: heady_shared::limiter::BanPolicy::default(),
            admin_socket: None,
            edge_key: None,
            edge_max_skew_secs: heady_shared::wire::DEFAULT_MAX_SKEW_SECS,
            require_edge: false,
        }
    }
}

impl DefenseConfig {
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("not an address or CIDR network: {s:?}"))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Embedding dimension, fixed per database.
    pub dim: usize,
    /// HNSW graph degree (usearch "connectivity", M).
    pub hnsw_connectivity: usize,
    /// Candidate list size while building (efConstruction).
    pub hnsw_ef_construction: usize,
    /// Candidate list size while searching (efSearch).
    pub hnsw_ef_search: usize,
    /// How the HNSW graph stores vectors: f16 (default: half the memory traffic of f32, the
    /// same recall in the benchmark, ~1.6x faster), f32, or i8 (fastest, but recall@10 fell
    /// to 0.82 on clustered data). DuckDB keeps the full FLOAT[dim] either way.
    pub hnsw_quantization: String,
    /// Largest `top_k` a search may ask for.
    pub max_top_k: usize,
    /// Largest number of items in one batch insert.
    pub max_batch: usize,
    /// Read connections for concurrent searches.
    pub read_connections: usize,
    /// Stored rows that may wait for the HNSW indexer before inserts are slowed down.
    pub max_pending: usize,
    /// WAL size (MiB) at which a write checkpoints DuckDB (its `checkpoint_threshold`). A
    /// checkpoint rewrites the table's last, partly filled row group (up to 122,880 rows), so
    /// DuckDB's 16 MiB default turns a bulk load quadratic; a larger WAL costs restart time
    /// after a crash (replay measured at ~50,000 rows/s).
    pub wal_limit_mb: u64,
    /// WAL size (MiB) past which a background checkpoint runs once writes pause for 2 s.
    pub idle_checkpoint_mb: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EmbedderKind {
    /// Built-in, offline: hashed word and character n-grams.
    Lexical,
    /// Any OpenAI-compatible `/v1/embeddings` endpoint.
    Openai,
    /// Cloudflare Workers AI REST API.
    WorkersAi,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedderConfig {
    pub kind: EmbedderKind,
    /// Base URL: for openai e.g. `http://127.0.0.1:11434/v1`; for workers-ai the API root.
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub model: Option<String>,
    /// Workers AI account id.
    pub account_id: Option<String>,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ConductorConfig {
    /// Extra service groups (or extra actions for existing ones).
    pub groups: Vec<ServiceGroup>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            redis_url: None,
            max_body_bytes: 1024 * 1024,
            log_format: "text".into(),
            memory: MemoryConfig::default(),
            embedder: EmbedderConfig::default(),
            conductor: ConductorConfig::default(),
            defense: DefenseConfig::default(),
            providers: Vec::new(),
            pipeline: Default::default(),
        }
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            dim: heady_shared::embedding::DEFAULT_DIMENSIONS,
            hnsw_connectivity: 16,
            hnsw_ef_construction: 128,
            hnsw_ef_search: 64,
            hnsw_quantization: "f16".into(),
            max_top_k: 100,
            max_batch: 10_000,
            read_connections: 4,
            max_pending: 200_000,
            wal_limit_mb: 256,
            idle_checkpoint_mb: 16,
        }
    }
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        EmbedderConfig {
            kind: EmbedderKind::Lexical,
            base_url: None,
            api_key: None,
            model: None,
            account_id: None,
            timeout_ms: 10_000,
        }
    }
}

/// Values given on the command line; they win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// File (if any) -> environment -> flags -> validation.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<Config>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        if let Some(l) = &flags.listen {
            cfg.listen = l.clone();
        }
        if let Some(d) = &flags.data_dir {
            cfg.data_dir = d.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn num<T: std::str::FromStr>(key: &str, v: String) -> Result<T, ConfigError> {
            v.trim()
                .parse()
                .map_err(|_| invalid(key, format!("not a whole number: {v:?}")))
        }
        let non_empty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = non_empty("HEADY_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = non_empty("HEADY_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = non_empty("HEADY_REDIS_URL") {
            self.redis_url = Some(v);
        }
        if let Some(v) = non_empty("HEADY_MAX_BODY_BYTES") {
            self.max_body_bytes = num("HEADY_MAX_BODY_BYTES", v)?;
        }
        if let Some(v) = non_empty("HEADY_LOG_FORMAT") {
            self.log_format = v;
        }
        if let Some(v) = non_empty("HEADY_HNSW_QUANTIZATION") {
            self.memory.hnsw_quantization = v;
        }
        if let Some(v) = non_empty("HEADY_MEMORY_DIM") {
            self.memory.dim = num("HEADY_MEMORY_DIM", v)?;
        }
        if let Some(v) = non_empty("HEADY_EMBEDDER") {
            self.embedder.kind = match v.as_str() {
                "lexical" => EmbedderKind::Lexical,
                "openai" => EmbedderKind::Openai,
                "workers-ai" => EmbedderKind::WorkersAi,
                other => {
                    return Err(invalid(
                        "HEADY_EMBEDDER",
                        format!(
                            "unknown embedder {other:?} (expected lexical, openai or workers-ai)"
                        ),
                    ))
                }
            };
        }
        if let Some(v) = non_empty("HEADY_EMBEDDER_BASE_URL") {
            self.embedder.base_url = Some(v);
        }
        if let Some(v) = non_empty("HEADY_EMBEDDER_API_KEY") {
            self.embedder.api_key = Some(v);
        }
        if let Some(v) = non_empty("HEADY_EMBEDDER_MODEL") {
            self.embedder.model = Some(v);
        }
        if let Some(v) = non_empty("HEADY_EMBEDDER_ACCOUNT_ID") {
            self.embedder.account_id = Some(v);
        }
        crate::providers::config::apply_env(&mut self.providers, &env);
        if let Some(v) = non_empty("HEADY_DEFENSE") {
            self.defense.enabled = match v.trim() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                other => {
                    return Err(invalid(
                        "HEADY_DEFENSE",
                        format!("expected on or off (got {other:?})"),
                    ))
                }
            };
        }
        if let Some(v) = non_empty("HEADY_TRUSTED_PROXIES") {
            self.defense.trusted_proxies = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = non_empty("HEADY_TUNNEL_KEY") {
            self.defense.edge_key = Some(Secret(v));
        }
        if let Some(v) = non_empty("HEADY_REQUIRE_EDGE") {
            self.defense.require_edge = match v.trim() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                other => {
                    return Err(invalid(
                        "HEADY_REQUIRE_EDGE",
                        format!("expected on or off (got {other:?})"),
                    ))
                }
            };
        }
        if let Some(v) = non_empty("HEADY_ADMIN_SOCKET") {
            self.defense.admin_socket = Some(PathBuf::from(v));
        }
        Ok(())
    }

    /// Where the operator socket lives (`None`: disabled by an empty `admin_socket`).
    pub fn admin_socket_path(&self) -> Option<PathBuf> {
        match &self.defense.admin_socket {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p.clone()),
            None => Some(self.data_dir.join("admin.sock")),
        }
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("not an address like 127.0.0.1:8080: {:?}", self.listen),
            )
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
            {
                return Err(invalid(
                    "redis_url",
                    format!("must start with redis://, rediss:// or unix:// (got {url:?})"),
                ));
            }
        }
        in_range(
            "max_body_bytes",
            self.max_body_bytes as u64,
            1024,
            64 * 1024 * 1024,
        )?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(invalid(
                "log_format",
                format!("must be \"text\" or \"json\" (got {:?})", self.log_format),
            ));
        }
        let m = &self.memory;
        in_range("memory.dim", m.dim as u64, 2, 4096)?;
        in_range(
            "memory.hnsw_connectivity",
            m.hnsw_connectivity as u64,
            2,
            128,
        )?;
        in_range(
            "memory.hnsw_ef_construction",
            m.hnsw_ef_construction as u64,
            8,
            4096,
        )?;
        in_range("memory.hnsw_ef_search", m.hnsw_ef_search as u64, 8, 4096)?;
        if !matches!(m.hnsw_quantization.as_str(), "f32" | "f16" | "i8") {
            return Err(invalid(
                "memory.hnsw_quantization",
                format!("must be f32, f16 or i8 (got {:?})", m.hnsw_quantization),
            ));
        }
        in_range("memory.max_top_k", m.max_top_k as u64, 1, 10_000)?;
        // An appender auto-flushes past ~200k rows; a batch must stay one transaction.
        in_range("memory.max_batch", m.max_batch as u64, 1, 100_000)?;
        in_range("memory.read_connections", m.read_connections as u64, 1, 64)?;
        in_range(
            "memory.max_pending",
            m.max_pending as u64,
            1_000,
            10_000_000,
        )?;
        in_range("memory.wal_limit_mb", m.wal_limit_mb, 1, 65_536)?;
        in_range(
            "memory.idle_checkpoint_mb",
            m.idle_checkpoint_mb,
            1,
            m.wal_limit_mb,
        )?;
        let d = &self.defense;
        d.trusted_proxy_nets()
            .map_err(|e| invalid("defense.trusted_proxies", e))?;
        http::HeaderName::from_bytes(d.client_ip_header.as_bytes()).map_err(|_| {
            invalid(
                "defense.client_ip_header",
                format!("not a header name: {:?}", d.client_ip_header),
            )
        })?;
        in_range("defense.key_cache_secs", d.key_cache_secs, 0, 3600)?;
        in_range("defense.redis_timeout_ms", d.redis_timeout_ms, 10, 10_000)?;
        d.ban
            .validate()
            .map_err(|e| invalid("defense.ban", e.to_string()))?;
        if let Some(k) = &d.edge_key {
            if k.0.len() < heady_shared::wire::MIN_KEY_BYTES {
                return Err(invalid(
                    "defense.edge_key",
                    format!(
                        "must be at least {} bytes (got {}); e.g. `openssl rand -hex 32`",
                        heady_shared::wire::MIN_KEY_BYTES,
                        k.0.len()
                    ),
                ));
            }
        }
        in_range("defense.edge_max_skew_secs", d.edge_max_skew_secs, 1, 3600)?;
        if d.require_edge && d.edge_key.is_none() {
            return Err(invalid(
                "defense.require_edge",
                "needs defense.edge_key (HEADY_TUNNEL_KEY) to verify the edge",
            ));
        }
        let e = &self.embedder;
        in_range("embedder.timeout_ms", e.timeout_ms, 1, 600_000)?;
        match e.kind {
            EmbedderKind::Lexical => {}
            EmbedderKind::Openai => {
                let url = e.base_url.as_deref().ok_or_else(|| {
                    invalid(
                        "embedder.base_url",
                        "required for kind = \"openai\" (e.g. http://127.0.0.1:11434/v1)",
                    )
                })?;
                check_http_url("embedder.base_url", url)?;
                if e.model.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid("embedder.model", "required for kind = \"openai\""));
                }
            }
            EmbedderKind::WorkersAi => {
                if let Some(url) = &e.base_url {
                    check_http_url("embedder.base_url", url)?;
                }
                if e.account_id.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid(
                        "embedder.account_id",
                        "required for kind = \"workers-ai\"",
                    ));
                }
                if e.api_key.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid(
                        "embedder.api_key",
                        "required for kind = \"workers-ai\"",
                    ));
                }
            }
        }
        let mut groups = heady_shared::GroupTable::default();
        groups
            .extend(self.conductor.groups.clone())
            .map_err(|e| invalid("conductor.groups", e.to_string()))?;
        crate::providers::config::validate(&self.providers, &groups)?;
        self.pipeline.validate()?;
        Ok(())
    }
}

fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be between {min} and {max} (got {value})"),
        ))
    }
}

fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(invalid(
            key,
            format!("must be an http(s) URL with a host (got {url:?})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/heady-origin.toml");
        let cfg = Config::load(Some(&path), |_| None, &Overrides::default()).unwrap();
        assert!(cfg.defense.enabled);
        assert_eq!(cfg.defense.ban.threshold_factor, 3);
    }

    #[test]
    fn defense_settings_are_checked_by_name() {
        for (toml, key) in [
            (
                "[defense]\ntrusted_proxies = [\"10.0.0.0/33\"]",
                "defense.trusted_proxies",
            ),
            (
                "[defense]\nclient_ip_header = \"bad header\"",
                "defense.client_ip_header",
            ),
            (
                "[defense]\nredis_timeout_ms = 0",
                "defense.redis_timeout_ms",
            ),
            ("[defense.ban]\nbase_ttl_secs = 0", "defense.ban"),
        ] {
            let e = load_with(Some(toml), &[], Overrides::default()).unwrap_err();
            assert!(e.to_string().starts_with(key), "{toml}: {e}");
        }
        let e = load_with(None, &[("HEADY_DEFENSE", "maybe")], Overrides::default()).unwrap_err();
        assert!(e.to_string().starts_with("HEADY_DEFENSE"), "{e}");
        let c = load_with(
            None,
            &[
                ("HEADY_DEFENSE", "off"),
                ("HEADY_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert!(!c.defense.enabled);
        assert_eq!(c.defense.trusted_proxy_nets().unwrap().len(), 2);
    }

    fn load_with(
        toml_text: Option<&str>,
        env: &[(&str, &str)],
        flags: Overrides,
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heady.toml");
        if let Some(t) = toml_text {
            std::fs::write(&path, t).unwrap();
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(
            toml_text.map(|_| path.as_path()),
            |k| env.get(k).cloned(),
            &flags,
        )
    }

    #[test]
    fn defaults_run_with_nothing_installed() {
        let c = load_with(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.memory.dim, 384);
        assert_eq!(c.embedder.kind, EmbedderKind::Lexical);
        assert!(c.redis_url.is_none());
    }

    #[test]
    fn file_then_env_then_flags() {
        let file =
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/var/lib/heady\"\n[memory]\ndim = 16\n";
        let c = load_with(Some(file), &[], Overrides::default()).unwrap();
        assert_eq!((c.listen.as_str(), c.memory.dim), ("127.0.0.1:9000", 16));
        let c = load_with(
            Some(file),
            &[
                ("HEADY_LISTEN", "127.0.0.1:9100"),
                ("HEADY_REDIS_URL", "redis://127.0.0.1:6379"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9100");
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
        let flags = Overrides {
            listen: Some("127.0.0.1:9200".into()),
            data_dir: Some("/tmp/x".into()),
        };
        let c = load_with(Some(file), &[("HEADY_LISTEN", "127.0.0.1:9100")], flags).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9200");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    fn err_of(toml_text: Option<&str>, env: &[(&str, &str)]) -> String {
        load_with(toml_text, env, Overrides::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err_of(Some("listen = \"nowhere\""), &[]).starts_with("listen:"));
        assert!(err_of(Some("[memory]\ndim = 0"), &[]).starts_with("memory.dim:"));
        assert!(err_of(None, &[("HEADY_MEMORY_DIM", "big")]).starts_with("HEADY_MEMORY_DIM:"));
        assert!(err_of(None, &[("HEADY_REDIS_URL", "http://x")]).starts_with("redis_url:"));
        assert!(err_of(None, &[("HEADY_EMBEDDER", "magic")]).starts_with("HEADY_EMBEDDER:"));
        assert!(
            err_of(Some("[embedder]\nkind = \"openai\""), &[]).starts_with("embedder.base_url:")
        );
        assert!(err_of(
            Some("[embedder]\nkind = \"workers-ai\"\napi_key = \"k\""),
            &[]
        )
        .starts_with("embedder.account_id:"));
        let dup = "[[conductor.groups]]\nname = \"x\"\nweight = 0.5\nactions = [\"chat\"]";
        assert!(err_of(Some(dup), &[]).contains("conductor.groups:"));
        let unknown = err_of(Some("lisen = \"127.0.0.1:1\""), &[]);
        assert!(unknown.contains("lisen"), "{unknown}");
        let syntax = err_of(Some("listen = "), &[]);
        assert!(syntax.contains("line 1"), "{syntax}");
        let wal = err_of(
            Some("[memory]\nwal_limit_mb = 64\nidle_checkpoint_mb = 128"),
            &[],
        );
        assert!(wal.starts_with("memory.idle_checkpoint_mb:"), "{wal}");
        assert!(err_of(Some("[memory]\nwal_limit_mb = 0"), &[]).starts_with("memory.wal_limit_mb:"));
    }
}
