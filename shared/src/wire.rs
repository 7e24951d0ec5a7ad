//! The edge -> origin wire: what a tunnelled request carries so the origin can trust it.
//!
//! The edge Worker vouches for a request (who sent it, their tier and clearance, the client's
//! IP, which property it arrived on) by adding `x-heady-*` headers and a signature over a
//! canonical form of the request. The origin recomputes the canonical form from what it
//! received, verifies the signature, and checks freshness; only then does it believe the
//! headers. Replay detection (remembering nonces for the freshness window) is the origin's
//! job: it needs shared state, and this module is pure.
//!
//! The signature scheme sits behind [`TunnelAuthenticator`]: the shared-secret HMAC
//! ([`HmacSha256`], canonical form `heady-tunnel-v1`) or a MAC under the key of a post-quantum
//! hybrid session ([`SessionMac`], `heady-tunnel-v2`, which also binds the session id; the
//! session's ticket travels in [`header::SESSION`]).

use crate::classification::Classification;
use crate::tiers::Tier;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::fmt;

/// Header names (lowercase, as HTTP/2 and the Fetch API present them).
pub mod header {
    /// The property hostname the client asked for (the transport `Host` is the origin's).
    pub const HOST: &str = "x-heady-host";
    /// A [`crate::Subject`]: `user:<name>` for an API key's holder, `ip:<address>` (an IPv6
    /// client by its /64) for an anonymous caller.
    pub const SUBJECT: &str = "x-heady-subject";
    /// `free`, `pro` or `enterprise`.
    pub const TIER: &str = "x-heady-tier";
    /// `PUBLIC`, `INTERNAL`, `PROPRIETARY` or `RESTRICTED`.
    pub const CLEARANCE: &str = "x-heady-clearance";
    /// The client's IP as the edge saw it (`CF-Connecting-IP`).
    pub const CLIENT_IP: &str = "x-heady-client-ip";
    /// Unix seconds when the edge signed the request.
    pub const TIMESTAMP: &str = "x-heady-timestamp";
    /// 16-64 characters of `[A-Za-z0-9_-]`, unique per request.
    pub const NONCE: &str = "x-heady-nonce";
    /// `<scheme> <signature>`, e.g. `hmac-sha256 3f2a...` (lowercase hex).
    pub const SIGNATURE: &str = "x-heady-signature";
    /// Under a session: the ticket the origin issued (hex), opaque to the edge.
    pub const SESSION: &str = "x-heady-session";

    /// Every header the edge sets; the origin should drop these from unverified requests,
    /// and the edge strips any a client sent before signing.
    pub const ALL: [&str; 8] = [
        HOST, SUBJECT, TIER, CLEARANCE, CLIENT_IP, TIMESTAMP, NONCE, SIGNATURE,
    ];
}

/// Version tag at the start of the canonical form: a new layout gets a new tag, so a
/// signature over one layout never verifies as another.
pub const CANONICAL_VERSION: &str = "heady-tunnel-v1";
/// The tag of the canonical form MAC'd under a session key; the session id follows the nonce.
pub const SESSION_CANONICAL_VERSION: &str = "heady-tunnel-v2";

/// How far a timestamp may be from the verifier's clock, either way. The origin must remember
/// nonces for at least `2 * DEFAULT_MAX_SKEW_SECS` to refuse every replay.
pub const DEFAULT_MAX_SKEW_SECS: u64 = 60;

/// Smallest accepted HMAC key; a shorter secret is a configuration error.
pub const MIN_KEY_BYTES: usize = 32;

/// What the edge vouches for. Every field is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The property hostname the client used (lowercase, no port).
    pub host: String,
    /// A [`crate::Subject`] as text; the origin parses it again (`Subject::from_str`).
    pub subject: String,
    pub tier: Tier,
    pub clearance: Classification,
    pub client_ip: String,
    /// Unix seconds.
    pub timestamp: u64,
    pub nonce: String,
}

/// The parts of the HTTP request that are signed, as sent on the wire by the edge and as
/// received by the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// Any case; canonicalised to uppercase.
    pub method: &'a str,
    /// The path exactly as on the wire (percent-encoding untouched), starting with `/`.
    pub path: &'a str,
    /// The query string exactly as on the wire, without the `?`; empty when there is none.
    pub query: &'a str,
    /// SHA-256 of the request body bytes ([`body_sha256`]); of the empty string when none.
    pub body_sha256: [u8; 32],
}

/// Why a tunnelled request was not trusted. Each becomes a 401 at the origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("missing header {0}: the request was not signed by the edge")]
    MissingHeader(&'static str),
    #[error("header {header} is malformed: {problem}")]
    MalformedHeader {
        header: &'static str,
        problem: String,
    },
    #[error("unsupported signature scheme {found:?} (expected {expected:?})")]
    WrongScheme {
        found: String,
        expected: &'static str,
    },
    #[error("signature does not match the request")]
    BadSignature,
    #[error("timestamp {timestamp} is {age_secs}s old (at most {max_skew_secs}s allowed)")]
    Stale {
        timestamp: u64,
        age_secs: u64,
        max_skew_secs: u64,
    },
    #[error(
        "timestamp {timestamp} is {ahead_secs}s in the future (at most {max_skew_secs}s allowed)"
    )]
    FromTheFuture {
        timestamp: u64,
        ahead_secs: u64,
        max_skew_secs: u64,
    },
    #[error("tunnel key must be at least {MIN_KEY_BYTES} bytes, got {0}")]
    KeyTooShort(usize),
}

/// Signs and verifies canonical request bytes. Implementations must compare in constant time.
pub trait TunnelAuthenticator {
    /// The scheme name written before the signature in [`header::SIGNATURE`].
    fn scheme(&self) -> &'static str;
    /// The bytes signed for a request: [`canonical`] unless the scheme binds more.
    fn canonical(&self, request: &RequestLine<'_>, envelope: &Envelope) -> Vec<u8> {
        canonical(request, envelope)
    }
    /// The signature of `canonical`, as the text that follows the scheme in the header.
    fn sign(&self, canonical: &[u8]) -> String;
    /// `Ok` exactly when `signature` (the text after the scheme) signs `canonical`.
    fn verify(&self, canonical: &[u8], signature: &str) -> Result<(), WireError>;
}

/// HMAC-SHA256 with a secret shared by the Worker (`HEADY_TUNNEL_KEY`) and the origin.
#[derive(Clone)]
pub struct HmacSha256 {
    key: Vec<u8>,
}

impl HmacSha256 {
    pub const SCHEME: &'static str = "hmac-sha256";

    /// The key is the secret's bytes as configured (e.g. 64 hex characters used as text).
    pub fn new(key: &[u8]) -> Result<HmacSha256, WireError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(WireError::KeyTooShort(key.len()));
        }
        Ok(HmacSha256 { key: key.to_vec() })
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }
}

impl fmt::Debug for HmacSha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSha256 { key: <redacted> }")
    }
}

impl TunnelAuthenticator for HmacSha256 {
    fn scheme(&self) -> &'static str {
        Self::SCHEME
    }

    fn sign(&self, canonical: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(canonical);
        hex_encode(&mac.finalize().into_bytes())
    }

    fn verify(&self, canonical: &[u8], signature: &str) -> Result<(), WireError> {
        let tag = hex_decode(signature).ok_or(WireError::BadSignature)?;
        let mut mac = self.mac();
        mac.update(canonical);
        mac.verify_slice(&tag).map_err(|_| WireError::BadSignature)
    }
}

/// HMAC-SHA256 under a session's key (from the post-quantum hybrid handshake, see
/// [`crate::tunnel`]) over the `heady-tunnel-v2` canonical form, which adds the session id.
#[derive(Clone)]
pub struct SessionMac {
    key: [u8; 32],
    session_id: [u8; 16],
}

impl SessionMac {
    pub const SCHEME: &'static str = "session-hmac-sha256";

    pub fn new(key: [u8; 32], session_id: [u8; 16]) -> SessionMac {
        SessionMac { key, session_id }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }
}

impl fmt::Debug for SessionMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SessionMac {{ session_id: {}, key: <redacted> }}",
            hex_encode(&self.session_id)
        )
    }
}

impl TunnelAuthenticator for SessionMac {
    fn scheme(&self) -> &'static str {
        Self::SCHEME
    }

    fn canonical(&self, request: &RequestLine<'_>, envelope: &Envelope) -> Vec<u8> {
        canonical_form(
            SESSION_CANONICAL_VERSION,
            request,
            envelope,
            Some(&hex_encode(&self.session_id)),
        )
    }

    fn sign(&self, canonical: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(canonical);
        hex_encode(&mac.finalize().into_bytes())
    }

    fn verify(&self, canonical: &[u8], signature: &str) -> Result<(), WireError> {
        let tag = hex_decode(signature).ok_or(WireError::BadSignature)?;
        let mut mac = self.mac();
        mac.update(canonical);
        mac.verify_slice(&tag).map_err(|_| WireError::BadSignature)
    }
}

/// The scheme named in a signature header value (`<scheme> <signature>`), if it has one.
pub fn scheme_of(signature_header: &str) -> Option<&str> {
    signature_header.trim().split_once(' ').map(|(s, _)| s)
}

/// SHA-256 of a request body.
pub fn body_sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// The bytes that are signed. Each field is written as `<byte length>:<value>\n` after the
/// version tag, so no choice of field values can make two different requests share a form.
pub fn canonical(request: &RequestLine<'_>, envelope: &Envelope) -> Vec<u8> {
    canonical_form(CANONICAL_VERSION, request, envelope, None)
}

/// The canonical form under `version`, with `extra` (a session id) after the nonce.
fn canonical_form(
    version: &str,
    request: &RequestLine<'_>,
    envelope: &Envelope,
    extra: Option<&str>,
) -> Vec<u8> {
    let method = request.method.to_ascii_uppercase();
    let host = envelope.host.to_ascii_lowercase();
    let body = hex_encode(&request.body_sha256);
    let timestamp = envelope.timestamp.to_string();
    let fields: [&str; 12] = [
        version,
        &method,
        &host,
        request.path,
        request.query,
        &body,
        &envelope.subject,
        envelope.tier.as_str(),
        envelope.clearance.as_str(),
        &envelope.client_ip,
        &timestamp,
        &envelope.nonce,
    ];
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 8).sum::<usize>() + 40);
    for field in fields.into_iter().chain(extra) {
        out.extend_from_slice(field.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The headers the edge adds to a tunnelled request: every [`Envelope`] field plus the
/// signature. The caller removes any `x-heady-*` header the client sent first.
pub fn sign(
    auth: &dyn TunnelAuthenticator,
    request: &RequestLine<'_>,
    envelope: &Envelope,
) -> Vec<(&'static str, String)> {
    let signature = auth.sign(&auth.canonical(request, envelope));
    vec![
        (header::HOST, envelope.host.to_ascii_lowercase()),
        (header::SUBJECT, envelope.subject.clone()),
        (header::TIER, envelope.tier.as_str().to_owned()),
        (header::CLEARANCE, envelope.clearance.as_str().to_owned()),
        (header::CLIENT_IP, envelope.client_ip.clone()),
        (header::TIMESTAMP, envelope.timestamp.to_string()),
        (header::NONCE, envelope.nonce.clone()),
        (header::SIGNATURE, format!("{} {signature}", auth.scheme())),
    ]
}

/// Checks a request the origin received. `header` looks a header up by lowercase name (the
/// first value); `now` is the verifier's Unix time in seconds. On success the envelope's
/// fields can be trusted; the caller must still refuse a nonce it has seen within
/// `2 * max_skew_secs`.
pub fn verify<'h>(
    auth: &dyn TunnelAuthenticator,
    request: &RequestLine<'_>,
    header: impl Fn(&str) -> Option<&'h str>,
    now: u64,
    max_skew_secs: u64,
) -> Result<Envelope, WireError> {
    let get = |name: &'static str| header(name).ok_or(WireError::MissingHeader(name));
    let signature_header = get(header::SIGNATURE)?;
    let (scheme, signature) =
        signature_header
            .trim()
            .split_once(' ')
            .ok_or_else(|| WireError::MalformedHeader {
                header: header::SIGNATURE,
                problem: "expected \"<scheme> <signature>\"".to_owned(),
            })?;
    if scheme != auth.scheme() {
        return Err(WireError::WrongScheme {
            found: scheme.to_owned(),
            expected: auth.scheme(),
        });
    }
    let malformed =
        |header: &'static str, problem: String| WireError::MalformedHeader { header, problem };
    let tier_text = get(header::TIER)?;
    let tier = tier_text
        .parse::<Tier>()
        .map_err(|e| malformed(header::TIER, e.to_string()))?;
    let clearance = get(header::CLEARANCE)?
        .parse::<Classification>()
        .map_err(|e| malformed(header::CLEARANCE, e.to_string()))?;
    let timestamp_text = get(header::TIMESTAMP)?;
    let timestamp = timestamp_text
        .parse::<u64>()
        .ok()
        .filter(|_| timestamp_text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            malformed(
                header::TIMESTAMP,
                format!("{timestamp_text:?} is not Unix seconds"),
            )
        })?;
    let nonce = get(header::NONCE)?;
    if !is_valid_nonce(nonce) {
        return Err(malformed(
            header::NONCE,
            "expected 16-64 characters of A-Z, a-z, 0-9, '_' and '-'".to_owned(),
        ));
    }
    let envelope = Envelope {
        host: get(header::HOST)?.to_owned(),
        subject: get(header::SUBJECT)?.to_owned(),
        tier,
        clearance,
        client_ip: get(header::CLIENT_IP)?.to_owned(),
        timestamp,
        nonce: nonce.to_owned(),
    };
    // The tier header must be written exactly as the edge writes it, or two spellings of one
    // tier would both verify under a signature over the canonical spelling.
    if tier_text != tier.as_str() {
        return Err(malformed(
            header::TIER,
            format!("{tier_text:?} is not lowercase"),
        ));
    }
    auth.verify(&auth.canonical(request, &envelope), signature)?;
    check_freshness(timestamp, now, max_skew_secs)?;
    Ok(envelope)
}

/// `Ok` when `timestamp` is within `max_skew_secs` of `now`, in either direction.
pub fn check_freshness(timestamp: u64, now: u64, max_skew_secs: u64) -> Result<(), WireError> {
    if timestamp <= now {
        let age_secs = now - timestamp;
        if age_secs > max_skew_secs {
            return Err(WireError::Stale {
                timestamp,
                age_secs,
                max_skew_secs,
            });
        }
    } else {
        let ahead_secs = timestamp - now;
        if ahead_secs > max_skew_secs {
            return Err(WireError::FromTheFuture {
                timestamp,
                ahead_secs,
                max_skew_secs,
            });
        }
    }
    Ok(())
}

/// A nonce the edge may send: 16-64 characters of `[A-Za-z0-9_-]`.
pub fn is_valid_nonce(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Lowercase hex of `bytes` (also used by the edge to print nonces).
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// The bytes of a hex string (either case); `None` when it is not hex.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef-test-key";
    const NOW: u64 = 1_790_000_000;

    fn envelope() -> Envelope {
        Envelope {
            host: "headyapi.com".into(),
            subject: "key:k_123".into(),
            tier: Tier::Pro,
            clearance: Classification::Internal,
            client_ip: "203.0.113.7".into(),
            timestamp: NOW,
            nonce: "n0nce-0123456789abcdef".into(),
        }
    }

    fn body() -> &'static [u8] {
        br#"{"content":"hello","embedding":[0.1,0.2]}"#
    }

    fn line(body: &[u8]) -> RequestLine<'_> {
        RequestLine {
            method: "POST",
            path: "/api/memory/vectors",
            query: "session=s1",
            body_sha256: body_sha256(body),
        }
    }

    fn signed_headers() -> HashMap<&'static str, String> {
        let auth = HmacSha256::new(KEY).unwrap();
        sign(&auth, &line(body()), &envelope())
            .into_iter()
            .collect()
    }

    fn check(
        headers: &HashMap<&'static str, String>,
        request: &RequestLine<'_>,
        now: u64,
    ) -> Result<Envelope, WireError> {
        let auth = HmacSha256::new(KEY).unwrap();
        verify(
            &auth,
            request,
            |name| headers.get(name).map(String::as_str),
            now,
            DEFAULT_MAX_SKEW_SECS,
        )
    }

    #[test]
    fn a_signed_request_verifies_and_yields_the_envelope() {
        let headers = signed_headers();
        assert_eq!(check(&headers, &line(body()), NOW), Ok(envelope()));
        assert!(headers[header::SIGNATURE].starts_with("hmac-sha256 "));
        assert_eq!(headers.len(), header::ALL.len());
        assert!(header::ALL.iter().all(|h| headers.contains_key(h)));
    }

    #[test]
    fn method_case_does_not_matter_but_method_does() {
        let headers = signed_headers();
        let lower = RequestLine {
            method: "post",
            ..line(body())
        };
        assert!(check(&headers, &lower, NOW).is_ok());
        let put = RequestLine {
            method: "PUT",
            ..line(body())
        };
        assert_eq!(check(&headers, &put, NOW), Err(WireError::BadSignature));
    }

    #[test]
    fn tampering_with_the_request_line_or_body_is_detected() {
        let headers = signed_headers();
        let tampered = [
            RequestLine {
                path: "/api/memory/search",
                ..line(body())
            },
            RequestLine {
                query: "session=s2",
                ..line(body())
            },
            RequestLine {
                query: "",
                ..line(body())
            },
            line(br#"{"content":"hellO","embedding":[0.1,0.2]}"#),
            line(b""),
        ];
        for request in tampered {
            assert_eq!(
                check(&headers, &request, NOW),
                Err(WireError::BadSignature),
                "{request:?}"
            );
        }
    }

    #[test]
    fn tampering_with_any_envelope_header_is_detected() {
        let changes: [(&str, &str); 7] = [
            (header::HOST, "headyme.com"),
            (header::SUBJECT, "key:k_124"),
            (header::TIER, "enterprise"),
            (header::CLEARANCE, "RESTRICTED"),
            (header::CLIENT_IP, "203.0.113.8"),
            (header::TIMESTAMP, "1790000001"),
            (header::NONCE, "n0nce-0123456789abcdeF"),
        ];
        for (name, value) in changes {
            let mut headers = signed_headers();
            headers.insert(name, value.to_owned());
            assert_eq!(
                check(&headers, &line(body()), NOW),
                Err(WireError::BadSignature),
                "{name}"
            );
        }
        let mut headers = signed_headers();
        let sig = headers[header::SIGNATURE].clone();
        let flipped = if sig.ends_with('0') { "1" } else { "0" };
        headers.insert(
            header::SIGNATURE,
            format!("{}{flipped}", &sig[..sig.len() - 1]),
        );
        assert_eq!(
            check(&headers, &line(body()), NOW),
            Err(WireError::BadSignature)
        );
    }

    #[test]
    fn a_different_key_does_not_verify() {
        let headers = signed_headers();
        let other = HmacSha256::new(b"another-key-another-key-another-key!").unwrap();
        let result = verify(
            &other,
            &line(body()),
            |name| headers.get(name).map(String::as_str),
            NOW,
            DEFAULT_MAX_SKEW_SECS,
        );
        assert_eq!(result, Err(WireError::BadSignature));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_at_the_edge_of_the_window() {
        let headers = signed_headers();
        let max = DEFAULT_MAX_SKEW_SECS;
        assert!(check(&headers, &line(body()), NOW + max).is_ok());
        assert!(check(&headers, &line(body()), NOW - max).is_ok());
        assert_eq!(
            check(&headers, &line(body()), NOW + max + 1),
            Err(WireError::Stale {
                timestamp: NOW,
                age_secs: max + 1,
                max_skew_secs: max
            })
        );
        assert_eq!(
            check(&headers, &line(body()), NOW - max - 1),
            Err(WireError::FromTheFuture {
                timestamp: NOW,
                ahead_secs: max + 1,
                max_skew_secs: max
            })
        );
    }

    #[test]
    fn missing_headers_mean_unsigned() {
        for name in header::ALL {
            let mut headers = signed_headers();
            headers.remove(name);
            assert_eq!(
                check(&headers, &line(body()), NOW),
                Err(WireError::MissingHeader(name)),
                "{name}"
            );
        }
    }

    #[test]
    fn malformed_headers_name_the_header() {
        let cases: [(&str, &str, &str); 6] = [
            (header::SIGNATURE, "hmac-sha256", header::SIGNATURE),
            (header::TIER, "gold", header::TIER),
            (header::TIER, "Pro", header::TIER),
            (header::CLEARANCE, "secret", header::CLEARANCE),
            (header::TIMESTAMP, "+1790000000", header::TIMESTAMP),
            (header::NONCE, "short", header::NONCE),
        ];
        for (name, value, named) in cases {
            let mut headers = signed_headers();
            headers.insert(name, value.to_owned());
            match check(&headers, &line(body()), NOW) {
                Err(WireError::MalformedHeader { header, .. }) => assert_eq!(header, named),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
        let mut headers = signed_headers();
        headers.insert(header::SIGNATURE, "ml-dsa-65 abcd".to_owned());
        assert!(matches!(
            check(&headers, &line(body()), NOW),
            Err(WireError::WrongScheme { .. })
        ));
        headers.insert(header::SIGNATURE, "hmac-sha256 not-hex".to_owned());
        assert_eq!(
            check(&headers, &line(body()), NOW),
            Err(WireError::BadSignature)
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(
            HmacSha256::new(b"short").unwrap_err(),
            WireError::KeyTooShort(5)
        );
        assert!(!format!("{:?}", HmacSha256::new(KEY).unwrap()).contains("0123"));
    }

    #[test]
    fn the_canonical_form_is_length_prefixed_and_unambiguous() {
        let a = Envelope {
            subject: "key:a\n5:b".into(),
            ..envelope()
        };
        let b = Envelope {
            subject: "key:a".into(),
            client_ip: "b\n203.0.113.7".into(),
            ..envelope()
        };
        assert_ne!(canonical(&line(b""), &a), canonical(&line(b""), &b));
        let text = String::from_utf8(canonical(&line(b""), &envelope())).unwrap();
        assert!(text.starts_with("15:heady-tunnel-v1\n4:POST\n12:headyapi.com\n"));
        assert!(text
            .contains("\n64:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"));
    }

    #[test]
    fn hmac_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2; its key is shorter than MIN_KEY_BYTES, so use the MAC directly.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex_encode(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(hex_decode("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(hex_decode("abc"), None);
    }

    #[test]
    fn session_macs_bind_the_session_and_differ_from_hmac() {
        let session = SessionMac::new([7; 32], [8; 16]);
        let headers: HashMap<&'static str, String> = sign(&session, &line(body()), &envelope())
            .into_iter()
            .collect();
        assert!(headers[header::SIGNATURE].starts_with("session-hmac-sha256 "));
        let verify_with = |auth: &dyn TunnelAuthenticator| {
            verify(
                auth,
                &line(body()),
                |name| headers.get(name).map(String::as_str),
                NOW,
                DEFAULT_MAX_SKEW_SECS,
            )
        };
        assert_eq!(verify_with(&session), Ok(envelope()));
        // Another session id or key under the same scheme: the MAC does not match.
        assert_eq!(
            verify_with(&SessionMac::new([7; 32], [9; 16])),
            Err(WireError::BadSignature)
        );
        assert_eq!(
            verify_with(&SessionMac::new([6; 32], [8; 16])),
            Err(WireError::BadSignature)
        );
        // The HMAC verifier does not take a session's signature, nor the other way round.
        assert!(matches!(
            verify_with(&HmacSha256::new(KEY).unwrap()),
            Err(WireError::WrongScheme { .. })
        ));
        let v2 = String::from_utf8(session.canonical(&line(body()), &envelope())).unwrap();
        assert!(
            v2.starts_with("15:heady-tunnel-v2\n")
                && v2.ends_with("\n32:08080808080808080808080808080808\n")
        );
        assert_eq!(
            scheme_of("session-hmac-sha256 00"),
            Some(SessionMac::SCHEME)
        );
        assert_eq!(scheme_of("nonsense"), None);
        assert!(!format!("{session:?}").contains("0707"));
    }
}
