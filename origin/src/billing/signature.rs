//! `Stripe-Signature` verification, as Stripe's own libraries do it (stripe-node's
//! `Webhooks.ts`, stripe-python's `WebhookSignature.verify_header`): the header is a comma
//! list of `key=value` items; `t` is the signing time (Unix s); each `v1` is the hex
//! HMAC-SHA256, keyed with an endpoint secret, of `"{t}.{raw body}"`. Other schemes (`v0`) are
//! ignored. The body is verified byte for byte before anything parses it; the comparison is in
//! constant time. Several secrets may be configured (a rotation: Stripe signs with the old and
//! the new one for a while) and any may match.
//!
//! One deliberate difference: the libraries refuse only a `t` older than the tolerance (300 s);
//! this also refuses one further than that in the future, so a captured request is replayable
//! for at most the tolerance whatever the signer's clock said.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The scheme Stripe signs with today.
pub const SCHEME: &str = "v1";
/// Stripe's libraries' default tolerance.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the webhook body is empty")]
    EmptyPayload,
    #[error("the Stripe-Signature header has no timestamp (t=<unix seconds>)")]
    NoTimestamp,
    #[error("the Stripe-Signature header has no v1 signature")]
    NoSignature,
    #[error(
        "no v1 signature in Stripe-Signature matches the body for the configured webhook secrets"
    )]
    Mismatch,
    #[error("the Stripe-Signature timestamp is {skew} s from this server's clock; at most {tolerance} s is accepted")]
    OutsideTolerance { skew: i64, tolerance: i64 },
}

/// The header's timestamp and its `v1` signatures (hex), as the libraries read it: items
/// split at `,`, each at its first `=`; the first `t` counts.
fn parse(header: &str) -> Result<(i64, Vec<&str>), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::NoTimestamp)?,
                )
            }
            SCHEME => signatures.push(value),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::NoTimestamp)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    Ok((t, signatures))
}

fn mac(secret: &[u8], timestamp: i64, payload: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(payload);
    m
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks `header` against the raw `payload` at `now` (Unix s) for any of `secrets`. `Ok`: the
/// signing time.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[&str],
    now: i64,
    tolerance: i64,
) -> Result<i64, SignatureError> {
    let header = header
        .filter(|h| !h.trim().is_empty())
        .ok_or(SignatureError::Missing)?;
    if payload.is_empty() {
        return Err(SignatureError::EmptyPayload);
    }
    let (t, signatures) = parse(header)?;
    let candidates: Vec<Vec<u8>> = signatures.iter().filter_map(|s| unhex(s)).collect();
    let matched = secrets.iter().any(|secret| {
        let expected = mac(secret.as_bytes(), t, payload);
        candidates
            .iter()
            .any(|c| expected.clone().verify_slice(c).is_ok())
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let skew = now.saturating_sub(t);
    if tolerance > 0 && skew.saturating_abs() > tolerance {
        return Err(SignatureError::OutsideTolerance { skew, tolerance });
    }
    Ok(t)
}

/// The header Stripe would send for `payload` signed with `secret` at `timestamp`
/// (`t=<timestamp>,v1=<hex>`), as the libraries' test helpers make it.
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let sig = mac(secret.as_bytes(), timestamp, payload)
        .finalize()
        .into_bytes();
    let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},{SCHEME}={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const OLD: &str = "whsec_old_secret";
    const BODY: &[u8] =
        br#"{"id":"evt_1","object":"event","type":"customer.subscription.updated"}"#;
    const NOW: i64 = 1_700_000_000;

    fn check(header: &str) -> Result<i64, SignatureError> {
        verify(BODY, Some(header), &[SECRET], NOW, TOLERANCE_SECS)
    }

    /// A signature computed outside this module: HMAC-SHA256 of "t.body", as documented.
    fn reference_sig(secret: &str, t: i64, body: &[u8]) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        m.update(format!("{t}.").as_bytes());
        m.update(body);
        m.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn a_valid_signature_verifies() {
        let header = sign(BODY, SECRET, NOW);
        assert_eq!(
            header,
            format!("t={NOW},v1={}", reference_sig(SECRET, NOW, BODY))
        );
        assert_eq!(check(&header), Ok(NOW));
        // Stripe also sends a v0 signature (an older scheme) beside v1: ignored.
        let with_v0 = format!("{header},v0={}", reference_sig("whsec_other", NOW, BODY));
        assert_eq!(check(&with_v0), Ok(NOW));
    }

    #[test]
    fn one_valid_v1_among_several_is_enough() {
        let good = reference_sig(SECRET, NOW, BODY);
        let header = format!(
            "t={NOW},v1={},v1=nothex,v1={good},v1={}",
            reference_sig("whsec_wrong", NOW, BODY),
            "0".repeat(64)
        );
        assert_eq!(check(&header), Ok(NOW));
    }

    #[test]
    fn v0_alone_is_refused() {
        let header = format!("t={NOW},v0={}", reference_sig(SECRET, NOW, BODY));
        assert_eq!(check(&header), Err(SignatureError::NoSignature));
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        assert_eq!(
            check(&sign(BODY, "whsec_wrong", NOW)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let stale = sign(BODY, SECRET, NOW - TOLERANCE_SECS - 1);
        assert_eq!(
            check(&stale),
            Err(SignatureError::OutsideTolerance {
                skew: TOLERANCE_SECS + 1,
                tolerance: TOLERANCE_SECS
            })
        );
        let future = sign(BODY, SECRET, NOW + TOLERANCE_SECS + 1);
        assert!(matches!(
            check(&future),
            Err(SignatureError::OutsideTolerance { skew, .. }) if skew == -(TOLERANCE_SECS + 1)
        ));
        // At the edges of the tolerance it still holds.
        assert!(check(&sign(BODY, SECRET, NOW - TOLERANCE_SECS)).is_ok());
        assert!(check(&sign(BODY, SECRET, NOW + TOLERANCE_SECS)).is_ok());
        // A timestamp that was signed and then changed no longer matches.
        let sig = reference_sig(SECRET, NOW, BODY);
        assert_eq!(
            check(&format!("t={},v1={sig}", NOW - 1)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_body_changed_by_one_byte_is_refused() {
        let header = sign(BODY, SECRET, NOW);
        let mut changed = BODY.to_vec();
        let i = changed.len() / 2;
        changed[i] ^= 0x01;
        assert_eq!(
            verify(&changed, Some(&header), &[SECRET], NOW, TOLERANCE_SECS),
            Err(SignatureError::Mismatch)
        );
        let mut longer = BODY.to_vec();
        longer.push(b' ');
        assert_eq!(
            verify(&longer, Some(&header), &[SECRET], NOW, TOLERANCE_SECS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let sig = reference_sig(SECRET, NOW, BODY);
        assert_eq!(check(""), Err(SignatureError::Missing));
        for (header, want) in [
            (format!("v1={sig}"), SignatureError::NoTimestamp),
            (format!("t=yesterday,v1={sig}"), SignatureError::NoTimestamp),
            (format!("t={NOW}"), SignatureError::NoSignature),
            ("garbage".to_string(), SignatureError::NoTimestamp),
            (format!("t={NOW};v1={sig}"), SignatureError::NoTimestamp),
            (
                format!("t={NOW},v1={}", &sig[..63]),
                SignatureError::Mismatch,
            ),
        ] {
            assert_eq!(check(&header), Err(want), "{header}");
        }
        assert_eq!(
            verify(BODY, None, &[SECRET], NOW, TOLERANCE_SECS),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(BODY, Some("  "), &[SECRET], NOW, TOLERANCE_SECS),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(
                b"",
                Some(&sign(b"", SECRET, NOW)),
                &[SECRET],
                NOW,
                TOLERANCE_SECS
            ),
            Err(SignatureError::EmptyPayload)
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let secrets = [SECRET, OLD];
        for s in secrets {
            let header = sign(BODY, s, NOW);
            assert_eq!(
                verify(BODY, Some(&header), &secrets, NOW, TOLERANCE_SECS),
                Ok(NOW)
            );
        }
        // Stripe signs with both while the old secret lives: one header, two v1 values.
        let both = format!(
            "t={NOW},v1={},v1={}",
            reference_sig(OLD, NOW, BODY),
            reference_sig(SECRET, NOW, BODY)
        );
        assert_eq!(
            verify(BODY, Some(&both), &[SECRET], NOW, TOLERANCE_SECS),
            Ok(NOW)
        );
        // Once the old secret is removed from the configuration it no longer verifies.
        assert_eq!(
            verify(
                BODY,
                Some(&sign(BODY, OLD, NOW)),
                &[SECRET],
                NOW,
                TOLERANCE_SECS
            ),
            Err(SignatureError::Mismatch)
        );
    }
}
