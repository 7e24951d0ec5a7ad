//! The one Redis handle every part of the origin uses (limiter, bans, edge nonces, readiness):
//! one connection manager, set up once, one timeout policy, typed errors.
//!
//! Every call is bounded by `timeout`: a slow Redis is an error the caller decides about (the
//! limiter decides in-process, the nonce check remembers locally), never a stuck request.

use crate::tls::{ClientTls, TlsFiles};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisError {
    #[error("redis_url: {0}")]
    Url(String),
    /// A `[redis_tls]` file is missing, unreadable or does not fit (the message names it).
    #[error("{0}")]
    Tls(String),
    #[error("timed out connecting to redis")]
    ConnectTimeout,
    #[error("connecting to redis: {0}")]
    Connect(String),
    #[error("redis {command} timed out after {ms} ms")]
    Timeout { command: &'static str, ms: u128 },
    #[error("redis {command} failed: {message}")]
    Command {
        command: &'static str,
        message: String,
    },
}

/// Cheap to share (`Arc<Redis>`); the connection manager inside reconnects on its own.
pub struct Redis {
    client: ::redis::Client,
    conn: RwLock<Option<ConnectionManager>>,
    timeout: Duration,
    /// The CA and client certificate given for `rediss://` (`None`: the system's CA store, no
    /// client certificate).
    tls: Option<TlsShown>,
}

/// What `Debug` says about the TLS settings (never the key).
#[derive(Clone, Copy)]
struct TlsShown {
    own_ca: bool,
    client_cert: bool,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: say only where it points.
        let info = self.client.get_connection_info();
        f.debug_struct("Redis")
            .field("addr", &info.addr.to_string())
            .field("timeout", &self.timeout)
            .field(
                "tls",
                &self.tls.map(|t| {
                    let ca = if t.own_ca { "redis_tls.ca" } else { "system" };
                    format!("CA: {ca}, client certificate: {}", t.client_cert)
                }),
            )
            .finish()
    }
}

impl Redis {
    /// Parses the URL; connects lazily, on first use. A `rediss://` URL verifies the server
    /// against the system's CA store and offers no client certificate.
    pub fn open(url: &str, timeout: Duration) -> Result<Redis, RedisError> {
        Redis::open_tls(url, None, timeout)
    }

    /// [`Redis::open`] with the `[redis_tls]` files (`redis_tls` names their keys in errors).
    pub fn open_with_files(
        url: &str,
        files: &TlsFiles,
        timeout: Duration,
    ) -> Result<Redis, RedisError> {
        let tls = if files.is_empty() {
            None
        } else {
            let loaded = files
                .load("redis_tls")
                .map_err(|e| RedisError::Tls(e.to_string()))?;
            Some(loaded)
        };
        Redis::open_tls(url, tls.as_ref(), timeout)
    }

    /// [`Redis::open`] for `rediss://` with a CA to verify the server and a client certificate.
    pub fn open_tls(
        url: &str,
        tls: Option<&ClientTls>,
        timeout: Duration,
    ) -> Result<Redis, RedisError> {
        if url.starts_with("rediss://") {
            // The redis crate builds its rustls config from the process default provider.
            crate::tls::install_process_default();
        }
        let client = match tls {
            None => ::redis::Client::open(url),
            Some(t) => ::redis::Client::build_with_tls(
                url,
                ::redis::TlsCertificates {
                    client_tls: t.client_pem().map(|(cert, key)| ::redis::ClientTlsConfig {
                        client_cert: cert.to_vec(),
                        client_key: key.to_vec(),
                    }),
                    root_cert: t.ca_pem().map(<[u8]>::to_vec),
                },
            ),
        }
        .map_err(|e| RedisError::Url(e.to_string()))?;
        Ok(Redis {
            client,
            conn: RwLock::new(None),
            timeout,
            tls: tls.map(|t| TlsShown {
                own_ca: t.has_ca(),
                client_cert: t.has_client_cert(),
            }),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The shared connection, made on first use.
    pub async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(c) = self.conn.read().await.as_ref() {
            return Ok(c.clone());
        }
        let mut guard = self.conn.write().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
            .set_max_delay(500);
        let cm = tokio::time::timeout(
            self.timeout * 2,
            ConnectionManager::new_with_config(self.client.clone(), cfg),
        )
        .await
        .map_err(|_| RedisError::ConnectTimeout)?
        .map_err(|e| RedisError::Connect(self.explain(e.to_string())))?;
        *guard = Some(cm.clone());
        Ok(cm)
    }

    /// Runs one command (or script invocation) under the timeout. `command` names it in errors.
    pub async fn call<T, F, Fut>(&self, command: &'static str, f: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisError::Command {
                command,
                message: self.explain(e.to_string()),
            }),
            Err(_) => Err(RedisError::Timeout {
                command,
                ms: self.timeout.as_millis(),
            }),
        }
    }

    /// `message`, with what a TLS refusal means for the settings (TLS 1.3 reports a refused
    /// client certificate only as the server's alert on the first read).
    fn explain(&self, message: String) -> String {
        let has_cert = self.tls.is_some_and(|t| t.client_cert);
        let hint = if message.contains("CertificateRequired") && !has_cert {
            "the server asks for a client certificate: set redis_tls.cert and redis_tls.key"
        } else if has_cert
            && [
                "UnknownCA",
                "BadCertificate",
                "CertificateUnknown",
                "DecryptError",
            ]
            .iter()
            .any(|a| message.contains(a))
        {
            "the server refused the client certificate: it must chain to the server's tls-ca-cert-file"
        } else if [
            "UnknownIssuer",
            "not valid for name",
            "expired",
            "not valid yet",
        ]
        .iter()
        .any(|a| message.contains(a))
        {
            "the server's certificate is not trusted: check redis_tls.ca and the host in redis_url"
        } else {
            return message;
        };
        format!("{message} ({hint})")
    }

    /// A connection of its own for SUBSCRIBE (a subscribed connection can do nothing else).
    pub async fn pubsub(&self) -> Result<::redis::aio::PubSub, RedisError> {
        tokio::time::timeout(self.timeout * 2, self.client.get_async_pubsub())
            .await
            .map_err(|_| RedisError::ConnectTimeout)?
            .map_err(|e| RedisError::Connect(self.explain(e.to_string())))
    }

    /// PING; a failure drops the connection so the next call starts afresh.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let r = self
            .call("PING", |mut c| async move {
                ::redis::cmd("PING").query_async::<String>(&mut c).await
            })
            .await;
        if r.is_err() {
            *self.conn.write().await = None;
        }
        r.map(|_| ())
    }
}

/// One Redis user's view of an outage (the edge-nonce check; the limiter keeps its own):
/// after a failed call it stops asking Redis, so no request waits for a Redis already known
/// to be down; a gauge says so, one line is logged each way, and one background probe PINGs
/// Redis until it answers again.
pub struct Outage {
    what: &'static str,
    down: AtomicBool,
    probing: AtomicBool,
    gauge: Gauge,
}

impl Outage {
    /// `what` names the user in the log lines ("nonce check").
    pub fn new(what: &'static str, gauge: Gauge) -> Arc<Outage> {
        Arc::new(Outage {
            what,
            down: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            gauge,
        })
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// A call failed: mark Redis down (logging once) and start the probe unless one runs.
    pub fn failed(
        self: &Arc<Self>,
        redis: &Arc<Redis>,
        error: &RedisError,
        background: &crate::lifecycle::Background,
    ) {
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(%error, "{} degraded: Redis unreachable, working in-process until it answers again", self.what);
            self.gauge.set(1);
        }
        if !self.probing.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            let redis = redis.clone();
            background.spawn("redis recovery probe", async move {
                let mut delay = Duration::from_millis(100);
                loop {
                    tokio::time::sleep(delay).await;
                    if redis.ping().await.is_ok() {
                        me.down.store(false, Ordering::Release);
                        me.probing.store(false, Ordering::Release);
                        me.gauge.set(0);
                        tracing::info!("{} recovered: using Redis again", me.what);
                        return;
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_redis_is_a_typed_error_within_the_timeout() {
        // A port nothing listens on (bound and dropped).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = Redis::open(
            &format!("redis://127.0.0.1:{port}"),
            Duration::from_millis(200),
        )
        .unwrap();
        let t = std::time::Instant::now();
        let e = r.ping().await.unwrap_err();
        assert!(
            matches!(e, RedisError::Connect(_) | RedisError::ConnectTimeout),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(matches!(
            Redis::open("http://x", Duration::from_millis(1)),
            Err(RedisError::Url(_))
        ));
    }

    #[test]
    fn tls_refusals_say_what_to_change() {
        let r = Redis::open("rediss://127.0.0.1:6380", Duration::from_millis(100)).unwrap();
        let e = r.explain("received fatal alert: CertificateRequired".into());
        assert!(e.contains("set redis_tls.cert and redis_tls.key"), "{e}");
        let e = r.explain("invalid peer certificate: UnknownIssuer".into());
        assert!(e.contains("redis_tls.ca"), "{e}");
        assert_eq!(r.explain("Connection refused".into()), "Connection refused");
    }

    #[test]
    fn debug_does_not_show_a_password() {
        let r = Redis::open(
            "redis://:hunter2@127.0.0.1:6379",
            Duration::from_millis(100),
        )
        .unwrap();
        let s = format!("{r:?}");
        assert!(!s.contains("hunter2"), "{s}");
    }
}
