//! The mesh's mutual TLS: TLS 1.3 only, the post-quantum hybrid X25519MLKEM768 preferred
//! (`crate::tls::provider`), the mesh CA as the only trust anchor both ways, a client
//! certificate required, and certificates whose serial is in `mesh.revoked` refused.

use super::config::MeshConfig;
use crate::tls::{certs, key, provider};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
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
        let revoked = cfg
            .revoked
            .iter()
            .filter_map(|s| super::ca::normalize_serial(s))
            .collect();
        let verifier: Arc<dyn ClientCertVerifier> = Arc::new(Revocable { inner, revoked });
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
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, node_key)
            .map_err(|e| anyhow::anyhow!("mesh.cert / mesh.key: {e}"))?;
        Ok(MeshTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// The CA's check, then the revocation list.
#[derive(Debug)]
struct Revocable {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: HashSet<String>,
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
        match super::ca::name_and_serial(end_entity) {
            Some((_, serial)) if self.revoked.contains(&serial) => Err(
                rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked),
            ),
            Some(_) => Ok(ok),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
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
