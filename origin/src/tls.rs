//! TLS: the one crypto provider every TLS configuration of the daemon uses, certificates and
//! keys read from PEM files, and the public listener's server side (`[tls]`: so cloudflared
//! can reach the origin over TLS and check it against its `caPool`). The mesh listener's
//! mutual TLS is in `mesh::tls`.

use crate::settings::{invalid, ConfigError, KeyDoc, Ty};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The provider of every TLS configuration here: ring's primitives, with the post-quantum
/// hybrid X25519MLKEM768 key exchange offered first (preferred), then X25519, P-256, P-384.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(heady_pq_kx::provider())
}

/// Every certificate in a PEM file (a chain: the leaf first). An error names the file.
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {}", path.display(), pem_error(e)))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1). The error names the file, never
/// its content.
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {}", path.display(), pem_error(e)))
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(e) => e.to_string(),
        E::NoItemsFound => "no PEM item of the expected kind in the file".into(),
        other => format!("not a valid PEM file ({other:?})"),
    }
}

/// `[tls]`: the public listener serves HTTPS when both are set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM: the server certificate, then its chain.
    pub cert: Option<PathBuf>,
    /// PEM: its private key.
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(invalid("tls.key", "needed with tls.cert")),
            (None, Some(_)) => Err(invalid("tls.cert", "needed with tls.key")),
            _ => Ok(()),
        }
    }

    /// The server side of the public listener: TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN.
    /// `None` when `[tls]` is not set. Errors name the file.
    pub fn server_config(&self) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
        let (Some(cert), Some(key_path)) = (&self.cert, &self.key) else {
            return Ok(None);
        };
        let chain = certs(cert).map_err(|e| anyhow::anyhow!("tls.cert: {e}"))?;
        let key = key(key_path).map_err(|e| anyhow::anyhow!("tls.key: {e}"))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("tls: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                anyhow::anyhow!(
                    "tls.cert / tls.key ({}, {}): {e}",
                    cert.display(),
                    key_path.display()
                )
            })?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(cfg)))
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("tls.cert", Ty::Str, "PEM file: the public listener's server certificate and chain; set with `tls.key`: `listen` serves HTTPS (TLS 1.2/1.3, HTTP/2 and HTTP/1.1), e.g. for cloudflared's `originRequest.caPool`"),
    KeyDoc::new("tls.key", Ty::Str, "PEM file: its private key"),
];
