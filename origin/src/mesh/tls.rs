//! The mesh's mutual TLS: TLS 1.3 only, the post-quantum hybrid X25519MLKEM768 preferred
//! (`crate::tls::crypto_provider`), the mesh CA as the only trust anchor both ways, a client
//! certificate required, and certificates whose serial is in `mesh.revoked` refused.

use super::config::MeshConfig;
use crate::tls::{certs, crypto_provider as provider, key};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use std::collections::HashSet;
use std::sync::Arc;

/// Both sides of a node's mesh TLS.
#[derive(Clone)]
pub struct MeshTls {
    /// For the mesh listener.
    pub server: Arc<rustls::ServerConfig>,
    /// For calls to peers (and the CLI's `--remote`).
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshTls")
    }
}

/// The mesh CA as a root store.
fn roots(cfg: &MeshConfig) -> anyhow::Result<RootCertStore> {
    let path = cfg
        .ca
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("mesh.ca is not set"))?;
    let mut roots = RootCertStore::empty();
    for c in certs(path).map_err(|e| anyhow::anyhow!("mesh.ca: {e}"))? {
        roots
            .add(c)
            .map_err(|e| anyhow::anyhow!("mesh.ca: {}: {e}", path.display()))?;
    }
    Ok(roots)
}

impl MeshTls {
    /// Reads the CA, the node's certificate and key (errors name the key and the file).
    pub fn load(cfg: &MeshConfig) -> anyhow::Result<MeshTls> {
        let (Some(cert_path), Some(key_path)) = (&cfg.cert, &cfg.key) else {
            anyhow::bail!("mesh.cert and mesh.key are needed for the mesh");
        };
        let roots = Arc::new(roots(cfg)?);
        let chain = certs(cert_path).map_err(|e| anyhow::anyhow!("mesh.cert: {e}"))?;
        let node_key = key(key_path).map_err(|e| anyhow::anyhow!("mesh.key: {e}"))?;
        let inner = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| anyhow::anyhow!("mesh.ca: {e}"))?;
        let revoked: Arc<HashSet<String>> = Arc::new(
            cfg.revoked
                .iter()
                .filter_map(|s| super::ca::normalize_serial(s))
                .collect(),
        );
        // This node's own certificate must be one its peers accept: of the mesh CA, current,
        // for both roles, not revoked.
        inner
            .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .map_err(|e| {
                anyhow::anyhow!(
                    "mesh.cert: {} is not valid under mesh.ca ({}): {e}",
                    cert_path.display(),
                    cfg.ca
                        .as_deref()
                        .unwrap_or(std::path::Path::new(""))
                        .display()
                )
            })?;
        if let Some((_, serial)) = super::ca::name_and_serial(&chain[0]) {
            if revoked.contains(&serial) {
                anyhow::bail!(
                    "mesh.cert: {} has serial {serial}, which mesh.revoked lists",
                    cert_path.display()
                );
            }
        }
        let verifier: Arc<dyn ClientCertVerifier> = Arc::new(Revocable {
            inner,
            revoked: revoked.clone(),
        });
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), node_key.clone_key())
            .map_err(|e| {
                anyhow::anyhow!(
                    "mesh.cert / mesh.key ({}, {}): {e}",
                    cert_path.display(),
                    key_path.display()
                )
            })?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // No resumption: every connection presents a certificate and is checked in full (a
        // resumed session would carry a certificate that has since expired or been revoked).
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        let server_verifier: Arc<dyn ServerCertVerifier> = Arc::new(RevocableServer {
            inner: WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| anyhow::anyhow!("mesh.ca: {e}"))?,
            revoked,
        });
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(server_verifier)
            .with_client_auth_cert(chain, node_key)
            .map_err(|e| anyhow::anyhow!("mesh.cert / mesh.key: {e}"))?;
        client.resumption = rustls::client::Resumption::disabled();
        Ok(MeshTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// Refused when `mesh.revoked` lists the certificate's serial (or it cannot be read).
fn check_revoked(
    revoked: &HashSet<String>,
    end_entity: &CertificateDer<'_>,
) -> Result<(), rustls::Error> {
    match super::ca::name_and_serial(end_entity) {
        Some((_, serial)) if revoked.contains(&serial) => Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Revoked,
        )),
        Some(_) => Ok(()),
        None => Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        )),
    }
}

/// The CA's check of a client, then the revocation list.
#[derive(Debug)]
struct Revocable {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<HashSet<String>>,
}

/// The CA's check of a server (its name too), then the revocation list: a peer whose key
/// leaked and was revoked cannot pose as that peer either.
#[derive(Debug)]
struct RevocableServer {
    inner: Arc<WebPkiServerVerifier>,
    revoked: Arc<HashSet<String>>,
}

impl ServerCertVerifier for RevocableServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        check_revoked(&self.revoked, end_entity)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl ClientCertVerifier for Revocable {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_revoked(&self.revoked, end_entity)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// When this node's certificate expires (Unix seconds).
pub fn own_expiry(cfg: &MeshConfig) -> anyhow::Result<i64> {
    let path = cfg
        .cert
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("mesh.cert is not set"))?;
    let chain = certs(path).map_err(|e| anyhow::anyhow!("mesh.cert: {e}"))?;
    super::ca::not_after(&chain[0])
        .ok_or_else(|| anyhow::anyhow!("mesh.cert: {}: no readable expiry", path.display()))
}

/// This node's name: the CN of `mesh.cert`.
pub fn own_name(cfg: &MeshConfig) -> anyhow::Result<String> {
    let path = cfg
        .cert
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("mesh.cert is not set"))?;
    let chain = certs(path).map_err(|e| anyhow::anyhow!("mesh.cert: {e}"))?;
    super::ca::name_and_serial(&chain[0])
        .map(|(name, _)| name)
        .ok_or_else(|| anyhow::anyhow!("mesh.cert: {}: no readable name (CN)", path.display()))
}
