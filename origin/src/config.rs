//! Daemon configuration: TOML file, then `HEADY_*` environment overrides, then flags.
//!
//! Each subsystem owns the type of its section (`memory/config.rs`, `memory/embedder_config.rs`,
//! `defense/config.rs`, `conductor/config.rs`, `providers/config.rs`, `pipeline/config.rs`,
//! `billing/config.rs`, `discord/config.rs`) and
//! the reference rows of its keys. This module composes them with the top-level keys, loads
//! them (one deserialisation of the file's table with the environment merged in, see
//! [`env`]), validates once, and renders the reference (`heady-origin config-reference`).
//! Values are parsed into their types at load (addresses, networks, header names, enums), so
//! constructors take them as they are. Every error names the key (or the variable) it is about.

mod env;
mod reference;

pub use crate::settings::ConfigError;
pub(crate) use crate::settings::{in_range, invalid};

pub use crate::billing::config::BillingConfig;
pub use crate::conductor::config::ConductorConfig;
pub use crate::defense::config::{DefenseConfig, Secret};
pub use crate::discord::config::DiscordConfig;
pub use crate::memory::config::{MemoryConfig, Quantization};
pub use crate::memory::embedder_config::{EmbedderConfig, EmbedderKind};
pub use crate::pg::DatabaseUrl;
use crate::pipeline::config::PipelineConfig;
use crate::providers::config::ProviderConfig;
pub use crate::tls::TlsFiles;
pub use crate::usage::config::UsageConfig;
pub use env::{heady_env, NOT_CONFIG};
pub use reference::{generated_part, reference_markdown, splice, KeyDoc, Ty, DOC_BEGIN, DOC_END};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on.
    #[serde(with = "socket_addr")]
    pub listen: SocketAddr,
    /// Directory for the DuckDB file and the persisted HNSW index.
    pub data_dir: PathBuf,
    /// Optional Redis (exact limiter, bans); `/ready` checks it when set.
    pub redis_url: Option<RedisUrl>,
    /// Optional PostgreSQL for accounts and keys, shared by every origin; unset: the DuckDB
    /// file holds them.
    pub database_url: Option<DatabaseUrl>,
    /// `[redis_tls]`: the CA and client certificate for a `rediss://` `redis_url`.
    pub redis_tls: TlsFiles,
    /// `[database_tls]`: the CA and client certificate for `database_url` (see its `sslmode`).
    pub database_tls: TlsFiles,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    pub http: HttpConfig,
    pub memory: MemoryConfig,
    pub embedder: EmbedderConfig,
    pub conductor: ConductorConfig,
    pub defense: DefenseConfig,
    /// `[[providers]]`: the brain router's inference endpoints.
    pub providers: Vec<ProviderConfig>,
    pub pipeline: PipelineConfig,
    /// Stripe: checkout, portal, webhooks; off unless its key is set.
    pub billing: BillingConfig,
    /// Token limits per tier, usage recording, the meter outbox.
    pub usage: UsageConfig,
    /// The Discord bot and its sign-in; off unless its application is named.
    pub discord: DiscordConfig,
    /// HTTPS on the public listener.
    pub tls: crate::tls::TlsConfig,
    /// The mesh: mutual TLS between origins and operators.
    pub mesh: crate::mesh::MeshConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            redis_url: None,
            database_url: None,
            redis_tls: TlsFiles::default(),
            database_tls: TlsFiles::default(),
            max_body_bytes: 1024 * 1024,
            log_format: LogFormat::Text,
            http: HttpConfig::default(),
            memory: MemoryConfig::default(),
            embedder: EmbedderConfig::default(),
            conductor: ConductorConfig::default(),
            defense: DefenseConfig::default(),
            providers: Vec::new(),
            pipeline: PipelineConfig::default(),
            billing: BillingConfig::default(),
            usage: UsageConfig::default(),
            discord: DiscordConfig::default(),
            tls: crate::tls::TlsConfig::default(),
            mesh: crate::mesh::MeshConfig::default(),
        }
    }
}

/// `[http]`: how long the server waits for a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A request head begun must be complete within this, or the connection is closed.
    pub header_timeout_secs: u64,
    /// A request body must arrive whole within this, or the request gets 408.
    pub body_timeout_secs: u64,
    /// A kept-alive connection with no request in flight is closed after this.
    pub idle_timeout_secs: u64,
    /// HTTP/2 connections are PINGed this often and closed when a PING goes unanswered as
    /// long; 0: never.
    pub h2_keepalive_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            // Longer than cloudflared's 90 s idle pool: the proxy closes first, so it never
            // sends a request on a connection we are closing.
            idle_timeout_secs: 120,
            h2_keepalive_secs: 30,
        }
    }
}

impl HttpConfig {
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn h2_keepalive(&self) -> Option<Duration> {
        (self.h2_keepalive_secs > 0).then(|| Duration::from_secs(self.h2_keepalive_secs))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        in_range("http.header_timeout_secs", self.header_timeout_secs, 1, 300)?;
        in_range("http.body_timeout_secs", self.body_timeout_secs, 1, 3600)?;
        in_range("http.idle_timeout_secs", self.idle_timeout_secs, 1, 3600)?;
        in_range("http.h2_keepalive_secs", self.h2_keepalive_secs, 0, 3600)
    }
}

const HTTP_KEYS: &[KeyDoc] = &[
    KeyDoc::new("http.header_timeout_secs", Ty::Int, "a connection that began a request head and has not finished it within this is closed (1-300)"),
    KeyDoc::new("http.body_timeout_secs", Ty::Int, "a request body not received whole within this gets 408 `request_timeout` (1-3600)"),
    KeyDoc::new("http.idle_timeout_secs", Ty::Int, "a kept-alive connection with no request in flight for this long is closed (1-3600; keep it above the idle timeout of a proxy in front)"),
    KeyDoc::new("http.h2_keepalive_secs", Ty::Int, "HTTP/2 connections are PINGed this often and closed when a PING goes unanswered as long (0: off)"),
];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A Redis URL (`redis://`, `rediss://` or `unix://`), checked at load. `Debug`, `Display` and
/// errors hide its password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        let url = RedisUrl(s.to_string());
        if !(s.starts_with("redis://") || s.starts_with("rediss://") || s.starts_with("unix://")) {
            return Err(format!(
                "must start with redis://, rediss:// or unix:// (got {:?})",
                url.redacted()
            ));
        }
        redis::Client::open(s).map_err(|_| format!("not a Redis URL: {:?}", url.redacted()))?;
        Ok(url)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `rediss://`: TLS.
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("rediss://")
    }

    /// A client for it (no connection is made).
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        redis::Client::open(self.0.as_str())
    }

    fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("redacted"));
                u.to_string()
            }
            _ => self.0.clone(),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RedisUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for RedisUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

mod socket_addr {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::net::SocketAddr;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let s = String::deserialize(d)?;
        s.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("not an address like 127.0.0.1:8080: {s:?}"))
        })
    }

    pub fn serialize<S: Serializer>(v: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }
}

/// Values given on the command line; they win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// The top-level keys (the sections document their own, see [`Config::keys`]).
const KEYS: &[KeyDoc] = &[
    KeyDoc::new("listen", Ty::Str, "HTTP listen address (`--listen` overrides)"),
    KeyDoc::new("data_dir", Ty::Str, "directory of the DuckDB file `heady.duckdb` and the persisted index `hnsw.usearch` (`--data-dir` overrides)"),
    KeyDoc::new("redis_url", Ty::Str, "Redis (`redis://`, `rediss://` or `unix://`) for the exact limiter, bans and edge nonces, shared by every origin; `/ready` checks it; unset: they live in this process"),
    KeyDoc::new("database_url", Ty::Str, "PostgreSQL (`postgres://user:password@host:5432/db`) for accounts and API keys, shared by every origin; schema migrations run at start; unset: they live in the DuckDB file; `?sslmode=disable|prefer|require|verify-ca|verify-full` as libpq means them (default `prefer`), also `sslrootcert`, `sslcert`, `sslkey`; the password is never printed"),
    KeyDoc::new("max_body_bytes", Ty::Int, "larger request bodies get 413 (1 KiB - 64 MiB)"),
    KeyDoc::new("log_format", Ty::Str, "`text` or `json` (the level is `HEADY_LOG`, e.g. `info,heady_origin=debug`)"),
];

/// `[redis_tls]`.
const REDIS_TLS_KEYS: &[KeyDoc] = &[
    KeyDoc::new("redis_tls.ca", Ty::Str, "PEM CA bundle the Redis server's certificate must chain to (a `rediss://` `redis_url` only); unset: the system's CA store").aliases(&["HEADY_REDIS_TLS_CA"]),
    KeyDoc::new("redis_tls.cert", Ty::Str, "PEM client certificate presented to Redis (for `tls-auth-clients yes`)").aliases(&["HEADY_REDIS_TLS_CERT"]),
    KeyDoc::new("redis_tls.key", Ty::Str, "PEM private key of `redis_tls.cert`; checked against the certificate at start").aliases(&["HEADY_REDIS_TLS_KEY"]),
];

impl Config {
    /// Every key, section by section, in the order of the reference.
    pub fn keys() -> impl Iterator<Item = &'static KeyDoc> {
        [
            KEYS,
            REDIS_TLS_KEYS,
            crate::pg::KEYS,
            HTTP_KEYS,
            crate::memory::config::KEYS,
            crate::memory::embedder_config::KEYS,
            crate::conductor::config::KEYS,
            crate::defense::config::KEYS,
            crate::defense::tunnel::config::KEYS,
            crate::providers::config::KEYS,
            crate::pipeline::config::KEYS,
            crate::cache::config::KEYS,
            crate::billing::config::KEYS,
            crate::usage::config::KEYS,
            crate::discord::config::KEYS,
            crate::tls::KEYS,
            crate::mesh::config::KEYS,
        ]
        .into_iter()
        .flatten()
    }

    /// File (if any) -> `HEADY_*` variables (`env`: name, value pairs, e.g. [`heady_env`]) ->
    /// flags -> validation. The file's table and the variables' values are merged first and
    /// deserialised once. An error starts with where the bad value came from: the variable
    /// (then the key in parentheses) for env input, else the dotted key.
    pub fn load(
        file: Option<&Path>,
        env: &[(String, String)],
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: path.to_path_buf(),
                        message: e.to_string().trim_end().to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        let sources = env::merge(&mut table, env)?;
        let mut cfg: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let message = e.inner().message().to_string();
                match (sources.var_for(&key), file) {
                    (Some(var), _) => invalid(var, format!("{message} ({key})")),
                    (None, Some(path)) if key == "." || key.is_empty() => ConfigError::Parse {
                        path: path.to_path_buf(),
                        message,
                    },
                    (None, _) => invalid(&key, message),
                }
            })?;
        if let Some(l) = flags.listen {
            cfg.listen = l;
        }
        if let Some(d) = &flags.data_dir {
            cfg.data_dir = d.clone();
        }
        cfg.validate().map_err(|e| match e {
            ConfigError::Invalid { key, message } => match sources.var_for(&key) {
                Some(var) => invalid(var, format!("{message} ({key})")),
                None => ConfigError::Invalid { key, message },
            },
            other => other,
        })?;
        Ok(cfg)
    }

    /// Where the operator socket lives (`None`: disabled by an empty `admin_socket`).
    pub fn admin_socket_path(&self) -> Option<PathBuf> {
        match &self.defense.admin_socket {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p.clone()),
            None => Some(self.data_dir.join("admin.sock")),
        }
    }

    /// `[redis_tls]` and `[database_tls]` fit their URLs, and their files are readable, PEM,
    /// and each key belongs to its certificate.
    fn check_tls(&self) -> Result<(), ConfigError> {
        if let Some(key) = self.redis_tls.first_set("redis_tls") {
            match &self.redis_url {
                None => return Err(invalid(&key, "set redis_url too (a rediss:// URL)")),
                Some(url) if !url.is_tls() => {
                    return Err(invalid(
                        "redis_url",
                        format!("{key} is set: TLS needs a rediss:// URL (got {url})"),
                    ))
                }
                Some(_) => {
                    self.redis_tls.load("redis_tls")?;
                }
            }
        }
        match &self.database_url {
            Some(url) => {
                crate::pg::PgTarget::new(url, &self.database_tls)?;
            }
            None => {
                if let Some(key) = self.database_tls.first_set("database_tls") {
                    return Err(invalid(&key, "set database_url too"));
                }
            }
        }
        Ok(())
    }

    /// The checks types cannot make: ranges, and keys that depend on each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        in_range(
            "max_body_bytes",
            self.max_body_bytes as u64,
            1024,
            64 * 1024 * 1024,
        )?;
        self.check_tls()?;
        self.http.validate()?;
        self.memory.validate()?;
        self.defense.validate()?;
        self.embedder.validate()?;
        let groups = self.conductor.group_table()?;
        crate::providers::config::validate(&self.providers, &groups)?;
        self.pipeline.validate()?;
        self.billing.validate()?;
        self.usage.validate()?;
        self.discord.validate()?;
        self.tls.validate()?;
        self.mesh.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/heady-origin.toml");
        let cfg = Config::load(Some(&path), &no_env(), &Overrides::default()).unwrap();
        assert!(cfg.defense.enabled);
        assert_eq!(cfg.defense.ban.threshold_factor, 3);
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/heady"));
        assert_eq!(cfg.memory.hnsw_quantization, Quantization::F16);
        assert_eq!(cfg.pipeline.drift.quality.lambda, 2.0);
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
        assert_eq!(
            c.defense.trusted_proxies,
            vec![
                "127.0.0.1/32".parse::<ipnet::IpNet>().unwrap(),
                "10.0.0.0/8".parse().unwrap()
            ]
        );
        assert_eq!(c.defense.client_ip_header.as_str(), "cf-connecting-ip");
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
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(toml_text.map(|_| path.as_path()), &env, &flags)
    }

    #[test]
    fn defaults_run_with_nothing_installed() {
        let c = load_with(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.memory.dim, 384);
        assert_eq!(c.embedder.kind, EmbedderKind::Auto);
        assert!(c.redis_url.is_none());
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn file_then_env_then_flags() {
        let file =
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/var/lib/heady\"\n[memory]\ndim = 16\n";
        let c = load_with(Some(file), &[], Overrides::default()).unwrap();
        assert_eq!(
            (c.listen.to_string().as_str(), c.memory.dim),
            ("127.0.0.1:9000", 16)
        );
        let c = load_with(
            Some(file),
            &[
                ("HEADY_LISTEN", "127.0.0.1:9100"),
                ("HEADY_REDIS_URL", "redis://127.0.0.1:6379"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(
            c.redis_url.as_ref().map(RedisUrl::as_str),
            Some("redis://127.0.0.1:6379")
        );
        let flags = Overrides {
            listen: Some("127.0.0.1:9200".parse().unwrap()),
            data_dir: Some("/tmp/x".into()),
        };
        let c = load_with(Some(file), &[("HEADY_LISTEN", "127.0.0.1:9100")], flags).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9200");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    fn err_of(toml_text: Option<&str>, env: &[(&str, &str)]) -> String {
        load_with(toml_text, env, Overrides::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn tunnel_settings_are_checked_by_name_and_never_echoed() {
        let origin = heady_shared::tunnel::Identity::from_seeds([1; 32], [2; 32]);
        let edge = heady_shared::tunnel::Identity::from_seeds([3; 32], [4; 32]);
        let secret = origin.to_secret_text();
        let fp = edge.fingerprint().to_string();
        // The default policy is pq-hybrid; identities come from the environment too.
        let c = load_with(
            None,
            &[
                ("HEADY_TUNNEL_IDENTITY", &secret),
                (
                    "HEADY_TUNNEL_EDGE_IDENTITIES",
                    &format!("{fp}, {}", origin.fingerprint()),
                ),
                ("HEADY_REQUIRE_EDGE", "on"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.defense.tunnel_auth,
            heady_shared::tunnel::TunnelAuth::PqHybrid
        );
        assert_eq!(c.defense.tunnel.edge_identities.len(), 2);
        assert_eq!(c.defense.tunnel.session_secs, 3600);
        assert!(!format!("{c:?}").contains(&secret[30..60]));
        for (env, key) in [
            (
                vec![("HEADY_TUNNEL_KEY", "0123456789abcdef0123456789abcdef")],
                "HEADY_TUNNEL_KEY",
            ),
            (vec![("HEADY_REQUIRE_EDGE", "on")], "HEADY_REQUIRE_EDGE"),
            (
                vec![("HEADY_TUNNEL_IDENTITY", secret.as_str())],
                "defense.tunnel.edge_identities",
            ),
            (
                vec![("HEADY_TUNNEL_EDGE_IDENTITIES", fp.as_str())],
                "defense.tunnel.identity",
            ),
            (
                vec![
                    ("HEADY_TUNNEL_IDENTITY", secret.as_str()),
                    ("HEADY_TUNNEL_EDGE_IDENTITIES", "htid1:beef"),
                ],
                "HEADY_TUNNEL_EDGE_IDENTITIES",
            ),
            (vec![("HEADY_TUNNEL_AUTH", "quantum")], "HEADY_TUNNEL_AUTH"),
            (
                vec![("HEADY_DEFENSE__TUNNEL__SESSION_SECS", "1")],
                "HEADY_DEFENSE__TUNNEL__SESSION_SECS",
            ),
            (
                vec![("HEADY_TUNNEL_TICKET_KEY", "not-hex-secret")],
                "HEADY_TUNNEL_TICKET_KEY",
            ),
            (
                vec![("HEADY_TUNNEL_IDENTITY", "heady-tunnel-identity-v1:s3cr3t")],
                "HEADY_TUNNEL_IDENTITY",
            ),
        ] {
            let e = err_of(None, &env);
            assert!(e.starts_with(key), "{env:?}: {e}");
            assert!(
                !e.contains("s3cr3t") && !e.contains("not-hex-secret"),
                "{e}"
            );
        }
        // hmac keeps today's edge key; require_edge needs it then.
        let c = load_with(
            None,
            &[
                ("HEADY_TUNNEL_AUTH", "hmac"),
                ("HEADY_TUNNEL_KEY", "0123456789abcdef0123456789abcdef"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert!(c.defense.edge_key.is_some());
        let e = err_of(
            None,
            &[("HEADY_TUNNEL_AUTH", "hmac"), ("HEADY_REQUIRE_EDGE", "on")],
        );
        assert!(e.starts_with("HEADY_REQUIRE_EDGE"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err_of(Some("listen = \"nowhere\""), &[]).starts_with("listen:"));
        assert!(err_of(Some("[memory]\ndim = 0"), &[]).starts_with("memory.dim:"));
        assert!(err_of(None, &[("HEADY_MEMORY_DIM", "big")]).starts_with("HEADY_MEMORY_DIM:"));
        // Env input names the variable; the same value from the file names the key.
        assert!(err_of(None, &[("HEADY_REDIS_URL", "http://x")]).starts_with("HEADY_REDIS_URL:"));
        assert!(err_of(Some("redis_url = \"http://x\""), &[]).starts_with("redis_url:"));
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

    #[test]
    fn tls_sections_need_their_urls_and_readable_files() {
        let e = err_of(Some("[database_tls]\nca = \"/x.pem\""), &[]);
        assert!(e.starts_with("database_tls.ca: set database_url"), "{e}");
        let e = err_of(
            None,
            &[
                (
                    "HEADY_DATABASE_URL",
                    "postgres://u:hunter2-pw@h/d?sslmode=verify-full",
                ),
                ("HEADY_DATABASE_TLS_CA", "/nonexistent/ca.pem"),
            ],
        );
        assert!(
            e.starts_with("HEADY_DATABASE_TLS_CA: cannot read /nonexistent/ca.pem")
                && !e.contains("hunter2"),
            "{e}"
        );
        let e = err_of(
            Some("redis_url = \"redis://127.0.0.1:6379\"\n[redis_tls]\nca = \"/x.pem\""),
            &[],
        );
        assert!(
            e.starts_with("redis_url:") && e.contains("rediss://"),
            "{e}"
        );
        let e = err_of(Some("[redis_tls]\ncert = \"/c.pem\""), &[]);
        assert!(e.starts_with("redis_tls.cert: set redis_url"), "{e}");
    }

    #[test]
    fn enumerations_are_types() {
        let e = err_of(Some("log_format = \"xml\""), &[]);
        assert!(e.starts_with("log_format:") && e.contains("json"), "{e}");
        let e = err_of(Some("[memory]\nhnsw_quantization = \"f64\""), &[]);
        assert!(
            e.starts_with("memory.hnsw_quantization:") && e.contains("i8"),
            "{e}"
        );
        let e = err_of(None, &[("HEADY_HNSW_QUANTIZATION", "f64")]);
        assert!(e.starts_with("HEADY_HNSW_QUANTIZATION:"), "{e}");
        let e = err_of(Some("[[providers]]\nname = \"a\"\nkind = \"grpc\""), &[]);
        assert!(e.starts_with("providers[0].kind:"), "{e}");
        let c = load_with(
            None,
            &[
                ("HEADY_LOG_FORMAT", "json"),
                ("HEADY_HNSW_QUANTIZATION", "i8"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.memory.hnsw_quantization, Quantization::I8);
    }

    #[test]
    fn an_error_about_an_env_value_names_the_variable_first() {
        let e = err_of(None, &[("HEADY_MEMORY__DIM", "1")]);
        assert_eq!(
            e,
            "HEADY_MEMORY__DIM: must be between 2 and 4096 (got 1) (memory.dim)"
        );
        let e = err_of(None, &[("HEADY_DEFENSE__BAN__BASE_TTL_SECS", "0")]);
        assert!(e.starts_with("HEADY_DEFENSE__BAN__BASE_TTL_SECS: "), "{e}");
        assert!(e.ends_with("(defense.ban)"), "{e}");
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let key = "s3cr3t-0123456789abcdef0123456789abcdef";
        let c = load_with(
            Some("redis_url = \"redis://:hunter2-pw@127.0.0.1:6379\"\n[embedder]\nkind = \"workers-ai\"\naccount_id = \"a\"\n"),
            &[
                ("HEADY_TUNNEL_KEY", key),
                ("HEADY_TUNNEL_AUTH", "hmac"),
                ("HEADY_EMBEDDER_API_KEY", key),
                ("HEADY_OPENAI_BASE_URL", "http://127.0.0.1:1/v1"),
                ("HEADY_OPENAI_API_KEY", key),
            ],
            Overrides::default(),
        )
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!(c.defense.edge_key.as_ref().map(Secret::expose), Some(key));
        assert_eq!(
            c.redis_url.as_ref().unwrap().as_str(),
            "redis://:hunter2-pw@127.0.0.1:6379"
        );
        // A short key is refused without being shown.
        let e = err_of(
            None,
            &[
                ("HEADY_TUNNEL_KEY", "s3cr3t"),
                ("HEADY_TUNNEL_AUTH", "hmac"),
            ],
        );
        assert!(
            e.starts_with("HEADY_TUNNEL_KEY:") && !e.contains("s3cr3t"),
            "{e}"
        );
        // A secret of the wrong type in the file is not echoed either.
        let e = err_of(Some("[defense]\nedge_key = 123456789"), &[]);
        assert!(
            e.starts_with("defense.edge_key:") && !e.contains("1234"),
            "{e}"
        );
        let e = err_of(None, &[("HEADY_REDIS_URL", "http://:hunter2-pw@x")]);
        assert!(!e.contains("hunter2"), "{e}");
        let c = load_with(
            None,
            &[(
                "HEADY_DATABASE_URL",
                "postgres://heady:hunter2-pw@127.0.0.1/heady",
            )],
            Overrides::default(),
        )
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let e = err_of(
            None,
            &[("HEADY_DATABASE_URL", "mysql://root:hunter2-pw@x/db")],
        );
        assert!(
            e.starts_with("HEADY_DATABASE_URL:") && !e.contains("hunter2"),
            "{e}"
        );
        let e = err_of(
            Some("database_url = \"postgres://u:hunter2-pw@h:port/db\""),
            &[],
        );
        assert!(
            e.starts_with("database_url:") && !e.contains("hunter2"),
            "{e}"
        );
    }
}
