//! The session handshake, sans-IO: the edge (initiator) and the origin (responder) exchange
//! one message each; time and randomness are arguments.
//!
//! ```text
//! hello   = "heady-tunnel-v2 hello\n" || timestamp (u64 BE) || nonce (16)
//!           || edge public identity (1984) || X-Wing encapsulation key (1216)
//!           || composite signature (3373) by the edge over everything before it
//! welcome = "heady-tunnel-v2 welcome\n" || expires_at (u64 BE)
//!           || origin public identity (1984) || X-Wing ciphertext (1120)
//!           || ticket length (u16 BE) || ticket
//!           || composite signature (3373) by the origin over key_transcript || ticket
//! key_transcript = SHA-256("heady-tunnel-v2 key\n" || hello || expires_at || origin public identity || ciphertext)
//! session key    = HKDF-SHA256(salt = key_transcript, ikm = X-Wing shared secret, info = "heady-tunnel-v2 request mac key")
//! session id     = HKDF-SHA256(same, info = "heady-tunnel-v2 session id"), 16 bytes
//! ```
//!
//! The edge's signature binds its fresh X-Wing key to its identity, a timestamp and a nonce
//! (the origin refuses a stale or repeated one); the origin's signature covers the whole
//! exchange, so each side knows who holds the session key. X-Wing
//! (draft-connolly-cfrg-xwing-kem) is X25519 and ML-KEM-768 under the draft's SHA3-256
//! combiner: the session key stays secret while either one holds. The ticket is opaque to the
//! edge: the origin seals the session key in it, and every origin sharing the ticket key can
//! open it.

use super::identity::{
    Fingerprint, Identity, IdentityError, PublicIdentity, COMPOSITE_SIGNATURE_BYTES,
    PUBLIC_IDENTITY_BYTES,
};
use crate::wire::{check_freshness, hex_encode, WireError};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use std::fmt;
use x_wing::{Decapsulator as _, KeyExport as _, TryDecapsulate as _};

const HELLO_TAG: &[u8] = b"heady-tunnel-v2 hello\n";
const WELCOME_TAG: &[u8] = b"heady-tunnel-v2 welcome\n";
const KEY_LABEL: &[u8] = b"heady-tunnel-v2 key\n";
const HELLO_CONTEXT: &[u8] = b"heady-tunnel-v2 edge hello";
const WELCOME_CONTEXT: &[u8] = b"heady-tunnel-v2 origin welcome";
const MAC_KEY_INFO: &[u8] = b"heady-tunnel-v2 request mac key";
const SESSION_ID_INFO: &[u8] = b"heady-tunnel-v2 session id";

/// X-Wing encapsulation key, ciphertext and shared secret sizes (draft-connolly-cfrg-xwing-kem).
pub const XWING_ENCAPSULATION_KEY_BYTES: usize = x_wing::ENCAPSULATION_KEY_SIZE;
pub const XWING_CIPHERTEXT_BYTES: usize = x_wing::CIPHERTEXT_SIZE;
const NONCE_BYTES: usize = 16;
/// The hello's size: every field is fixed.
pub const HELLO_BYTES: usize = HELLO_TAG.len()
    + 8
    + NONCE_BYTES
    + PUBLIC_IDENTITY_BYTES
    + XWING_ENCAPSULATION_KEY_BYTES
    + COMPOSITE_SIGNATURE_BYTES;
/// Largest ticket a welcome may carry.
pub const MAX_TICKET_BYTES: usize = 1024;

/// Why a handshake failed. Each maps to its own error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("malformed handshake message: {0}")]
    Malformed(String),
    #[error("the tunnel identity {0} is not pinned here")]
    UnknownIdentity(Fingerprint),
    #[error("the handshake transcript does not verify: {0}")]
    Transcript(IdentityError),
    #[error("handshake timestamp: {0}")]
    Stale(WireError),
    #[error("the X-Wing ciphertext does not decapsulate")]
    Decapsulation,
    #[error("signing the transcript: {0}")]
    Signing(IdentityError),
}

/// Random bytes the edge draws for one hello.
pub struct HelloRandomness {
    /// The ephemeral X-Wing decapsulation key.
    pub kem_seed: [u8; 32],
    pub nonce: [u8; NONCE_BYTES],
    /// ML-DSA-65's hedging randomness.
    pub signing: [u8; 32],
}

impl HelloRandomness {
    pub const BYTES: usize = 32 + NONCE_BYTES + 32;

    pub fn from_bytes(bytes: &[u8; Self::BYTES]) -> HelloRandomness {
        let mut r = HelloRandomness {
            kem_seed: [0; 32],
            nonce: [0; NONCE_BYTES],
            signing: [0; 32],
        };
        r.kem_seed.copy_from_slice(&bytes[..32]);
        r.nonce.copy_from_slice(&bytes[32..32 + NONCE_BYTES]);
        r.signing.copy_from_slice(&bytes[32 + NONCE_BYTES..]);
        r
    }
}

/// Random bytes the origin draws for one welcome.
pub struct WelcomeRandomness {
    /// X-Wing's encapsulation randomness (ML-KEM's 32 bytes, then X25519's).
    pub encapsulation: [u8; 64],
    pub signing: [u8; 32],
}

impl WelcomeRandomness {
    pub const BYTES: usize = 64 + 32;

    pub fn from_bytes(bytes: &[u8; Self::BYTES]) -> WelcomeRandomness {
        let mut r = WelcomeRandomness {
            encapsulation: [0; 64],
            signing: [0; 32],
        };
        r.encapsulation.copy_from_slice(&bytes[..64]);
        r.signing.copy_from_slice(&bytes[64..]);
        r
    }
}

/// A session's MAC key and id, derived from the X-Wing shared secret and the key transcript.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    pub mac_key: [u8; 32],
    pub id: [u8; 16],
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SessionKeys {{ id: {}, mac_key: <redacted> }}",
            hex_encode(&self.id)
        )
    }
}

/// HKDF-SHA256 with the key transcript hash as salt and the shared secret as input keying
/// material.
pub fn derive_session_keys(shared_secret: &[u8; 32], key_transcript: &[u8; 32]) -> SessionKeys {
    let hk = Hkdf::<Sha256>::new(Some(key_transcript), shared_secret);
    let mut keys = SessionKeys {
        mac_key: [0; 32],
        id: [0; 16],
    };
    // 32 and 16 bytes are far below HKDF-SHA256's 8160-byte limit.
    let _ = hk.expand(MAC_KEY_INFO, &mut keys.mac_key);
    let _ = hk.expand(SESSION_ID_INFO, &mut keys.id);
    keys
}

fn key_transcript(
    hello: &[u8],
    expires_at: u64,
    origin: &PublicIdentity,
    ciphertext: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(KEY_LABEL);
    h.update(hello);
    h.update(expires_at.to_be_bytes());
    h.update(origin.as_bytes());
    h.update(ciphertext);
    h.finalize().into()
}

/// What the origin issued: the session as the edge keeps it.
#[derive(Clone)]
pub struct Session {
    pub keys: SessionKeys,
    /// Sent with every request (`x-heady-session`), opaque to the edge.
    pub ticket: Vec<u8>,
    /// Unix seconds after which the origin refuses the ticket.
    pub expires_at: u64,
    /// The origin identity that signed the welcome.
    pub origin: Fingerprint,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("keys", &self.keys)
            .field("expires_at", &self.expires_at)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The edge's side between sending the hello and reading the welcome.
pub struct Initiator {
    hello: Vec<u8>,
    decapsulation: x_wing::DecapsulationKeyRejectNonContrib,
}

impl Initiator {
    /// Makes the hello: a fresh X-Wing key pair, signed with the edge's identity.
    pub fn start(
        identity: &Identity,
        now: u64,
        random: &HelloRandomness,
    ) -> Result<Initiator, HandshakeError> {
        let decapsulation = x_wing::DecapsulationKeyRejectNonContrib::from(random.kem_seed);
        let mut hello = Vec::with_capacity(HELLO_BYTES);
        hello.extend_from_slice(HELLO_TAG);
        hello.extend_from_slice(&now.to_be_bytes());
        hello.extend_from_slice(&random.nonce);
        hello.extend_from_slice(identity.public().as_bytes());
        hello.extend_from_slice(&decapsulation.encapsulation_key().to_bytes());
        let signature = identity
            .sign(HELLO_CONTEXT, &hello, &random.signing)
            .map_err(HandshakeError::Signing)?;
        hello.extend_from_slice(&signature);
        Ok(Initiator {
            hello,
            decapsulation,
        })
    }

    /// The bytes to send (`POST /api/tunnel/handshake`).
    pub fn hello(&self) -> &[u8] {
        &self.hello
    }

    /// Reads the origin's welcome: its identity must be pinned and its signature must cover
    /// this exchange.
    pub fn finish(self, welcome: &[u8], pinned: &[Fingerprint]) -> Result<Session, HandshakeError> {
        let mut r = Reader::new(welcome);
        r.tag(WELCOME_TAG)?;
        let expires_at = r.u64()?;
        let origin_bytes = r.take(PUBLIC_IDENTITY_BYTES, "origin identity")?;
        let ciphertext = r.take(XWING_CIPHERTEXT_BYTES, "X-Wing ciphertext")?;
        let ticket_len = usize::from(r.u16()?);
        if ticket_len == 0 || ticket_len > MAX_TICKET_BYTES {
            return Err(malformed(format!(
                "ticket of {ticket_len} bytes (1-{MAX_TICKET_BYTES})"
            )));
        }
        let ticket = r.take(ticket_len, "ticket")?;
        let signature = r.take(COMPOSITE_SIGNATURE_BYTES, "signature")?;
        r.end()?;
        let origin = PublicIdentity::from_bytes(origin_bytes)
            .map_err(|e| malformed(format!("origin identity: {e}")))?;
        if !pinned.contains(&origin.fingerprint()) {
            return Err(HandshakeError::UnknownIdentity(origin.fingerprint()));
        }
        let transcript = key_transcript(&self.hello, expires_at, &origin, ciphertext);
        origin
            .verify(
                WELCOME_CONTEXT,
                &[&transcript[..], ticket].concat(),
                signature,
            )
            .map_err(HandshakeError::Transcript)?;
        let ct = x_wing::Ciphertext::try_from(ciphertext)
            .map_err(|_| malformed("X-Wing ciphertext".into()))?;
        let shared = self
            .decapsulation
            .try_decapsulate(&ct)
            .map_err(|_| HandshakeError::Decapsulation)?;
        let shared: [u8; 32] = shared.0;
        Ok(Session {
            keys: derive_session_keys(&shared, &transcript),
            ticket: ticket.to_vec(),
            expires_at,
            origin: origin.fingerprint(),
        })
    }
}

/// A hello whose signature verified: what the origin knows before answering. The caller must
/// still refuse a nonce it has seen (a replayed hello).
pub struct VerifiedHello {
    hello: Vec<u8>,
    /// The edge identity that signed it (one of the pinned).
    pub edge: Fingerprint,
    pub timestamp: u64,
    pub nonce: [u8; NONCE_BYTES],
    encapsulation_key: x_wing::EncapsulationKey,
}

impl fmt::Debug for VerifiedHello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedHello")
            .field("edge", &self.edge)
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce_hex())
            .finish_non_exhaustive()
    }
}

/// The origin's first step: parse the hello, check the edge identity is pinned, verify its
/// signature, then its timestamp against `now` (within `max_skew_secs`).
pub fn accept_hello(
    hello: &[u8],
    pinned: &[Fingerprint],
    now: u64,
    max_skew_secs: u64,
) -> Result<VerifiedHello, HandshakeError> {
    if hello.len() != HELLO_BYTES {
        return Err(malformed(format!(
            "a hello is {HELLO_BYTES} bytes (got {})",
            hello.len()
        )));
    }
    let mut r = Reader::new(hello);
    r.tag(HELLO_TAG)?;
    let timestamp = r.u64()?;
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(r.take(NONCE_BYTES, "nonce")?);
    let edge_bytes = r.take(PUBLIC_IDENTITY_BYTES, "edge identity")?;
    let ek = r.take(XWING_ENCAPSULATION_KEY_BYTES, "X-Wing encapsulation key")?;
    let signed_len = hello.len() - COMPOSITE_SIGNATURE_BYTES;
    let signature = r.take(COMPOSITE_SIGNATURE_BYTES, "signature")?;
    r.end()?;
    let edge = PublicIdentity::from_bytes(edge_bytes)
        .map_err(|e| malformed(format!("edge identity: {e}")))?;
    if !pinned.contains(&edge.fingerprint()) {
        return Err(HandshakeError::UnknownIdentity(edge.fingerprint()));
    }
    edge.verify(HELLO_CONTEXT, &hello[..signed_len], signature)
        .map_err(HandshakeError::Transcript)?;
    check_freshness(timestamp, now, max_skew_secs).map_err(HandshakeError::Stale)?;
    // FIPS 203's encapsulation key check (the coefficients are reduced) is part of parsing.
    let encapsulation_key = x_wing::EncapsulationKey::try_from(ek)
        .map_err(|_| malformed("the X-Wing encapsulation key fails FIPS 203's check".into()))?;
    Ok(VerifiedHello {
        hello: hello.to_vec(),
        edge: edge.fingerprint(),
        timestamp,
        nonce,
        encapsulation_key,
    })
}

impl VerifiedHello {
    /// The hello's nonce as the replay check remembers it.
    pub fn nonce_hex(&self) -> String {
        hex_encode(&self.nonce)
    }

    /// The origin's answer: encapsulate to the edge's key, derive the session keys, let
    /// `seal` make the ticket from them, and sign the exchange. Returns the welcome and the
    /// session keys.
    pub fn respond(
        &self,
        identity: &Identity,
        expires_at: u64,
        random: &WelcomeRandomness,
        seal: impl FnOnce(&SessionKeys) -> Vec<u8>,
    ) -> Result<(Vec<u8>, SessionKeys), HandshakeError> {
        let (ciphertext, shared) = self
            .encapsulation_key
            .encapsulate_deterministic(&random.encapsulation.into());
        let shared: [u8; 32] = shared.0;
        let transcript = key_transcript(&self.hello, expires_at, identity.public(), &ciphertext);
        let keys = derive_session_keys(&shared, &transcript);
        let ticket = seal(&keys);
        let ticket_len = u16::try_from(ticket.len())
            .ok()
            .filter(|n| (1..=MAX_TICKET_BYTES as u16).contains(n))
            .ok_or_else(|| malformed(format!("ticket of {} bytes", ticket.len())))?;
        let signature = identity
            .sign(
                WELCOME_CONTEXT,
                &[&transcript[..], &ticket].concat(),
                &random.signing,
            )
            .map_err(HandshakeError::Signing)?;
        let mut welcome = Vec::with_capacity(
            WELCOME_TAG.len()
                + 8
                + PUBLIC_IDENTITY_BYTES
                + XWING_CIPHERTEXT_BYTES
                + 2
                + ticket.len()
                + COMPOSITE_SIGNATURE_BYTES,
        );
        welcome.extend_from_slice(WELCOME_TAG);
        welcome.extend_from_slice(&expires_at.to_be_bytes());
        welcome.extend_from_slice(identity.public().as_bytes());
        welcome.extend_from_slice(&ciphertext);
        welcome.extend_from_slice(&ticket_len.to_be_bytes());
        welcome.extend_from_slice(&ticket);
        welcome.extend_from_slice(&signature);
        Ok((welcome, keys))
    }
}

fn malformed(problem: String) -> HandshakeError {
    HandshakeError::Malformed(problem)
}

/// Reads fixed fields in order; running short is a malformed message.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], HandshakeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| malformed(format!("the message ends inside the {what}")))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn tag(&mut self, tag: &[u8]) -> Result<(), HandshakeError> {
        if self.take(tag.len(), "tag")? != tag {
            return Err(malformed(format!(
                "it does not start with {:?}",
                String::from_utf8_lossy(tag).trim_end()
            )));
        }
        Ok(())
    }

    fn u64(&mut self) -> Result<u64, HandshakeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, "timestamp")?);
        Ok(u64::from_be_bytes(b))
    }

    fn u16(&mut self) -> Result<u16, HandshakeError> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.take(2, "ticket length")?);
        Ok(u16::from_be_bytes(b))
    }

    fn end(&self) -> Result<(), HandshakeError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(malformed(format!(
                "{} bytes after the signature",
                self.bytes.len() - self.at
            )))
        }
    }
}
