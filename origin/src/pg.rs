//! PostgreSQL: `database_url`, its TLS (`sslmode` as libpq means it, `[database_tls]` or the
//! URL's `sslrootcert` / `sslcert` / `sslkey`), and the one pool builder every store uses.
//!
//! tokio-postgres knows only `sslmode=disable|prefer|require` and refuses the other libpq TLS
//! parameters, so they are taken out of the URL here and applied by our own connector (over
//! tokio-rustls, with the crate's one crypto provider, [`crate::tls::crypto_provider`]).

use crate::settings::{invalid, ConfigError, KeyDoc, Ty};
use crate::tls::{ClientTls, TlsFiles, Verify};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("database_tls.ca", Ty::Str, "PEM CA bundle the PostgreSQL server's certificate must chain to, under `sslmode=verify-ca`/`verify-full` in `database_url` (libpq's `sslrootcert`); unset: the system's CA store").aliases(&["HEADY_DATABASE_TLS_CA"]),
    KeyDoc::new("database_tls.cert", Ty::Str, "PEM client certificate presented to PostgreSQL (for `hostssl ... cert` in pg_hba.conf; libpq's `sslcert`)").aliases(&["HEADY_DATABASE_TLS_CERT"]),
    KeyDoc::new("database_tls.key", Ty::Str, "PEM private key of `database_tls.cert` (libpq's `sslkey`); checked against the certificate at start").aliases(&["HEADY_DATABASE_TLS_KEY"]),
];

/// libpq's `sslmode` (without `allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, the server not verified; plain otherwise (the default).
    #[default]
    Prefer,
    /// TLS or no connection; the server verified only when a CA is given (as `verify-ca`).
    Require,
    /// TLS; the server's certificate chains to the CA.
    VerifyCa,
    /// TLS; the certificate chains to the CA and names the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => return Err("sslmode=allow is not supported (use prefer)".into()),
            other => {
                return Err(format!(
                "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: whether TLS is tried and whether it is required.
    fn wire(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// The libpq TLS parameters of a URL's query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlTls {
    pub mode: Option<SslMode>,
    /// `sslrootcert`: a file, or `system` (the system's CA store).
    pub rootcert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// Takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of a URL's query: the URL left
/// for tokio-postgres, and the parameters.
pub fn split_tls_params(url: &str) -> Result<(String, UrlTls), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), UrlTls::default()));
    };
    let mut tls = UrlTls::default();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = || {
            percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| format!("{k}: not UTF-8"))
        };
        match k {
            "sslmode" => tls.mode = Some(SslMode::parse(&value()?)?),
            "sslrootcert" => tls.rootcert = Some(value()?),
            "sslcert" => tls.cert = Some(value()?),
            "sslkey" => tls.key = Some(value()?),
            _ => rest.push(pair),
        }
    }
    let stripped = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((stripped, tls))
}

/// A PostgreSQL URL (`postgres://` or `postgresql://`), checked at load. `Debug`, `Display`,
/// serialization and errors hide its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    text: String,
    /// `text` without the TLS parameters: what tokio-postgres parses.
    for_driver: String,
    tls: UrlTls,
}

impl DatabaseUrl {
    pub fn parse(s: &str) -> Result<DatabaseUrl, String> {
        let text = s.trim().to_string();
        let shown = redact(&text);
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err(format!(
                "must be a PostgreSQL URL starting with postgres:// or postgresql:// (got {shown:?})"
            ));
        }
        let (for_driver, tls) =
            split_tls_params(&text).map_err(|m| format!("{m} (in {shown:?})"))?;
        for_driver
            .parse::<tokio_postgres::Config>()
            .map_err(|_| format!("not a PostgreSQL URL: {shown:?}"))?;
        Ok(DatabaseUrl {
            text,
            for_driver,
            tls,
        })
    }

    /// The connection settings, `sslmode` included (checked at load, so this does not fail for
    /// a loaded URL).
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, String> {
        let mut c = self
            .for_driver
            .parse::<tokio_postgres::Config>()
            .map_err(|_| format!("not a PostgreSQL URL: {:?}", self.redacted()))?;
        c.ssl_mode(self.ssl_mode().wire());
        Ok(c)
    }

    /// The URL's `sslmode`, libpq's default (`prefer`) when it has none (`verify-full` with
    /// `sslrootcert=system`).
    pub fn ssl_mode(&self) -> SslMode {
        match (self.tls.mode, self.tls.rootcert.as_deref()) {
            (Some(m), _) => m,
            (None, Some("system")) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        }
    }

    pub fn tls_params(&self) -> &UrlTls {
        &self.tls
    }

    pub fn redacted(&self) -> String {
        redact(&self.text)
    }
}

fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparsable URL>".into(),
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)
            .map_err(|_| serde::de::Error::custom("must be a string (the value is not shown)"))?;
        DatabaseUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// Where the CA, the client certificate and its key come from, and how the server is checked:
/// `[database_tls]` and the URL's parameters combined, before any file is read. Errors name
/// the key (`database_tls.ca`) or `database_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TlsPlan {
    mode: SslMode,
    verify: Verify,
    /// (key, path); `None`: the system's CA store.
    ca: Option<(String, PathBuf)>,
    cert: Option<(String, PathBuf)>,
    key: Option<(String, PathBuf)>,
}

const URL_KEY: &str = "database_url";

fn plan(url: &DatabaseUrl, files: &TlsFiles) -> Result<TlsPlan, ConfigError> {
    let p = url.tls_params();
    let pick = |name: &str, file: &Option<PathBuf>, param: &str, given: &Option<String>| {
        let key = format!("database_tls.{name}");
        match (file, given) {
            (Some(_), Some(_)) => Err(invalid(
                &key,
                format!("also given as {param} in database_url; keep one"),
            )),
            (Some(f), None) => Ok(Some((key, f.clone()))),
            (None, Some(g)) => Ok(Some((
                format!("{URL_KEY} ({param})"),
                PathBuf::from(g.as_str()),
            ))),
            (None, None) => Ok(None),
        }
    };
    let system = p.rootcert.as_deref() == Some("system");
    let rootcert = if system { None } else { p.rootcert.clone() };
    let ca = pick("ca", &files.ca, "sslrootcert", &rootcert)?;
    let cert = pick("cert", &files.cert, "sslcert", &p.cert)?;
    let key = pick("key", &files.key, "sslkey", &p.key)?;
    let mode = url.ssl_mode();
    if system && mode != SslMode::VerifyFull {
        return Err(invalid(
            URL_KEY,
            format!(
                "sslrootcert=system needs sslmode=verify-full (got {})",
                mode.as_str()
            ),
        ));
    }
    if system && ca.is_some() {
        return Err(invalid(
            "database_tls.ca",
            "database_url has sslrootcert=system; keep one",
        ));
    }
    let verify = match mode {
        SslMode::Disable => {
            if let Some((k, _)) = ca.as_ref().or(cert.as_ref()).or(key.as_ref()) {
                return Err(invalid(
                    k,
                    "database_url has sslmode=disable: there is no TLS to use it for",
                ));
            }
            Verify::Nothing
        }
        SslMode::Prefer => {
            if let Some((k, _)) = &ca {
                return Err(invalid(
                    k,
                    format!(
                        "database_url has sslmode={} (libpq's default), which never verifies the server; set sslmode=verify-full (or verify-ca) to use a CA",
                        mode.as_str()
                    ),
                ));
            }
            Verify::Nothing
        }
        SslMode::Require if ca.is_none() => Verify::Nothing,
        SslMode::Require | SslMode::VerifyCa => Verify::Chain,
        SslMode::VerifyFull => Verify::ChainAndName,
    };
    Ok(TlsPlan {
        mode,
        verify,
        ca,
        cert,
        key,
    })
}

fn slot(o: &Option<(String, PathBuf)>) -> Option<(String, &std::path::Path)> {
    o.as_ref().map(|(k, p)| (k.clone(), p.as_path()))
}

/// Where PostgreSQL is and how to reach it: the URL's settings and the TLS they and
/// `[database_tls]` ask for, files read and checked. `Debug` shows no password and no key.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    mode: SslMode,
    tls: Arc<rustls::ClientConfig>,
    shown: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.shown)
            .field("sslmode", &self.mode.as_str())
            .finish()
    }
}

impl PgTarget {
    /// Reads the CA, the client certificate and its key (from `files`, or the URL's
    /// `sslrootcert` / `sslcert` / `sslkey`); errors name the key and the file.
    pub fn new(url: &DatabaseUrl, files: &TlsFiles) -> Result<PgTarget, ConfigError> {
        let plan = plan(url, files)?;
        let material = ClientTls::load(slot(&plan.ca), slot(&plan.cert), slot(&plan.key))?;
        let roots =
            match plan.verify {
                Verify::Nothing => None,
                _ => Some(material.roots().map_err(|m| {
                    invalid(URL_KEY, format!("sslmode={}: {m}", plan.mode.as_str()))
                })?),
            };
        let verifier = crate::tls::verifier(plan.verify, roots)
            .map_err(|m| invalid(URL_KEY, format!("sslmode={}: {m}", plan.mode.as_str())))?;
        let tls = material
            .client_config(verifier)
            .map_err(|e| invalid(URL_KEY, format!("TLS settings: {e}")))?;
        let config = url.pg_config().map_err(|m| invalid(URL_KEY, m))?;
        Ok(PgTarget {
            config,
            mode: plan.mode,
            tls: Arc::new(tls),
            shown: url.redacted(),
        })
    }

    /// A URL's own settings only (its TLS parameters, no `[database_tls]`).
    pub fn from_url(url: &DatabaseUrl) -> Result<PgTarget, ConfigError> {
        PgTarget::new(url, &TlsFiles::default())
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// The URL, password redacted (for messages).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A pool of at most `size` connections, each made (TLS included) within `timeout`; a
    /// caller waits at most `timeout` for one. Connects lazily.
    pub fn pool(&self, size: usize, timeout: Duration) -> Result<Pool, String> {
        let mut cfg = self.config.clone();
        cfg.connect_timeout(timeout);
        let mgr = Manager::from_config(
            cfg,
            RustlsConnect(self.tls.clone()),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(mgr)
            .max_size(size)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// An error with its causes (tokio-postgres's `Display` leaves out why a TLS handshake or a
/// connection failed: that is in `source()`).
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        cause = c.source();
    }
    text
}

/// tokio-postgres's TLS hook over tokio-rustls.
#[derive(Clone)]
pub struct RustlsConnect(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnectTo;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnectTo, std::io::Error> {
        // A Unix socket has no name ("" here) and never gets TLS: a bad name fails only when
        // a handshake is attempted.
        let name = ServerName::try_from(domain)
            .map(|n| n.to_owned())
            .map_err(|_| format!("{domain:?} is not a host name or address for TLS"));
        Ok(RustlsConnectTo {
            config: self.0.clone(),
            name,
        })
    }
}

pub struct RustlsConnectTo {
    config: Arc<rustls::ClientConfig>,
    name: Result<ServerName<'static>, String>,
}

impl<S> TlsConnect<S> for RustlsConnectTo
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self.name.map_err(std::io::Error::other)?;
            tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await
                .map(|s| RustlsStream(Box::new(s)))
        })
    }
}

pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    // SCRAM runs without channel binding (tokio-postgres's default `prefer` allows that).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_hidden() {
        let u = DatabaseUrl::parse("postgres://heady:hunter2@127.0.0.1:5432/heady").unwrap();
        let shown = format!("{u:?} {u} {}", serde_json::to_string(&u).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        assert!(u.pg_config().is_ok());
        let e = DatabaseUrl::parse("mysql://root:hunter2@x/db").unwrap_err();
        assert!(e.contains("postgres://") && !e.contains("hunter2"), "{e}");
        let e = DatabaseUrl::parse("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = DatabaseUrl::parse("postgres://u:hunter2@h/db?sslmode=allow").unwrap_err();
        assert!(e.contains("allow") && !e.contains("hunter2"), "{e}");
        let e = DatabaseUrl::parse("postgres://u:hunter2@h/db?sslmode=strict").unwrap_err();
        assert!(e.contains("verify-full") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_libpq_tls_parameters_leave_the_url_tokio_postgres_reads() {
        let u = DatabaseUrl::parse(
            "postgres://u:pw@db.internal:5433/heady?application_name=heady&sslmode=verify-full&sslrootcert=/etc/ca%20bundle.pem&sslcert=/c.pem&sslkey=/k.pem",
        )
        .unwrap();
        assert_eq!(u.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(
            u.tls_params(),
            &UrlTls {
                mode: Some(SslMode::VerifyFull),
                rootcert: Some("/etc/ca bundle.pem".into()),
                cert: Some("/c.pem".into()),
                key: Some("/k.pem".into()),
            }
        );
        let c = u.pg_config().unwrap();
        assert_eq!(c.get_application_name(), Some("heady"));
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(c.get_ports().to_vec(), vec![5433]);
        // No sslmode: libpq's prefer; verify-ca and require both require TLS on the wire.
        for (q, mode, wire) in [
            ("", SslMode::Prefer, tokio_postgres::config::SslMode::Prefer),
            (
                "?sslmode=disable",
                SslMode::Disable,
                tokio_postgres::config::SslMode::Disable,
            ),
            (
                "?sslmode=verify-ca",
                SslMode::VerifyCa,
                tokio_postgres::config::SslMode::Require,
            ),
            (
                "?sslrootcert=system",
                SslMode::VerifyFull,
                tokio_postgres::config::SslMode::Require,
            ),
        ] {
            let u = DatabaseUrl::parse(&format!("postgres://u@h/db{q}")).unwrap();
            assert_eq!(u.ssl_mode(), mode, "{q}");
            assert_eq!(u.pg_config().unwrap().get_ssl_mode(), wire, "{q}");
        }
    }

    fn plan_of(url: &str, files: TlsFiles) -> Result<TlsPlan, String> {
        plan(&DatabaseUrl::parse(url).unwrap(), &files).map_err(|e| e.to_string())
    }

    #[test]
    fn sslmode_decides_what_is_verified() {
        let ca = TlsFiles {
            ca: Some("/ca.pem".into()),
            ..Default::default()
        };
        let verify = |url: &str, files: TlsFiles| plan_of(url, files).map(|p| p.verify);
        assert_eq!(
            verify("postgres://h/d", TlsFiles::default()),
            Ok(Verify::Nothing)
        );
        assert_eq!(
            verify("postgres://h/d?sslmode=require", TlsFiles::default()),
            Ok(Verify::Nothing)
        );
        // libpq: require with a root certificate verifies as verify-ca.
        assert_eq!(
            verify("postgres://h/d?sslmode=require", ca.clone()),
            Ok(Verify::Chain)
        );
        assert_eq!(
            verify("postgres://h/d?sslmode=verify-ca", ca.clone()),
            Ok(Verify::Chain)
        );
        assert_eq!(
            verify("postgres://h/d?sslmode=verify-full", ca.clone()),
            Ok(Verify::ChainAndName)
        );
        assert_eq!(
            verify("postgres://h/d?sslmode=verify-full", TlsFiles::default()),
            Ok(Verify::ChainAndName)
        );
        let p = plan_of(
            "postgres://h/d?sslmode=verify-full&sslrootcert=/u.pem&sslkey=/k.pem",
            TlsFiles {
                cert: Some("/c.pem".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            p.ca,
            Some(("database_url (sslrootcert)".into(), "/u.pem".into()))
        );
        assert_eq!(p.cert, Some(("database_tls.cert".into(), "/c.pem".into())));
        assert_eq!(
            p.key,
            Some(("database_url (sslkey)".into(), "/k.pem".into()))
        );
    }

    #[test]
    fn tls_settings_that_cannot_apply_are_errors_naming_the_key() {
        let ca = TlsFiles {
            ca: Some("/ca.pem".into()),
            ..Default::default()
        };
        let e = plan_of("postgres://h/d", ca.clone()).unwrap_err();
        assert!(
            e.starts_with("database_tls.ca:") && e.contains("verify-full"),
            "{e}"
        );
        let e = plan_of("postgres://h/d?sslmode=disable", ca.clone()).unwrap_err();
        assert!(
            e.starts_with("database_tls.ca:") && e.contains("disable"),
            "{e}"
        );
        let e = plan_of(
            "postgres://h/d?sslmode=disable&sslcert=/c.pem&sslkey=/k.pem",
            TlsFiles::default(),
        )
        .unwrap_err();
        assert!(e.starts_with("database_url (sslcert):"), "{e}");
        let e = plan_of("postgres://h/d?sslmode=verify-full&sslrootcert=/x.pem", ca).unwrap_err();
        assert!(
            e.starts_with("database_tls.ca:") && e.contains("sslrootcert"),
            "{e}"
        );
        let e = plan_of(
            "postgres://h/d?sslmode=require&sslrootcert=system",
            TlsFiles::default(),
        )
        .unwrap_err();
        assert!(
            e.starts_with("database_url:") && e.contains("verify-full"),
            "{e}"
        );
    }

    #[test]
    fn debug_shows_neither_password_nor_key() {
        let u =
            DatabaseUrl::parse("postgres://heady:hunter2@127.0.0.1/heady?sslmode=require").unwrap();
        let t = PgTarget::from_url(&u).unwrap();
        let s = format!("{t:?}");
        assert!(!s.contains("hunter2") && s.contains("require"), "{s}");
    }
}
