//! Post-quantum hybrid tunnel sessions, the origin's side: answering the edge's handshake
//! (`heady_shared::tunnel::handshake`) with a welcome that carries a session ticket, and
//! opening those tickets on every later request (`ticket`). Sessions need no shared storage:
//! any origin holding the ticket key opens a ticket another origin issued. The replay check
//! of hellos is `EdgeVerifier`'s nonce store.

pub mod config;
pub mod ticket;

use config::TunnelConfig;
use heady_shared::tunnel::{
    accept_hello, Fingerprint, HandshakeError, Identity, VerifiedHello, WelcomeRandomness,
};
use rand::RngCore;
use ticket::{Opened, TicketError, TicketKey};

/// Label of the ticket key derived from the origin's identity when none is configured.
const TICKET_KEY_LABEL: &[u8] = b"heady-tunnel-v2 ticket key";

/// Why a handshake was refused. Each has its own error code.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeRefusal {
    #[error(
        "this origin has no tunnel identity (defense.tunnel.identity): it cannot open sessions"
    )]
    NotConfigured,
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    #[error("replayed handshake: hello nonce {0} was already answered")]
    Replayed(String),
}

/// This origin's identity, the pinned edge identities, and the ticket keys.
pub struct TunnelSessions {
    identity: Identity,
    edges: Vec<Fingerprint>,
    session_secs: u64,
    ticket_key: TicketKey,
    max_skew_secs: u64,
}

impl std::fmt::Debug for TunnelSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelSessions")
            .field("identity", &self.identity.fingerprint())
            .field("edges", &self.edges)
            .field("session_secs", &self.session_secs)
            .finish_non_exhaustive()
    }
}

impl TunnelSessions {
    /// `None` when no identity is configured. The configuration was validated at load.
    pub fn new(cfg: &TunnelConfig, max_skew_secs: u64) -> anyhow::Result<Option<TunnelSessions>> {
        let Some(secret) = &cfg.identity else {
            return Ok(None);
        };
        let identity = Identity::from_secret_text(secret.expose())
            .map_err(|e| anyhow::anyhow!("defense.tunnel.identity: {e}"))?;
        let edges = cfg
            .edge_identities
            .iter()
            .map(|f| f.parse::<Fingerprint>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("defense.tunnel.edge_identities: {e}"))?;
        let ticket_key =
            match &cfg.ticket_key {
                Some(k) => TicketKey(config::ticket_key_bytes(k).ok_or_else(|| {
                    anyhow::anyhow!("defense.tunnel.ticket_key: not 64 hex digits")
                })?),
                None => TicketKey(identity.derive_secret(TICKET_KEY_LABEL)),
            };
        Ok(Some(TunnelSessions {
            identity,
            edges,
            session_secs: cfg.session_secs,
            ticket_key,
            max_skew_secs,
        }))
    }

    /// This origin's identity fingerprint (what the edge pins).
    pub fn fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint()
    }

    /// Is this edge identity pinned here?
    pub fn pins(&self, edge: &Fingerprint) -> bool {
        self.edges.contains(edge)
    }

    /// Parses and verifies a hello (identity pinned, signature, freshness).
    pub fn accept(&self, hello: &[u8], now_secs: u64) -> Result<VerifiedHello, HandshakeRefusal> {
        Ok(accept_hello(
            hello,
            &self.edges,
            now_secs,
            self.max_skew_secs,
        )?)
    }

    /// The welcome for a verified, first-seen hello: a session of `session_secs`.
    pub fn welcome(
        &self,
        hello: &VerifiedHello,
        now_secs: u64,
    ) -> Result<Vec<u8>, HandshakeRefusal> {
        let mut rng = rand::rng();
        let mut random = [0u8; WelcomeRandomness::BYTES];
        rng.fill_bytes(&mut random);
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let expires_at = now_secs + self.session_secs;
        let edge = hello.edge;
        let (welcome, _) = hello.respond(
            &self.identity,
            expires_at,
            &WelcomeRandomness::from_bytes(&random),
            |keys| ticket::seal(&self.ticket_key, nonce, keys, expires_at, edge),
        )?;
        Ok(welcome)
    }

    /// Opens the ticket a request carries (`x-heady-session`, hex).
    pub fn open(&self, ticket_hex: Option<&str>, now_secs: u64) -> Result<Opened, TicketError> {
        let text = ticket_hex.ok_or(TicketError::Malformed("x-heady-session is missing"))?;
        let bytes = heady_shared::wire::hex_decode(text.trim())
            .ok_or(TicketError::Malformed("x-heady-session is not hex"))?;
        ticket::open(std::slice::from_ref(&self.ticket_key), &bytes, now_secs)
    }
}
