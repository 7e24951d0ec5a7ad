//! Post-quantum hybrid tunnel sessions between the edge and the origin: long-term composite
//! identities ([`identity`]: ML-DSA-65 + Ed25519), the handshake ([`handshake`]: X-Wing, both
//! sides signing the transcript, HKDF-SHA256 session keys), and the policy both sides name.
//! Requests under a session are MAC'd with [`crate::wire::SessionMac`].
//!
//! Pure logic: randomness and time are arguments, so the same code runs in the Worker (wasm32)
//! and the daemon, and tests pin its outputs.

pub mod handshake;
pub mod identity;

pub use handshake::{
    accept_hello, derive_session_keys, HandshakeError, HelloRandomness, Initiator, Session,
    SessionKeys, VerifiedHello, WelcomeRandomness,
};
pub use identity::{parse_fingerprints, Fingerprint, Identity, IdentityError, PublicIdentity};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How tunnelled requests are authenticated (`defense.tunnel_auth` at the origin, the
/// `TUNNEL_AUTH` variable at the edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TunnelAuth {
    /// Sessions from the post-quantum hybrid handshake only: an HMAC-only request is refused.
    #[serde(rename = "pq-hybrid")]
    PqHybrid,
    /// The shared-secret HMAC (`HEADY_TUNNEL_KEY`); sessions are accepted too where identities
    /// are configured.
    #[serde(rename = "hmac")]
    Hmac,
}

impl TunnelAuth {
    pub const fn as_str(self) -> &'static str {
        match self {
            TunnelAuth::PqHybrid => "pq-hybrid",
            TunnelAuth::Hmac => "hmac",
        }
    }
}

impl fmt::Display for TunnelAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TunnelAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<TunnelAuth, String> {
        match s.trim() {
            "pq-hybrid" => Ok(TunnelAuth::PqHybrid),
            "hmac" => Ok(TunnelAuth::Hmac),
            other => Err(format!(
                "tunnel auth is \"pq-hybrid\" or \"hmac\" (got {other:?})"
            )),
        }
    }
}

/// Default session lifetime: an hour.
pub const DEFAULT_SESSION_SECS: u64 = 3600;

/// When the edge opens a new session before the current one expires: a fifth of its lifetime
/// early, at most 5 minutes, so requests in flight never carry an expired ticket.
pub fn rekey_at(issued_at: u64, expires_at: u64) -> u64 {
    let lifetime = expires_at.saturating_sub(issued_at);
    expires_at - (lifetime / 5).min(300)
}

#[cfg(test)]
mod tests {
    use super::handshake::HELLO_BYTES;
    use super::*;
    use crate::wire::{hex_decode, hex_encode};
    use sha2::{Digest, Sha256};
    use x_wing::{Decapsulate as _, Decapsulator as _, KeyExport as _};

    const NOW: u64 = 1_790_000_000;

    fn edge() -> Identity {
        Identity::from_seeds([0x11; 32], [0x22; 32])
    }

    fn origin() -> Identity {
        Identity::from_seeds([0x33; 32], [0x44; 32])
    }

    fn hello_random(n: u8) -> HelloRandomness {
        HelloRandomness::from_bytes(&[n; HelloRandomness::BYTES])
    }

    fn welcome_random(n: u8) -> WelcomeRandomness {
        WelcomeRandomness::from_bytes(&[n; WelcomeRandomness::BYTES])
    }

    /// A ticket that is just the session id, for the pure tests (the origin seals one).
    fn seal(keys: &SessionKeys) -> Vec<u8> {
        keys.id.to_vec()
    }

    fn handshake(now: u64) -> (Session, SessionKeys) {
        let initiator = Initiator::start(&edge(), now, &hello_random(1)).unwrap();
        assert_eq!(initiator.hello().len(), HELLO_BYTES);
        let hello = accept_hello(initiator.hello(), &[edge().fingerprint()], now, 60).unwrap();
        let (welcome, keys) = hello
            .respond(
                &origin(),
                now + DEFAULT_SESSION_SECS,
                &welcome_random(2),
                seal,
            )
            .unwrap();
        let session = initiator
            .finish(&welcome, &[origin().fingerprint()])
            .unwrap();
        (session, keys)
    }

    #[test]
    fn both_sides_derive_the_same_session() {
        let (session, keys) = handshake(NOW);
        assert_eq!(session.keys, keys);
        assert_eq!(session.ticket, keys.id.to_vec());
        assert_eq!(session.expires_at, NOW + DEFAULT_SESSION_SECS);
        assert_eq!(session.origin, origin().fingerprint());
        assert!(!format!("{session:?}").contains(&hex_encode(&keys.mac_key)));
    }

    #[test]
    fn session_key_derivation_is_rfc5869_hkdf_sha256() {
        // RFC 5869 test case 1's construction with our labels: salt = transcript hash, ikm =
        // shared secret. Pinned so a change of labels or order is seen.
        let keys = derive_session_keys(&[0x0b; 32], &[0x0c; 32]);
        let prk = {
            use hmac::{KeyInit, Mac};
            let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&[0x0c; 32]).unwrap();
            mac.update(&[0x0b; 32]);
            mac.finalize().into_bytes()
        };
        let t1 = {
            use hmac::{KeyInit, Mac};
            let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&prk).unwrap();
            mac.update(b"heady-tunnel-v2 request mac key");
            mac.update(&[1]);
            mac.finalize().into_bytes()
        };
        assert_eq!(keys.mac_key[..], t1[..]);
        assert_eq!(
            hex_encode(&keys.mac_key),
            KAT_MAC_KEY,
            "session MAC key for shared secret 0b.., transcript 0c.."
        );
        assert_eq!(hex_encode(&keys.id), KAT_SESSION_ID);
        // RFC 5869 A.1 itself, through the same crate.
        let hk = hkdf::Hkdf::<Sha256>::new(
            Some(&hex_decode("000102030405060708090a0b0c").unwrap()),
            &[0x0b; 22],
        );
        let mut okm = [0u8; 42];
        hk.expand(&hex_decode("f0f1f2f3f4f5f6f7f8f9").unwrap(), &mut okm)
            .unwrap();
        assert_eq!(
            hex_encode(&okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    // Computed with Python's hmac module from RFC 5869's definitions.
    const KAT_MAC_KEY: &str = "e2baa44e18351408920e49b3cdc5698ab3daf6495753fd61a966fbc1743e29be";
    const KAT_SESSION_ID: &str = "b7b0925e251a739e796f4c4ae391a9b3";

    #[test]
    fn composite_identity_known_answers() {
        // RFC 8032 7.1 test 1: the Ed25519 half of the public identity is the RFC's key.
        let secret: [u8; 32] =
            hex_decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let id = Identity::from_seeds([0x5a; 32], secret);
        let public = id.public().as_bytes();
        assert_eq!(
            hex_encode(&public[identity::ML_DSA_65_PUBLIC_KEY_BYTES..]),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        // The ML-DSA-65 half, the fingerprint and the composite signature (zero hedging
        // randomness: FIPS 204's deterministic variant) as an independent implementation makes
        // them.
        assert_eq!(
            hex_encode(&Sha256::digest(
                &public[..identity::ML_DSA_65_PUBLIC_KEY_BYTES]
            )),
            KAT_ML_DSA_PUBLIC_SHA256
        );
        assert_eq!(id.fingerprint().to_string(), KAT_FINGERPRINT);
        let sig = id.sign(b"kat", b"heady", &[0; 32]).unwrap();
        assert_eq!(hex_encode(&Sha256::digest(&sig)), KAT_SIGNATURE_SHA256);
        // The Ed25519 half is deterministic: RFC 8032 Ed25519 over the labelled message.
        let ed = ed25519_dalek::SigningKey::from_bytes(&secret);
        use ed25519_dalek::Signer as _;
        let expected = ed.sign(b"heady-tunnel-composite-v1\n\x03katheady");
        assert_eq!(
            sig[identity::ML_DSA_65_SIGNATURE_BYTES..],
            expected.to_bytes()[..]
        );
    }

    // Computed independently with dilithium-py 1.5.1 (FIPS 204: ML_DSA_65.key_derive(seed),
    // sign(sk, b"heady", ctx=b"kat", deterministic=True)) and PyNaCl (Ed25519).
    const KAT_ML_DSA_PUBLIC_SHA256: &str =
        "3c0c693a14b7ad8fcc0272eacce507b514d865a06e8058087130f50ff43cc09b";
    const KAT_FINGERPRINT: &str =
        "htid1:d47634d4b8e6d06ec6b7246f60e695b686cdc9183166639b6c5e1b085ffe5ac5";
    const KAT_SIGNATURE_SHA256: &str =
        "ed954802b9030d6360c2fffdcf92ae9a02120905d21a2ba7c399a3fedafad6a2";

    #[derive(serde::Deserialize)]
    struct XWingVector {
        seed: String,
        eseed: String,
        ss: String,
        pk: String,
        ct: String,
    }

    #[test]
    fn xwing_matches_the_drafts_test_vectors() {
        // spec/test-vectors.json of draft-connolly-cfrg-xwing-kem (the draft's appendix C).
        let vectors: Vec<XWingVector> =
            serde_json::from_str(include_str!("xwing-test-vectors.json")).unwrap();
        assert_eq!(vectors.len(), 3);
        let bytes = |h: &str| hex_decode(h).unwrap();
        for v in vectors {
            let seed: [u8; 32] = bytes(&v.seed).try_into().unwrap();
            let dk = x_wing::DecapsulationKey::from(seed);
            assert_eq!(dk.encapsulation_key().to_bytes()[..], bytes(&v.pk)[..]);
            let eseed: [u8; 64] = bytes(&v.eseed).try_into().unwrap();
            let (ct, ss) = dk
                .encapsulation_key()
                .encapsulate_deterministic(&eseed.into());
            assert_eq!(ct[..], bytes(&v.ct)[..]);
            assert_eq!(ss[..], bytes(&v.ss)[..]);
            assert_eq!(dk.decapsulate(&ct)[..], bytes(&v.ss)[..]);
        }
    }

    #[test]
    fn a_tampered_hello_or_welcome_is_refused() {
        let pinned_edge = [edge().fingerprint()];
        let initiator = Initiator::start(&edge(), NOW, &hello_random(1)).unwrap();
        let hello = initiator.hello().to_vec();
        // Flip one byte in the timestamp, the nonce, the key and the signature.
        for at in [25, 35, 30 + 1984 + 100, HELLO_BYTES - 10] {
            let mut bad = hello.clone();
            bad[at] ^= 1;
            match accept_hello(&bad, &pinned_edge, NOW, 60) {
                Err(HandshakeError::Transcript(_)) => {}
                other => panic!("byte {at}: {other:?}"),
            }
        }
        // The edge identity swapped for another (pinned) one: its signature does not match.
        let other_edge = Identity::from_seeds([0x55; 32], [0x66; 32]);
        let mut swapped = hello.clone();
        swapped[46..46 + identity::PUBLIC_IDENTITY_BYTES]
            .copy_from_slice(other_edge.public().as_bytes());
        assert!(matches!(
            accept_hello(
                &swapped,
                &[edge().fingerprint(), other_edge.fingerprint()],
                NOW,
                60
            ),
            Err(HandshakeError::Transcript(_))
        ));
        assert!(matches!(
            accept_hello(&hello[..100], &pinned_edge, NOW, 60),
            Err(HandshakeError::Malformed(_))
        ));
        // A welcome changed anywhere is refused by the edge.
        let verified = accept_hello(&hello, &pinned_edge, NOW, 60).unwrap();
        let (welcome, _) = verified
            .respond(&origin(), NOW + 60, &welcome_random(2), seal)
            .unwrap();
        for at in [30, 40 + 1984 + 50, welcome.len() - 3400, welcome.len() - 1] {
            let initiator = Initiator::start(&edge(), NOW, &hello_random(1)).unwrap();
            let mut bad = welcome.clone();
            bad[at] ^= 1;
            match initiator.finish(&bad, &[origin().fingerprint()]) {
                Err(HandshakeError::Transcript(_)) => {}
                other => panic!("welcome byte {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn unpinned_identities_are_refused_by_name() {
        let stranger = Identity::from_seeds([0x77; 32], [0x78; 32]);
        let initiator = Initiator::start(&stranger, NOW, &hello_random(1)).unwrap();
        assert_eq!(
            accept_hello(initiator.hello(), &[edge().fingerprint()], NOW, 60).unwrap_err(),
            HandshakeError::UnknownIdentity(stranger.fingerprint())
        );
        // The edge pins another origin: the welcome is refused.
        let initiator = Initiator::start(&edge(), NOW, &hello_random(1)).unwrap();
        let verified = accept_hello(initiator.hello(), &[edge().fingerprint()], NOW, 60).unwrap();
        let (welcome, _) = verified
            .respond(&stranger, NOW + 60, &welcome_random(2), seal)
            .unwrap();
        assert_eq!(
            initiator
                .finish(&welcome, &[origin().fingerprint()])
                .unwrap_err(),
            HandshakeError::UnknownIdentity(stranger.fingerprint())
        );
    }

    #[test]
    fn stale_hellos_are_refused_and_nonces_differ() {
        let a = Initiator::start(&edge(), NOW, &hello_random(1)).unwrap();
        let pinned = [edge().fingerprint()];
        assert!(matches!(
            accept_hello(a.hello(), &pinned, NOW + 61, 60),
            Err(HandshakeError::Stale(_))
        ));
        assert!(matches!(
            accept_hello(a.hello(), &pinned, NOW - 61, 60),
            Err(HandshakeError::Stale(_))
        ));
        let b = Initiator::start(&edge(), NOW, &hello_random(3)).unwrap();
        let (va, vb) = (
            accept_hello(a.hello(), &pinned, NOW, 60).unwrap(),
            accept_hello(b.hello(), &pinned, NOW, 60).unwrap(),
        );
        assert_ne!(va.nonce_hex(), vb.nonce_hex());
        assert_eq!(va.edge, edge().fingerprint());
    }

    #[test]
    fn rekeying_starts_before_expiry() {
        assert_eq!(rekey_at(0, 3600), 3300);
        assert_eq!(rekey_at(0, 10), 8);
        assert_eq!(rekey_at(100, 100), 100);
        assert!("pq-hybrid".parse::<TunnelAuth>() == Ok(TunnelAuth::PqHybrid));
        assert!("PQ".parse::<TunnelAuth>().is_err());
    }
}
