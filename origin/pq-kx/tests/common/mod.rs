//! In-memory TLS 1.3 harness shared by the handshake tests, the interop tests and the
//! handshake benchmark: a self-signed certificate, client and server configs that always do a
//! full handshake, and a pump that moves records between the two connections through buffers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::NoServerSessionStorage;
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, NamedGroup, RootCertStore, ServerConfig,
    ServerConnection,
};

pub const SERVER_NAME: &str = "localhost";

/// A self-signed certificate for [`SERVER_NAME`] and its key.
pub struct TestPki {
    pub cert: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl TestPki {
    pub fn new() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
            .expect("generate test certificate");
        Self {
            cert: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
        }
    }

    /// TLS 1.3 only, trusting this certificate, no resumption: every handshake is a full one.
    pub fn client_config(&self, provider: CryptoProvider) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).expect("add test root");
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("provider supports TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }

    /// TLS 1.3 only, no session tickets or cache.
    pub fn server_config(&self, provider: CryptoProvider) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("provider supports TLS 1.3")
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .expect("test certificate and key match");
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Arc::new(config)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// `base` with its key exchange groups replaced by `groups` (e.g. a peer that offers only X25519).
pub fn with_groups(
    base: CryptoProvider,
    groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
) -> CryptoProvider {
    CryptoProvider {
        kx_groups: groups.to_vec(),
        ..base
    }
}

/// A completed in-memory handshake.
pub struct Handshake {
    pub client: ClientConnection,
    pub server: ServerConnection,
    /// Bytes on the wire of the client's first flight: its ClientHello record.
    pub client_hello_len: usize,
    /// How many flights the client sent: 2 for a plain TLS 1.3 handshake, 3 after a
    /// HelloRetryRequest.
    pub client_flights: usize,
}

impl Handshake {
    pub fn client_group(&self) -> Option<NamedGroup> {
        self.client
            .negotiated_key_exchange_group()
            .map(|g| g.name())
    }

    pub fn server_group(&self) -> Option<NamedGroup> {
        self.server
            .negotiated_key_exchange_group()
            .map(|g| g.name())
    }

    /// Sends `data` from the client, has the server write back what it read, and returns what
    /// the client received.
    pub fn echo(&mut self, data: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.client
            .writer()
            .write_all(data)
            .expect("buffer plaintext");
        transfer(&mut self.client, &mut self.server)?;
        let mut received = vec![0; data.len()];
        self.server
            .reader()
            .read_exact(&mut received)
            .expect("server reads the client's data");
        self.server
            .writer()
            .write_all(&received)
            .expect("buffer plaintext");
        transfer(&mut self.server, &mut self.client)?;
        let mut echoed = vec![0; data.len()];
        self.client
            .reader()
            .read_exact(&mut echoed)
            .expect("client reads the echo");
        Ok(echoed)
    }
}

/// Runs a full TLS 1.3 handshake between fresh connections made from the two configs.
pub fn handshake(
    client_config: &Arc<ClientConfig>,
    server_config: &Arc<ServerConfig>,
) -> Result<Handshake, rustls::Error> {
    let name = ServerName::try_from(SERVER_NAME).expect("valid name");
    let mut client = ClientConnection::new(client_config.clone(), name)?;
    let mut server = ServerConnection::new(server_config.clone())?;
    let mut client_hello_len = 0;
    let mut client_flights = 0;
    // Bounded: a TLS 1.3 handshake takes two round trips, three with a HelloRetryRequest.
    for _ in 0..8 {
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
        let sent = transfer(&mut client, &mut server)?;
        if sent > 0 {
            client_flights += 1;
            if client_hello_len == 0 {
                client_hello_len = sent;
            }
        }
        transfer(&mut server, &mut client)?;
    }
    if client.is_handshaking() || server.is_handshaking() {
        return Err(rustls::Error::General("handshake did not finish".into()));
    }
    Ok(Handshake {
        client,
        server,
        client_hello_len,
        client_flights,
    })
}

/// Moves every pending TLS record from `from` to `to` and processes it; returns the bytes moved.
pub fn transfer<A, B>(
    from: &mut ConnectionCommon<A>,
    to: &mut ConnectionCommon<B>,
) -> Result<usize, rustls::Error> {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).expect("write to a Vec");
    }
    let mut pending = &wire[..];
    while !pending.is_empty() {
        to.read_tls(&mut pending).expect("read from a slice");
        to.process_new_packets()?;
    }
    Ok(wire.len())
}
