//! Verifying requests the edge Worker tunnelled to us (`heady_shared::wire`): signature over
//! the canonical request, freshness, and a nonce never seen before. Only a verified request's
//! subject, tier, clearance and client IP are believed, and the subject only once it parses as
//! a `heady_shared::Subject` (re-normalised: an IPv6 address counts as its /64).
//!
//! Two schemes, chosen by the signature header and allowed by `defense.tunnel_auth`: the
//! shared-secret HMAC (`hmac-sha256`, refused under `pq-hybrid`: no downgrade) and a MAC under
//! a post-quantum hybrid session (`session-hmac-sha256`, the session's ticket in
//! `x-heady-session`, opened by `tunnel::TunnelSessions`). The same nonce store
//! ([`super::nonces`], Redis when configured) refuses a replayed request and a replayed
//! handshake hello.

use super::nonces::NonceStore;
use super::tunnel::{HandshakeRefusal, TunnelSessions};
use heady_shared::tunnel::TunnelAuth;
use heady_shared::wire::{self, Envelope, HmacSha256, RequestLine, SessionMac, WireError};
use heady_shared::{Subject, SubjectError};
use std::sync::Arc;

pub struct EdgeVerifier {
    policy: TunnelAuth,
    hmac: Option<HmacSha256>,
    sessions: Option<TunnelSessions>,
    max_skew_secs: u64,
    nonces: Arc<NonceStore>,
}

/// Why a tunnelled request was refused (401 to the caller).
#[derive(Debug, thiserror::Error)]
pub enum EdgeRefusal {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("replayed request: nonce {0:?} was already used")]
    Replay(String),
    #[error("x-heady-client-ip {0:?} is not an IP address")]
    ClientIp(String),
    #[error("x-heady-subject: {0}")]
    Subject(#[from] SubjectError),
    #[error("defense.tunnel_auth is \"pq-hybrid\": a request signed with the shared HMAC key is refused; the edge must open a tunnel session")]
    Downgrade,
    #[error("the request is signed with {0} but this origin has no {1}")]
    NotConfigured(&'static str, &'static str),
    #[error("{0}")]
    Session(#[from] super::tunnel::ticket::TicketError),
    #[error("the session's edge identity {0} is no longer pinned here")]
    Unpinned(heady_shared::tunnel::Fingerprint),
}

/// What a verified request vouches for.
#[derive(Debug)]
pub struct Vouched {
    pub envelope: Envelope,
    pub client_ip: std::net::IpAddr,
    /// `envelope.subject`, parsed and normalised.
    pub subject: Subject,
}

impl EdgeVerifier {
    pub fn new(
        policy: TunnelAuth,
        hmac: Option<HmacSha256>,
        sessions: Option<TunnelSessions>,
        max_skew_secs: u64,
        nonces: Arc<NonceStore>,
    ) -> EdgeVerifier {
        EdgeVerifier {
            policy,
            hmac,
            sessions,
            max_skew_secs,
            nonces,
        }
    }

    /// Where nonces are kept now: `redis`, `degraded (in-process)`, `in-process`, or
    /// `no edge key` when neither an HMAC key nor a tunnel identity is configured.
    pub fn store(&self) -> &'static str {
        if self.hmac.is_none() && self.sessions.is_none() {
            return "no edge key";
        }
        self.nonces.store()
    }

    pub fn policy(&self) -> TunnelAuth {
        self.policy
    }

    pub fn sessions(&self) -> Option<&TunnelSessions> {
        self.sessions.as_ref()
    }

    /// How long a nonce must be remembered: any timestamp older than that is stale anyway.
    fn nonce_ttl_secs(&self) -> u64 {
        2 * self.max_skew_secs + 1
    }

    /// Verifies a request that carries an edge signature.
    pub async fn verify(
        &self,
        method: &str,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
        now_secs: u64,
    ) -> Result<Vouched, EdgeRefusal> {
        let line = RequestLine {
            method,
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            body_sha256: wire::body_sha256(body),
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let scheme = header(wire::header::SIGNATURE)
            .and_then(wire::scheme_of)
            .unwrap_or_default();
        let envelope = if scheme == SessionMac::SCHEME {
            let sessions = self.sessions.as_ref().ok_or(EdgeRefusal::NotConfigured(
                "a session",
                "tunnel identity (defense.tunnel.identity)",
            ))?;
            let opened = sessions.open(header(wire::header::SESSION), now_secs)?;
            if !sessions.pins(&opened.edge) {
                return Err(EdgeRefusal::Unpinned(opened.edge));
            }
            let mac = SessionMac::new(opened.keys.mac_key, opened.keys.id);
            wire::verify(&mac, &line, header, now_secs, self.max_skew_secs)?
        } else if scheme == HmacSha256::SCHEME && self.policy == TunnelAuth::PqHybrid {
            return Err(EdgeRefusal::Downgrade);
        } else {
            match &self.hmac {
                Some(hmac) => wire::verify(hmac, &line, header, now_secs, self.max_skew_secs)?,
                None if scheme == HmacSha256::SCHEME => {
                    return Err(EdgeRefusal::NotConfigured(
                        "the shared HMAC key",
                        "tunnel key (defense.edge_key / HEADY_TUNNEL_KEY)",
                    ))
                }
                None => {
                    return Err(WireError::WrongScheme {
                        found: scheme.to_owned(),
                        expected: SessionMac::SCHEME,
                    }
                    .into())
                }
            }
        };
        let client_ip = envelope
            .client_ip
            .parse()
            .map_err(|_| EdgeRefusal::ClientIp(envelope.client_ip.clone()))?;
        let subject = envelope.subject.parse::<Subject>()?;
        if !self.first_use(&envelope.nonce, now_secs).await {
            return Err(EdgeRefusal::Replay(envelope.nonce));
        }
        Ok(Vouched {
            envelope,
            client_ip,
            subject,
        })
    }

    /// Answers a handshake hello with a welcome (`POST /api/tunnel/handshake`). A hello is
    /// answered once across every origin sharing the nonce store.
    pub async fn handshake(
        &self,
        hello: &[u8],
        now_secs: u64,
    ) -> Result<Vec<u8>, HandshakeRefusal> {
        let sessions = self
            .sessions
            .as_ref()
            .ok_or(HandshakeRefusal::NotConfigured)?;
        let verified = sessions.accept(hello, now_secs)?;
        if !self
            .first_use(&format!("hs-{}", verified.nonce_hex()), now_secs)
            .await
        {
            return Err(HandshakeRefusal::Replayed(verified.nonce_hex()));
        }
        sessions.welcome(&verified, now_secs)
    }

    /// Records the nonce; `false` if it was seen before.
    async fn first_use(&self, nonce: &str, now_secs: u64) -> bool {
        self.nonces
            .first_use(nonce, self.nonce_ttl_secs(), now_secs)
            .await
    }
}
