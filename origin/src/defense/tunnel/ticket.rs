//! Session tickets: what a session's state becomes so that every origin can check a request
//! under it without shared storage. The origin that answered the handshake seals the session's
//! MAC key, id, expiry and edge identity with ChaCha20-Poly1305 under the ticket key every
//! origin shares; the edge sends the ticket with each request; any origin opens it.
//!
//! ```text
//! ticket = 0x01 || nonce (12) || ChaCha20-Poly1305(ticket key, nonce, aad = "heady-tunnel-ticket-v1",
//!                                 expires_at (u64 BE) || session id (16) || MAC key (32) || edge fingerprint (32))
//! ```
//!
//! Pure functions: the nonce and the time are arguments.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use heady_shared::tunnel::{Fingerprint, SessionKeys};

const VERSION: u8 = 1;
const AAD: &[u8] = b"heady-tunnel-ticket-v1";
const NONCE_BYTES: usize = 12;
const PLAINTEXT_BYTES: usize = 8 + 16 + 32 + 32;
/// The size of every ticket.
pub const TICKET_BYTES: usize = 1 + NONCE_BYTES + PLAINTEXT_BYTES + 16;

/// A 32-byte ChaCha20-Poly1305 key; `Debug` never shows it.
#[derive(Clone)]
pub struct TicketKey(pub [u8; 32]);

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(<redacted>)")
    }
}

/// What an opened ticket says.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    pub keys: SessionKeys,
    pub expires_at: u64,
    pub edge: Fingerprint,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("keys", &self.keys)
            .field("expires_at", &self.expires_at)
            .field("edge", &self.edge)
            .finish()
    }
}

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the session ticket is malformed ({0})")]
    Malformed(&'static str),
    #[error("the session ticket does not open under this origin's ticket keys")]
    Invalid,
    #[error("the session expired at {expires_at} ({ago_secs} s ago)")]
    Expired { expires_at: u64, ago_secs: u64 },
}

fn cipher(key: &TicketKey) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&key.0.into())
}

/// Seals a session into a ticket.
pub fn seal(
    key: &TicketKey,
    nonce: [u8; NONCE_BYTES],
    keys: &SessionKeys,
    expires_at: u64,
    edge: Fingerprint,
) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(PLAINTEXT_BYTES + 16);
    buffer.extend_from_slice(&expires_at.to_be_bytes());
    buffer.extend_from_slice(&keys.id);
    buffer.extend_from_slice(&keys.mac_key);
    buffer.extend_from_slice(&edge.0);
    // Encryption into a Vec cannot run out of room.
    let _ = cipher(key).encrypt_in_place(&nonce.into(), AAD, &mut buffer);
    let mut ticket = Vec::with_capacity(TICKET_BYTES);
    ticket.push(VERSION);
    ticket.extend_from_slice(&nonce);
    ticket.extend_from_slice(&buffer);
    ticket
}

/// Opens a ticket with the first of `keys` that authenticates it, and refuses it once `now`
/// has reached its expiry.
pub fn open(keys: &[TicketKey], ticket: &[u8], now: u64) -> Result<Opened, TicketError> {
    if ticket.len() != TICKET_BYTES {
        return Err(TicketError::Malformed("wrong length"));
    }
    if ticket[0] != VERSION {
        return Err(TicketError::Malformed("unknown version"));
    }
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(&ticket[1..1 + NONCE_BYTES]);
    let sealed = &ticket[1 + NONCE_BYTES..];
    let plain = keys
        .iter()
        .find_map(|k| {
            let mut buffer = sealed.to_vec();
            cipher(k)
                .decrypt_in_place(&nonce.into(), AAD, &mut buffer)
                .ok()
                .map(|()| buffer)
        })
        .ok_or(TicketError::Invalid)?;
    let mut expires = [0u8; 8];
    expires.copy_from_slice(&plain[..8]);
    let expires_at = u64::from_be_bytes(expires);
    let mut opened = Opened {
        keys: SessionKeys {
            mac_key: [0; 32],
            id: [0; 16],
        },
        expires_at,
        edge: Fingerprint([0; 32]),
    };
    opened.keys.id.copy_from_slice(&plain[8..24]);
    opened.keys.mac_key.copy_from_slice(&plain[24..56]);
    opened.edge.0.copy_from_slice(&plain[56..88]);
    if now >= expires_at {
        return Err(TicketError::Expired {
            expires_at,
            ago_secs: now - expires_at,
        });
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        SessionKeys {
            mac_key: [1; 32],
            id: [2; 16],
        }
    }

    #[test]
    fn a_ticket_opens_under_its_key_until_it_expires() {
        let key = TicketKey([9; 32]);
        let t = seal(&key, [3; 12], &keys(), 1_000, Fingerprint([4; 32]));
        assert_eq!(t.len(), TICKET_BYTES);
        let opened = open(std::slice::from_ref(&key), &t, 999).unwrap();
        assert_eq!(opened.keys, keys());
        assert_eq!(
            (opened.expires_at, opened.edge),
            (1_000, Fingerprint([4; 32]))
        );
        assert_eq!(
            open(std::slice::from_ref(&key), &t, 1_005),
            Err(TicketError::Expired {
                expires_at: 1_000,
                ago_secs: 5
            })
        );
        // Another key first: the right one is found; without it the ticket is invalid.
        let other = TicketKey([8; 32]);
        assert!(open(&[other.clone(), key.clone()], &t, 999).is_ok());
        assert_eq!(open(&[other], &t, 999), Err(TicketError::Invalid));
        // Any changed byte (the expiry included) breaks the seal.
        for at in [0, 5, 20, TICKET_BYTES - 1] {
            let mut bad = t.clone();
            bad[at] ^= 1;
            assert!(
                open(std::slice::from_ref(&key), &bad, 999).is_err(),
                "byte {at}"
            );
        }
        assert_eq!(
            open(std::slice::from_ref(&key), &t[1..], 999),
            Err(TicketError::Malformed("wrong length"))
        );
        assert!(!format!("{:?}", opened).contains("0101"));
        assert_eq!(format!("{key:?}"), "TicketKey(<redacted>)");
    }
}
