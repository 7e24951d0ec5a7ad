//! Long-term identities of the edge and the origin: an ML-DSA-65 key pair (FIPS 204) composed
//! with an Ed25519 key pair. A composite signature is both signatures over the same context and
//! message, and verifies only when both do, so it holds while either scheme does.
//!
//! Each side pins the other's [`Fingerprint`]s (SHA-256 of the composite public key, as SPKI
//! pins are): the public keys themselves travel in the handshake, and a list of two fingerprints
//! (one during a rotation) fits in a Worker variable, which a 1,984-byte key pair would not.

use crate::wire::{hex_decode, hex_encode};
use ed25519_dalek::Signer as _;
use ml_dsa::{EncodedVerifyingKey, Keypair as _, MlDsa65};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Bytes of an ML-DSA-65 public key (FIPS 204 pkEncode).
pub const ML_DSA_65_PUBLIC_KEY_BYTES: usize = 1952;
/// Bytes of an ML-DSA-65 signature (FIPS 204 sigEncode).
pub const ML_DSA_65_SIGNATURE_BYTES: usize = 3309;
pub const ED25519_PUBLIC_KEY_BYTES: usize = 32;
pub const ED25519_SIGNATURE_BYTES: usize = 64;
/// The composite public key: ML-DSA-65 public key, then the Ed25519 one.
pub const PUBLIC_IDENTITY_BYTES: usize = ML_DSA_65_PUBLIC_KEY_BYTES + ED25519_PUBLIC_KEY_BYTES;
/// The composite signature: ML-DSA-65 signature, then the Ed25519 one.
pub const COMPOSITE_SIGNATURE_BYTES: usize = ML_DSA_65_SIGNATURE_BYTES + ED25519_SIGNATURE_BYTES;

/// How a private identity is written (a file, a Worker secret, an environment variable): this
/// prefix, then the ML-DSA-65 seed and the Ed25519 secret key, 32 bytes each, in hex.
pub const SECRET_PREFIX: &str = "heady-tunnel-identity-v1:";
/// How a fingerprint is written: this prefix and 64 hex digits.
pub const FINGERPRINT_PREFIX: &str = "htid1:";
/// Domain of the fingerprint hash.
const FINGERPRINT_LABEL: &[u8] = b"heady-tunnel-identity-v1\n";
/// Domain of the Ed25519 half of a composite signature (ML-DSA-65 has its own context).
const ED25519_LABEL: &[u8] = b"heady-tunnel-composite-v1\n";

/// Why an identity, a fingerprint or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("a private tunnel identity is {SECRET_PREFIX:?} followed by 128 hex digits")]
    MalformedSecret,
    #[error("a tunnel identity fingerprint is {FINGERPRINT_PREFIX:?} followed by 64 hex digits (got {0:?})")]
    MalformedFingerprint(String),
    #[error("a public tunnel identity is {PUBLIC_IDENTITY_BYTES} bytes (got {0})")]
    MalformedPublic(usize),
    #[error("the Ed25519 public key is not a valid curve point")]
    InvalidEd25519Key,
    #[error("the composite signature is {COMPOSITE_SIGNATURE_BYTES} bytes (got {0})")]
    SignatureLength(usize),
    #[error("the ML-DSA-65 signature does not verify")]
    MlDsaSignature,
    #[error("the Ed25519 signature does not verify")]
    Ed25519Signature,
    #[error("a signature context is at most 255 bytes")]
    ContextTooLong,
}

/// A private identity: both signing keys. `Debug` shows only the fingerprint.
pub struct Identity {
    ml_dsa_seed: [u8; 32],
    ml_dsa: ml_dsa::SigningKey<MlDsa65>,
    ed25519: ed25519_dalek::SigningKey,
    public: PublicIdentity,
}

impl Identity {
    /// The identity these seeds make (FIPS 204 `KeyGen_internal(seed)`; the Ed25519 secret
    /// key). Callers pass 64 fresh random bytes; tests pass fixed ones.
    pub fn from_seeds(ml_dsa_seed: [u8; 32], ed25519_secret: [u8; 32]) -> Identity {
        let ml_dsa = ml_dsa::SigningKey::<MlDsa65>::from_seed(&ml_dsa_seed.into());
        let ed25519 = ed25519_dalek::SigningKey::from_bytes(&ed25519_secret);
        let mut bytes = Vec::with_capacity(PUBLIC_IDENTITY_BYTES);
        bytes.extend_from_slice(&ml_dsa.verifying_key().encode());
        bytes.extend_from_slice(ed25519.verifying_key().as_bytes());
        let public = PublicIdentity {
            ml_dsa: ml_dsa.verifying_key(),
            ed25519: ed25519.verifying_key(),
            fingerprint: Fingerprint::of(&bytes),
            bytes,
        };
        Identity {
            ml_dsa_seed,
            ml_dsa,
            ed25519,
            public,
        }
    }

    /// Reads [`SECRET_PREFIX`]`<128 hex digits>` (surrounding whitespace ignored).
    pub fn from_secret_text(text: &str) -> Result<Identity, IdentityError> {
        let bytes = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .and_then(hex_decode)
            .filter(|b| b.len() == 64)
            .ok_or(IdentityError::MalformedSecret)?;
        let mut ml_dsa_seed = [0u8; 32];
        let mut ed25519_secret = [0u8; 32];
        ml_dsa_seed.copy_from_slice(&bytes[..32]);
        ed25519_secret.copy_from_slice(&bytes[32..]);
        Ok(Identity::from_seeds(ml_dsa_seed, ed25519_secret))
    }

    /// The private identity as text, for a file or a secret store. Handle it as a secret.
    pub fn to_secret_text(&self) -> String {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&self.ml_dsa_seed);
        bytes.extend_from_slice(self.ed25519.as_bytes());
        format!("{SECRET_PREFIX}{}", hex_encode(&bytes))
    }

    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// A 32-byte secret derived from the private keys for `label` (HKDF-SHA256), e.g. the
    /// origin's default ticket key: every holder of this identity derives the same one.
    pub fn derive_secret(&self, label: &[u8]) -> [u8; 32] {
        let mut ikm = [0u8; 64];
        ikm[..32].copy_from_slice(&self.ml_dsa_seed);
        ikm[32..].copy_from_slice(self.ed25519.as_bytes());
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit.
        let _ = hkdf::Hkdf::<Sha256>::new(Some(b"heady-tunnel-identity-v1 derived"), &ikm)
            .expand(label, &mut out);
        out
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint
    }

    /// The composite signature of `message` under `context` (at most 255 bytes): ML-DSA-65
    /// (FIPS 204 ML-DSA.Sign, hedged with `randomness`) with that context string, and Ed25519
    /// over a label, the context's length and bytes, and the message.
    pub fn sign(
        &self,
        context: &[u8],
        message: &[u8],
        randomness: &[u8; 32],
    ) -> Result<Vec<u8>, IdentityError> {
        let context_len = u8::try_from(context.len()).map_err(|_| IdentityError::ContextTooLong)?;
        // FIPS 204 Algorithm 2: M' = 0 || |ctx| || ctx || M, signed by ML-DSA.Sign_internal.
        let ml_dsa = self.ml_dsa.expanded_key().sign_internal(
            &[&[0u8, context_len][..], context, message],
            &(*randomness).into(),
        );
        let ed25519 = self
            .ed25519
            .sign(&ed25519_message(context_len, context, message));
        let mut out = Vec::with_capacity(COMPOSITE_SIGNATURE_BYTES);
        out.extend_from_slice(&ml_dsa.encode());
        out.extend_from_slice(&ed25519.to_bytes());
        Ok(out)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Identity {{ {}, private keys: <redacted> }}",
            self.fingerprint()
        )
    }
}

fn ed25519_message(context_len: u8, context: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ED25519_LABEL.len() + 1 + context.len() + message.len());
    out.extend_from_slice(ED25519_LABEL);
    out.push(context_len);
    out.extend_from_slice(context);
    out.extend_from_slice(message);
    out
}

/// The public half: both verifying keys.
#[derive(Clone)]
pub struct PublicIdentity {
    ml_dsa: ml_dsa::VerifyingKey<MlDsa65>,
    ed25519: ed25519_dalek::VerifyingKey,
    bytes: Vec<u8>,
    fingerprint: Fingerprint,
}

impl PublicIdentity {
    /// Reads the [`PUBLIC_IDENTITY_BYTES`]-byte encoding (as the handshake carries it).
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicIdentity, IdentityError> {
        if bytes.len() != PUBLIC_IDENTITY_BYTES {
            return Err(IdentityError::MalformedPublic(bytes.len()));
        }
        let (ml_dsa, ed25519) = bytes.split_at(ML_DSA_65_PUBLIC_KEY_BYTES);
        let ml_dsa = EncodedVerifyingKey::<MlDsa65>::try_from(ml_dsa)
            .map_err(|_| IdentityError::MalformedPublic(bytes.len()))?;
        let mut ed = [0u8; ED25519_PUBLIC_KEY_BYTES];
        ed.copy_from_slice(ed25519);
        let ed25519 = ed25519_dalek::VerifyingKey::from_bytes(&ed)
            .map_err(|_| IdentityError::InvalidEd25519Key)?;
        Ok(PublicIdentity {
            ml_dsa: ml_dsa::VerifyingKey::decode(&ml_dsa),
            ed25519,
            fingerprint: Fingerprint::of(bytes),
            bytes: bytes.to_vec(),
        })
    }

    /// The encoding: the ML-DSA-65 public key, then the Ed25519 one.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// `Ok` exactly when both halves of `signature` verify over `context` and `message`.
    pub fn verify(
        &self,
        context: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), IdentityError> {
        if signature.len() != COMPOSITE_SIGNATURE_BYTES {
            return Err(IdentityError::SignatureLength(signature.len()));
        }
        let context_len = u8::try_from(context.len()).map_err(|_| IdentityError::ContextTooLong)?;
        let (ml_dsa, ed25519) = signature.split_at(ML_DSA_65_SIGNATURE_BYTES);
        let ml_dsa = ml_dsa::Signature::<MlDsa65>::try_from(ml_dsa)
            .map_err(|_| IdentityError::MlDsaSignature)?;
        if !self.ml_dsa.verify_with_context(message, context, &ml_dsa) {
            return Err(IdentityError::MlDsaSignature);
        }
        let mut ed = [0u8; ED25519_SIGNATURE_BYTES];
        ed.copy_from_slice(ed25519);
        self.ed25519
            .verify_strict(
                &ed25519_message(context_len, context, message),
                &ed25519_dalek::Signature::from_bytes(&ed),
            )
            .map_err(|_| IdentityError::Ed25519Signature)
    }
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicIdentity({})", self.fingerprint)
    }
}

/// SHA-256 of a composite public key, what each side pins: `htid1:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a public identity's encoding.
    pub fn of(public_identity: &[u8]) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(FINGERPRINT_LABEL);
        h.update(public_identity);
        Fingerprint(h.finalize().into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{FINGERPRINT_PREFIX}{}", hex_encode(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Fingerprint, IdentityError> {
        let t = s.trim();
        t.strip_prefix(FINGERPRINT_PREFIX)
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(hex_decode)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Fingerprint)
            .ok_or_else(|| IdentityError::MalformedFingerprint(t.chars().take(80).collect()))
    }
}

/// Reads a list of pinned fingerprints: separated by commas or whitespace (a Worker variable,
/// an environment variable). Empty entries are skipped.
pub fn parse_fingerprints(text: &str) -> Result<Vec<Fingerprint>, IdentityError> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(n: u8) -> Identity {
        Identity::from_seeds([n; 32], [n.wrapping_add(100); 32])
    }

    #[test]
    fn a_composite_signature_verifies_and_both_halves_are_required() {
        let id = identity(1);
        let sig = id.sign(b"ctx", b"message", &[9; 32]).unwrap();
        assert_eq!(sig.len(), COMPOSITE_SIGNATURE_BYTES);
        let public = id.public();
        assert_eq!(public.verify(b"ctx", b"message", &sig), Ok(()));
        assert_eq!(
            public.verify(b"ctx", b"messagE", &sig),
            Err(IdentityError::MlDsaSignature)
        );
        assert_eq!(
            public.verify(b"ctX", b"message", &sig),
            Err(IdentityError::MlDsaSignature)
        );
        // Each half alone: the other half replaced by another key's signature.
        let other = identity(2).sign(b"ctx", b"message", &[9; 32]).unwrap();
        let mut mixed = sig[..ML_DSA_65_SIGNATURE_BYTES].to_vec();
        mixed.extend_from_slice(&other[ML_DSA_65_SIGNATURE_BYTES..]);
        assert_eq!(
            public.verify(b"ctx", b"message", &mixed),
            Err(IdentityError::Ed25519Signature)
        );
        let mut mixed = other[..ML_DSA_65_SIGNATURE_BYTES].to_vec();
        mixed.extend_from_slice(&sig[ML_DSA_65_SIGNATURE_BYTES..]);
        assert_eq!(
            public.verify(b"ctx", b"message", &mixed),
            Err(IdentityError::MlDsaSignature)
        );
        assert_eq!(
            public.verify(b"ctx", b"message", &sig[1..]),
            Err(IdentityError::SignatureLength(
                COMPOSITE_SIGNATURE_BYTES - 1
            ))
        );
        // Hedged: other randomness, another valid signature.
        let again = id.sign(b"ctx", b"message", &[10; 32]).unwrap();
        assert_ne!(again, sig);
        assert_eq!(public.verify(b"ctx", b"message", &again), Ok(()));
    }

    #[test]
    fn secrets_and_fingerprints_round_trip_and_never_print() {
        let id = identity(3);
        let text = id.to_secret_text();
        assert!(text.starts_with(SECRET_PREFIX) && text.len() == SECRET_PREFIX.len() + 128);
        let back = Identity::from_secret_text(&format!("  {text}\n")).unwrap();
        assert_eq!(back.fingerprint(), id.fingerprint());
        let debug = format!("{id:?}");
        assert!(
            !debug.contains(&text[SECRET_PREFIX.len()..][..16]),
            "{debug}"
        );
        assert!(debug.contains(&id.fingerprint().to_string()), "{debug}");
        for bad in [
            "",
            "heady-tunnel-identity-v1:abcd",
            &text[1..],
            &format!("{}zz", &text[..text.len() - 2]),
        ] {
            assert_eq!(
                Identity::from_secret_text(bad).unwrap_err(),
                IdentityError::MalformedSecret
            );
        }
        let fp = id.fingerprint();
        assert_eq!(fp.to_string().parse::<Fingerprint>(), Ok(fp));
        assert!("htid1:xyz".parse::<Fingerprint>().is_err());
        assert!(fp.to_string()[..69].parse::<Fingerprint>().is_err());
        let two = format!("{fp}, {}\n", identity(4).fingerprint());
        assert_eq!(parse_fingerprints(&two).unwrap().len(), 2);
        assert_eq!(parse_fingerprints(" ").unwrap(), vec![]);
        assert!(parse_fingerprints("htid1:00,").is_err());
    }

    #[test]
    fn the_public_encoding_round_trips() {
        let id = identity(5);
        let bytes = id.public().as_bytes();
        assert_eq!(bytes.len(), PUBLIC_IDENTITY_BYTES);
        let back = PublicIdentity::from_bytes(bytes).unwrap();
        assert_eq!(back.fingerprint(), id.fingerprint());
        assert_eq!(back.as_bytes(), bytes);
        assert_eq!(
            PublicIdentity::from_bytes(&bytes[1..]).unwrap_err(),
            IdentityError::MalformedPublic(PUBLIC_IDENTITY_BYTES - 1)
        );
    }
}
