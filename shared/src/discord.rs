//! Discord interactions: the request check both sides run, and the few wire constants of
//! Discord's interactions API both sides need.
//!
//! Discord signs every interaction it sends with the application's Ed25519 key: the
//! `X-Signature-Ed25519` header is the hex signature of `X-Signature-Timestamp` followed by
//! the raw body. An endpoint must check it before anything else and answer 401 when it
//! fails (Discord itself sends badly signed requests to an endpoint to see that it does).
//! The edge checks it before a request goes anywhere; the origin checks it again, so an
//! origin reached some other way trusts nothing it did not check.
//!
//! On top of the signature, a request whose timestamp is further than [`MAX_SKEW_SECS`]
//! from the checker's clock is refused, so a captured request cannot be replayed later.

use ed25519_dalek::{Signature, VerifyingKey};

/// The signature header: 128 hex digits.
pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
/// The timestamp header: Unix seconds, in decimal.
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";
/// How far an interaction's timestamp may be from the checker's clock, either way.
pub const MAX_SKEW_SECS: u64 = 300;
/// The interactions endpoint's path on the Discord property (edge and origin).
pub const INTERACTIONS_PATH: &str = "/discord/interactions";

/// Interaction types (Discord's `type` field of an interaction).
pub mod interaction_type {
    pub const PING: u8 = 1;
    pub const APPLICATION_COMMAND: u8 = 2;
}

/// Interaction response types.
pub mod response_type {
    /// The answer to a `PING`.
    pub const PONG: u8 = 1;
    /// A message, now.
    pub const CHANNEL_MESSAGE: u8 = 4;
    /// "Thinking...": the message follows through the webhook API (within 15 minutes).
    pub const DEFERRED_CHANNEL_MESSAGE: u8 = 5;
}

/// Message flag: only the user who ran the command sees the message.
pub const EPHEMERAL: u64 = 1 << 6;

/// The body of the answer to a `PING`.
pub const PONG_BODY: &str = r#"{"type":1}"#;

/// The application's public key (Discord's "Public Key": 64 hex digits).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", crate::hex::encode(self.0.as_bytes()))
    }
}

/// Why a public key or a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the Discord public key must be 64 hex digits (an Ed25519 key)")]
    BadPublicKey,
    #[error("the X-Signature-Ed25519 header is missing")]
    MissingSignature,
    #[error("the X-Signature-Timestamp header is missing")]
    MissingTimestamp,
    #[error("the X-Signature-Ed25519 header must be 128 hex digits")]
    MalformedSignature,
    #[error("the X-Signature-Timestamp header must be Unix seconds")]
    MalformedTimestamp,
    #[error("the interaction's timestamp is more than {MAX_SKEW_SECS} s from now")]
    StaleTimestamp,
    #[error("the interaction's signature does not verify")]
    BadSignature,
}

impl PublicKey {
    pub fn from_hex(text: &str) -> Result<Self, Refusal> {
        let bytes: [u8; 32] = crate::hex::decode(text.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or(Refusal::BadPublicKey)?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| Refusal::BadPublicKey)
    }

    /// Checks one interaction request: the headers' values (if present), the raw body, and
    /// the checker's clock in Unix seconds.
    pub fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now_unix: u64,
    ) -> Result<(), Refusal> {
        let signature = signature.ok_or(Refusal::MissingSignature)?;
        let timestamp = timestamp.ok_or(Refusal::MissingTimestamp)?;
        let signature: [u8; 64] = crate::hex::decode(signature.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or(Refusal::MalformedSignature)?;
        let when: u64 = match timestamp.trim() {
            t if !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()) => {
                t.parse().map_err(|_| Refusal::MalformedTimestamp)?
            }
            _ => return Err(Refusal::MalformedTimestamp),
        };
        let mut message = Vec::with_capacity(timestamp.len() + body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(body);
        self.0
            .verify_strict(&message, &Signature::from_bytes(&signature))
            .map_err(|_| Refusal::BadSignature)?;
        // Freshness after the signature: a forged request learns nothing about the clock.
        if when.abs_diff(now_unix) > MAX_SKEW_SECS {
            return Err(Refusal::StaleTimestamp);
        }
        Ok(())
    }
}

/// The `type` of an interaction body, if the body is an interaction at all.
pub fn interaction_kind(body: &[u8]) -> Option<u8> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: u8,
    }
    serde_json::from_slice::<Head>(body).ok().map(|h| h.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    const NOW: u64 = 1_790_000_000;

    fn signed(key: &SigningKey, timestamp: &str, body: &[u8]) -> String {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        crate::hex::encode(&key.sign(&message).to_bytes())
    }

    fn pair() -> (SigningKey, PublicKey) {
        let secret = SigningKey::from_bytes(&[7; 32]);
        let public =
            PublicKey::from_hex(&crate::hex::encode(secret.verifying_key().as_bytes())).unwrap();
        (secret, public)
    }

    #[test]
    fn a_signed_fresh_request_passes_and_every_change_fails() {
        let (secret, public) = pair();
        let body = br#"{"type":1}"#;
        let ts = NOW.to_string();
        let sig = signed(&secret, &ts, body);
        assert_eq!(public.verify(Some(&sig), Some(&ts), body, NOW), Ok(()));
        assert_eq!(
            public.verify(Some(&sig.to_uppercase()), Some(&ts), body, NOW),
            Ok(())
        );
        // Another body, another timestamp, another key: refused.
        let other_ts = (NOW + 1).to_string();
        assert_eq!(
            public.verify(Some(&sig), Some(&ts), br#"{"type":2}"#, NOW),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            public.verify(Some(&sig), Some(&other_ts), body, NOW),
            Err(Refusal::BadSignature)
        );
        let stranger = SigningKey::from_bytes(&[9; 32]);
        let forged = signed(&stranger, &ts, body);
        assert_eq!(
            public.verify(Some(&forged), Some(&ts), body, NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn missing_malformed_and_stale_headers_are_named() {
        let (secret, public) = pair();
        let body = b"{}";
        let ts = NOW.to_string();
        let sig = signed(&secret, &ts, body);
        assert_eq!(
            public.verify(None, Some(&ts), body, NOW),
            Err(Refusal::MissingSignature)
        );
        assert_eq!(
            public.verify(Some(&sig), None, body, NOW),
            Err(Refusal::MissingTimestamp)
        );
        for bad in ["", "zz", &sig[..126], &format!("{sig}00")] {
            assert_eq!(
                public.verify(Some(bad), Some(&ts), body, NOW),
                Err(Refusal::MalformedSignature),
                "{bad}"
            );
        }
        for bad in ["", "-1", "1.5", "12345678901234567890123"] {
            assert_eq!(
                public.verify(Some(&sig), Some(bad), body, NOW),
                Err(Refusal::MalformedTimestamp),
                "{bad}"
            );
        }
        // A replay after the window, or a timestamp from the future, is refused.
        let late = NOW + MAX_SKEW_SECS + 1;
        assert_eq!(
            public.verify(Some(&sig), Some(&ts), body, late),
            Err(Refusal::StaleTimestamp)
        );
        assert_eq!(
            public.verify(Some(&sig), Some(&ts), body, NOW + MAX_SKEW_SECS),
            Ok(())
        );
        let early = NOW - MAX_SKEW_SECS - 1;
        assert_eq!(
            public.verify(Some(&sig), Some(&ts), body, early),
            Err(Refusal::StaleTimestamp)
        );
    }

    #[test]
    fn public_keys_are_64_hex_digits_of_a_valid_point() {
        assert_eq!(PublicKey::from_hex("ab"), Err(Refusal::BadPublicKey));
        assert_eq!(
            PublicKey::from_hex(&"g".repeat(64)),
            Err(Refusal::BadPublicKey)
        );
        let (_, public) = pair();
        assert!(format!("{public:?}").starts_with("PublicKey("));
    }

    #[test]
    fn the_interaction_type_is_read_from_the_body() {
        assert_eq!(
            interaction_kind(br#"{"type":1,"id":"1"}"#),
            Some(interaction_type::PING)
        );
        assert_eq!(
            interaction_kind(br#"{"type":2}"#),
            Some(interaction_type::APPLICATION_COMMAND)
        );
        assert_eq!(interaction_kind(b"not json"), None);
        assert_eq!(interaction_kind(br#"{"kind":1}"#), None);
    }
}
