//! TLS: the one crypto provider every TLS configuration of the daemon uses (ring's primitives
//! with the post-quantum hybrid X25519MLKEM768 preferred, from heady-pq-kx); the origin's
//! clients (Redis, PostgreSQL): the PEM files of a `[*_tls]` section read and checked at start,
//! and the server verifiers PostgreSQL's `sslmode` needs; the public listener's server side
//! (`[tls]`: so cloudflared can reach the origin over TLS and check it against its `caPool`).
//! The mesh's mutual TLS is in `mesh::tls`.
//!
//! Every rustls config here is built from [`crypto_provider`], never from a process-wide
//! default, so swapping the provider is a change to that one function. The redis crate builds
//! its own config from the process default: [`install_process_default`] makes ours that default.

use crate::settings::{invalid, ConfigError, KeyDoc, Ty};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The crypto every TLS configuration of the origin uses: ring's primitives, with the
/// post-quantum hybrid X25519MLKEM768 key exchange offered first (preferred), then X25519,
/// P-256, P-384.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(heady_pq_kx::provider())
}

/// Makes [`crypto_provider`] the process default, for libraries that take no provider (the
/// redis crate). A default installed earlier is kept.
pub fn install_process_default() {
    if CryptoProvider::get_default().is_none() {
        let _ = Arc::unwrap_or_clone(crypto_provider()).install_default();
    }
}

/// A `[redis_tls]` or `[database_tls]` section: PEM files, each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFiles {
    /// CA bundle the server's certificate must chain to; unset: the system's CA store.
    pub ca: Option<PathBuf>,
    /// Client certificate (chain), presented when the server asks for one.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// The first key of the section that is set (`section.ca`, `.cert`, `.key`), for errors.
    pub fn first_set(&self, section: &str) -> Option<String> {
        [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)]
            .into_iter()
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| format!("{section}.{k}"))
    }

    /// Reads and checks the files: each readable and PEM, the key matching the certificate, a
    /// certificate only with its key. Errors name the key (`section.cert`) and the file.
    pub fn load(&self, section: &str) -> Result<ClientTls, ConfigError> {
        let name = |k: &str| format!("{section}.{k}");
        ClientTls::load(
            self.ca.as_deref().map(|p| (name("ca"), p)),
            self.cert.as_deref().map(|p| (name("cert"), p)),
            self.key.as_deref().map(|p| (name("key"), p)),
        )
    }
}

/// What a `[*_tls]` section's files hold, checked. `Debug` never shows the key.
#[derive(Clone)]
pub struct ClientTls {
    /// The CA bundle (PEM as read, and parsed); `None`: the system's CA store.
    ca: Option<(Vec<u8>, Arc<RootCertStore>)>,
    identity: Option<Identity>,
}

#[derive(Clone)]
struct Identity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_certs", &self.ca.as_ref().map(|(_, r)| r.len()))
            .field(
                "client_cert_chain",
                &self.identity.as_ref().map(|i| i.chain.len()),
            )
            .finish()
    }
}

/// A file's bytes; the error names `key` and the path. A value that holds PEM text instead of a
/// path (a secret given as `HEADY_..._FILE`) is refused without being shown.
fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let shown = path.to_string_lossy();
    if shown.contains("-----BEGIN") || shown.contains('\n') {
        return Err(invalid(
            key,
            "must be the path of a PEM file (the value holds PEM text; it is not shown)",
        ));
    }
    std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {shown}: {e}")))
}

impl ClientTls {
    /// `(key name, path)` of the CA bundle, the client certificate and its key.
    pub fn load(
        ca: Option<(String, &Path)>,
        cert: Option<(String, &Path)>,
        key: Option<(String, &Path)>,
    ) -> Result<ClientTls, ConfigError> {
        let ca = match ca {
            None => None,
            Some((k, path)) => {
                let pem = read(&k, path)?;
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| {
                        invalid(
                            &k,
                            format!("{}: not a PEM certificate: {e}", path.display()),
                        )
                    })?;
                    roots.add(c).map_err(|e| {
                        invalid(
                            &k,
                            format!("{}: not a usable CA certificate: {e}", path.display()),
                        )
                    })?;
                }
                if roots.is_empty() {
                    return Err(invalid(
                        &k,
                        format!("{} holds no PEM certificate", path.display()),
                    ));
                }
                Some((pem, Arc::new(roots)))
            }
        };
        let identity = match (cert, key) {
            (None, None) => None,
            (Some((k, path)), None) => {
                return Err(invalid(
                    &k,
                    format!(
                        "{}: a client certificate needs its private key too",
                        path.display()
                    ),
                ))
            }
            (None, Some((k, path))) => {
                return Err(invalid(
                    &k,
                    format!(
                        "{}: a private key needs its client certificate too",
                        path.display()
                    ),
                ))
            }
            (Some((ck, cpath)), Some((kk, kpath))) => {
                let cert_pem = read(&ck, cpath)?;
                let chain = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        invalid(
                            &ck,
                            format!("{}: not a PEM certificate: {e}", cpath.display()),
                        )
                    })?;
                if chain.is_empty() {
                    return Err(invalid(
                        &ck,
                        format!("{} holds no PEM certificate", cpath.display()),
                    ));
                }
                let key_pem = read(&kk, kpath)?;
                // The parser's message only: nothing of the key's text.
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                    invalid(
                        &kk,
                        format!(
                            "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                            kpath.display()
                        ),
                    )
                })?;
                let identity = Identity {
                    cert_pem,
                    key_pem,
                    chain,
                    key: Arc::new(key),
                };
                // rustls checks that the key is usable and belongs to the certificate.
                client_config(Arc::new(NoVerification::new()), Some(&identity)).map_err(|e| {
                    let why = match e {
                        rustls::Error::InconsistentKeys(_) => format!(
                            "{} does not match the certificate in {}",
                            kpath.display(),
                            cpath.display()
                        ),
                        e => format!("{}: unusable key: {e}", kpath.display()),
                    };
                    invalid(&kk, why)
                })?;
                Some(identity)
            }
        };
        Ok(ClientTls { ca, identity })
    }

    pub fn has_ca(&self) -> bool {
        self.ca.is_some()
    }

    pub fn has_client_cert(&self) -> bool {
        self.identity.is_some()
    }

    /// The CA bundle as read (for libraries that take PEM).
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca.as_ref().map(|(pem, _)| pem.as_slice())
    }

    /// The client certificate and key as read (for libraries that take PEM).
    pub fn client_pem(&self) -> Option<(&[u8], &[u8])> {
        self.identity
            .as_ref()
            .map(|i| (i.cert_pem.as_slice(), i.key_pem.as_slice()))
    }

    /// The CA bundle's roots, or the system's CA store when none was given.
    pub fn roots(&self) -> Result<Arc<RootCertStore>, String> {
        match &self.ca {
            Some((_, roots)) => Ok(roots.clone()),
            None => system_roots(),
        }
    }

    /// A rustls config: `verifier` checks the server, the client certificate (if any) is
    /// offered when the server asks.
    pub fn client_config(
        &self,
        verifier: Arc<dyn ServerCertVerifier>,
    ) -> Result<ClientConfig, rustls::Error> {
        client_config(verifier, self.identity.as_ref())
    }
}

fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<&Identity>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match identity {
        Some(i) => builder.with_client_auth_cert(i.chain.clone(), i.key.clone_key()),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The system's CA store (what `SSL_CERT_FILE` / `SSL_CERT_DIR` or the distribution's bundle
/// hold).
pub fn system_roots() -> Result<Arc<RootCertStore>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "it is empty".into());
        return Err(format!("no CA certificate in the system's CA store: {why}"));
    }
    Ok(Arc::new(roots))
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Not at all (the handshake's signatures still are): encryption against a passive
    /// listener only.
    Nothing,
    /// The chain to a trusted CA, not the name.
    Chain,
    /// The chain and that the certificate names the host.
    ChainAndName,
}

/// The verifier for `verify`, trusting `roots`.
pub fn verifier(
    verify: Verify,
    roots: Option<Arc<RootCertStore>>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let need_roots = || roots.clone().ok_or("no CA certificates to verify against");
    Ok(match verify {
        Verify::Nothing => Arc::new(NoVerification::new()),
        Verify::Chain => Arc::new(ChainOnly {
            roots: need_roots()?,
            algorithms: crypto_provider().signature_verification_algorithms,
        }),
        Verify::ChainAndName => rustls::client::WebPkiServerVerifier::builder_with_provider(
            need_roots()?,
            crypto_provider(),
        )
        .build()
        .map_err(|e| e.to_string())? as Arc<dyn ServerCertVerifier>,
    })
}

/// Accepts any certificate; checks the handshake signatures (libpq's `prefer` and `require`).
#[derive(Debug)]
struct NoVerification {
    algorithms: WebPkiSupportedAlgorithms,
}

impl NoVerification {
    fn new() -> NoVerification {
        NoVerification {
            algorithms: crypto_provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The chain to a trusted CA, whatever name the certificate carries (libpq's `verify-ca`).
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
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
        let mut cfg = rustls::ServerConfig::builder_with_provider(crypto_provider())
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
