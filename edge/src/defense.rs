//! Edge defense rules (pure): who is asking (a bearer key, a PQC API key's signature, or
//! the client's address), how their state is named and kept in KV, how isolate-local counts
//! merge with what KV holds, and when a KV key may be written again.
//!
//! The decisions themselves (sliding window, ban rule, RateLimit headers) are heady-shared's
//! `SubjectPolicy`; this module only adapts them to KV's limits: one write per key per second,
//! eventual consistency, TTLs of at least 60 seconds.

use heady_shared::http_sig::{self, PublicKey, SigError};
use heady_shared::identity::{IdentityError, PqKeyAnswer};
use heady_shared::limiter::{SlidingWindow, SubjectState, WindowState};
use heady_shared::wire::{body_sha256, hex_encode};
use heady_shared::{ApiError, Classification, ErrorCode, IdentityAnswer, Subject, Tier};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// KV accepts at most one write per key per second.
pub const MIN_KV_WRITE_INTERVAL_MS: u64 = 1000;
/// KV's smallest `expirationTtl`. A cached session may be trusted for less: it carries its own
/// expiry ([`CachedSession::until_ms`]).
pub const MIN_KV_TTL_SECS: u64 = 60;
/// How long an isolate trusts its copy of a ban-list entry (or its absence).
pub const BAN_CACHE_MS: u64 = 5_000;
/// How long an isolate trusts a session it read from KV before reading KV again; never past
/// the session's own expiry, so a tier change reaches the edge within the origin's `ttl_secs`
/// (at most 60 s).
pub const SESSION_CACHE_MS: u64 = 5_000;

/// Failed authentications (unknown, revoked or malformed keys) one client address (an IPv6
/// client: its /64) may make per [`FAILED_AUTH_WINDOW_MS`] before further keys it sends are
/// refused with 429 `too_many_failed_auth`, as at the origin. `FAILED_AUTH_LIMIT` (a Worker
/// variable) changes it.
pub const DEFAULT_FAILED_AUTH_LIMIT: u32 = 20;
pub const FAILED_AUTH_WINDOW_MS: u64 = 60_000;
/// How long a key the origin refused is remembered (isolate and KV): a flood of bad keys
/// costs one origin round trip per key, not per request.
pub const REFUSED_KEY_CACHE_SECS: u64 = 60;

/// The failed-authentication counter: a sliding window of `limit` per minute.
pub fn failed_auth_window(limit: u32) -> SlidingWindow {
    // A minute and a limit below u32::MAX are always a valid window.
    SlidingWindow::new(limit, FAILED_AUTH_WINDOW_MS)
        .unwrap_or_else(|_| failed_auth_window(DEFAULT_FAILED_AUTH_LIMIT))
}

/// The KV key of a client address's failed-authentication count.
pub fn failed_auth_key(client: &Subject) -> String {
    format!("af:{client}")
}

/// 429 for a client address over the failed-authentication limit.
pub fn too_many_failed_auth(limit: u32, retry_after_secs: u64) -> ApiError {
    ApiError::new(
        ErrorCode::TooManyFailedAuth,
        format!("more than {limit} failed API keys from this address in a minute: try again later"),
    )
    .with_retry_after(retry_after_secs.max(1))
}

/// What the session cache holds for an API key: whom it identifies, until when, or the
/// origin's refusal (kept [`REFUSED_KEY_CACHE_SECS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CachedKey {
    Known(CachedSession),
    Refused { refused: ApiError },
}

impl CachedKey {
    /// Until when (Unix ms) an isolate may use this entry without reading KV again.
    pub fn isolate_until(&self, now_ms: u64) -> u64 {
        match self {
            CachedKey::Known(s) => (now_ms + SESSION_CACHE_MS).min(s.until_ms.unwrap_or(u64::MAX)),
            CachedKey::Refused { .. } => now_ms + REFUSED_KEY_CACHE_SECS * 1000,
        }
    }
}

/// A session as the cache keeps it: the session and when the origin's answer stops being
/// trusted. KV keeps the entry at least [`MIN_KV_TTL_SECS`], so the expiry inside it is what
/// bounds how long a tier change takes to reach the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedSession {
    pub subject: Subject,
    pub tier: Tier,
    pub clearance: Classification,
    /// Unix ms. Entries written without one are trusted until KV drops them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

impl CachedSession {
    /// `session`, trusted for `ttl_secs` from `now_ms`.
    pub fn new(session: Session, now_ms: u64, ttl_secs: u64) -> CachedSession {
        CachedSession {
            subject: session.subject,
            tier: session.tier,
            clearance: session.clearance,
            until_ms: Some(now_ms.saturating_add(ttl_secs.saturating_mul(1000))),
        }
    }

    pub fn is_fresh(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }

    pub fn session(&self) -> Session {
        Session {
            subject: self.subject.clone(),
            tier: self.tier,
            clearance: self.clearance,
        }
    }
}

/// The account whose memory a caller may use: `Err(401)` for an anonymous caller and 403
/// for a key below INTERNAL clearance (the origin classes memory search INTERNAL), 403
/// `memory_unavailable` for a key without an account. The account id is the Vectorize
/// namespace of the caller's rows.
pub fn memory_owner(session: &Session) -> Result<String, ApiError> {
    let class = Classification::Internal;
    if session.subject.is_anonymous() {
        return Err(ApiError::new(
            ErrorCode::AuthenticationRequired,
            format!("memory is {class}: anonymous callers have no memory; send an API key (Authorization: Bearer hk_...)"),
        ));
    }
    if !session.clearance.permits(class) {
        return Err(ApiError::new(
            ErrorCode::InsufficientClearance,
            format!(
                "memory is {class}; the key's clearance is {}",
                session.clearance
            ),
        ));
    }
    session
        .subject
        .account_id()
        .map(|a| a.to_string())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::MemoryUnavailable,
                "this key belongs to no account, so it has no memory",
            )
        })
}

/// An API key from `Authorization: Bearer hk_...`. Never logged or stored: KV keys use its
/// SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The KV key of this API key's cached session.
    pub fn session_key(&self) -> String {
        format!("sess:{}", hex_encode(&body_sha256(self.0.as_bytes())))
    }
}

/// Reads `Authorization`. No header: anonymous. A header that is not a well-formed Heady API
/// key is refused rather than silently treated as anonymous.
pub fn parse_authorization(header: Option<&str>) -> Result<Option<ApiKey>, ApiError> {
    let Some(value) = header.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let invalid = |why: &str| {
        ApiError::new(
            ErrorCode::InvalidApiKey,
            format!("Authorization must be \"Bearer hk_<key>\": {why}"),
        )
    };
    let (scheme, token) = value.split_once(' ').ok_or_else(|| invalid("no scheme"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(invalid("only the Bearer scheme is accepted"));
    }
    let token = token.trim();
    let Some(rest) = token.strip_prefix("hk_") else {
        return Err(invalid("Heady API keys start with hk_"));
    };
    if !(16..=128).contains(&rest.len())
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "the key is 16-128 characters of A-Z, a-z, 0-9, '_' and '-' after hk_",
        ));
    }
    Ok(Some(ApiKey(token.to_owned())))
}

/// The client's address from `CF-Connecting-IP`. Cloudflare always sets it; without one (or
/// with garbage) the caller is `0.0.0.0`, one address all such callers share, so leaving the
/// header out cannot buy a fresh limit.
pub fn client_ip(header: Option<&str>) -> IpAddr {
    header
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Who a request is counted against, and what they may see. Cached in KV as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub subject: Subject,
    pub tier: Tier,
    pub clearance: Classification,
}

impl Session {
    /// An anonymous caller: Free, PUBLIC, counted by address (an IPv6 client by its /64).
    pub fn anonymous(ip: IpAddr) -> Session {
        Session {
            subject: Subject::anonymous(ip),
            tier: Tier::Free,
            clearance: Classification::Public,
        }
    }
}

/// Reads the origin's answer to a key lookup into the session to cache and how long to trust
/// it (seconds, 1-60; the KV entry itself lives at least [`MIN_KV_TTL_SECS`]).
pub fn parse_identity(body: &str) -> Result<(Session, u64), IdentityError> {
    let answer = IdentityAnswer::parse_key_holder(body)?;
    let ttl = answer.cache_ttl_secs();
    Ok((
        Session {
            subject: answer.subject,
            tier: answer.tier,
            clearance: answer.clearance,
        },
        ttl,
    ))
}

/// Does the request carry an RFC 9421 signature (`Signature-Input` or `Signature`)? Such a
/// request is a PQC API key's, whatever else it holds, exactly as at the origin.
pub fn is_signed(signature_input: bool, signature: bool) -> bool {
    signature_input || signature
}

/// 400 for a request with both a bearer key and a signature, as at the origin.
pub fn conflicting_credentials() -> ApiError {
    ApiError::new(
        ErrorCode::ConflictingCredentials,
        "the request carries both a bearer key (Authorization) and a PQC signature (Signature-Input): send one",
    )
}

/// A signed request as the edge received it: the signature headers, the request target with
/// `authority` the property host the client called (what the edge vouches for to the origin),
/// and the body the edge forwards.
pub struct SignedRequest<'a> {
    pub signature_input: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub target: http_sig::Request<'a>,
    pub body: &'a [u8],
    /// A header field's value as the signature base takes it; `None` when absent.
    pub field: &'a dyn Fn(&str) -> Option<String>,
}

/// A signature that passed every check needing no key; [`PreparedSignature::accept`] does the
/// rest once the key is known.
pub struct PreparedSignature {
    keyid: String,
    signature: Vec<u8>,
    base: String,
}

impl std::fmt::Debug for PreparedSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedSignature(keyid {})", self.keyid)
    }
}

/// The refusal of a signature, with the origin's code and status (400 for a malformed one,
/// 401 for one that does not match or is stale).
pub fn signature_refused(e: SigError) -> ApiError {
    ApiError::new(e.code(), e.to_string())
}

fn unknown_pq_key() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequestSignature,
        "keyid names no registered ML-DSA-65 key (see `heady-origin keys list`)",
    )
}

/// The checks of a signed request that need no key, cheapest first, as the origin makes them:
/// the headers' shape, `created` within 300 s of `now_secs`, Content-Digest against the body,
/// the signature base; and a `keyid` shaped like a key id (else 401, no lookup).
pub fn prepare_signed(
    req: &SignedRequest<'_>,
    now_secs: u64,
) -> Result<PreparedSignature, ApiError> {
    let input = req
        .signature_input
        .ok_or(SigError::Missing("Signature-Input"))
        .map_err(signature_refused)?;
    let (sig, base) = http_sig::prepare(
        input,
        req.signature,
        &req.target,
        req.body,
        req.field,
        now_secs,
    )
    .map_err(signature_refused)?;
    let keyid = sig.input.keyid().to_string();
    if !http_sig::is_key_id(&keyid) {
        return Err(unknown_pq_key());
    }
    Ok(PreparedSignature {
        keyid,
        signature: sig.signature,
        base,
    })
}

impl PreparedSignature {
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The KV key of the key's cached session (a key id is public: no hash needed).
    pub fn session_key(&self) -> String {
        pq_session_key(&self.keyid)
    }

    /// Verifies the signature with the key's public key, then the account's tier: the
    /// session the request is counted against. 401 `invalid_request_signature` for a
    /// signature that does not verify, 403 `upgrade_required` for an account no longer
    /// Enterprise, as at the origin.
    pub fn accept(&self, session: &Session, key: &PublicKey) -> Result<Session, ApiError> {
        key.verify(self.base.as_bytes(), &self.signature)
            .map_err(signature_refused)?;
        if session.tier != Tier::Enterprise {
            return Err(ApiError::new(
                ErrorCode::UpgradeRequired,
                format!(
                    "PQC API keys are for Enterprise accounts; this key's account is {}",
                    session.tier
                ),
            ));
        }
        Ok(session.clone())
    }
}

/// The KV key of a PQC API key's cached session.
pub fn pq_session_key(keyid: &str) -> String {
    format!("pq:{keyid}")
}

/// Whether a refusal of a credential counts against the client's address: malformed,
/// unknown, revoked and bad ones (400, 401) do; a tier (403) or a throttle (429) does not.
pub fn counts_as_failed_auth(refusal: &ApiError) -> bool {
    matches!(refusal.status(), 400 | 401)
}

/// Reads the origin's answer for the PQC API key `keyid` into the session to cache, the
/// public key that verifies its signatures, and how long to trust them (seconds, 1-60).
pub fn parse_pq_identity(
    body: &str,
    keyid: &str,
) -> Result<(Session, PublicKey, u64), IdentityError> {
    let (answer, key) = PqKeyAnswer::parse(body, keyid)?;
    let ttl = answer.cache_ttl_secs();
    Ok((
        Session {
            subject: answer.subject,
            tier: answer.tier,
            clearance: answer.clearance,
        },
        key,
        ttl,
    ))
}

/// What the session cache holds for a PQC API key: its session and public key (base64), or
/// the origin's refusal; trusted as long as [`CachedKey`]'s entries are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CachedPqKey {
    Known {
        #[serde(flatten)]
        session: CachedSession,
        public_key: String,
    },
    Refused {
        refused: ApiError,
    },
}

impl CachedPqKey {
    pub fn known(session: CachedSession, key: &PublicKey) -> CachedPqKey {
        CachedPqKey::Known {
            session,
            public_key: key.to_base64(),
        }
    }

    /// Until when (Unix ms) an isolate may use this entry without reading KV again.
    pub fn isolate_until(&self, now_ms: u64) -> u64 {
        match self {
            CachedPqKey::Known { session, .. } => CachedKey::Known(session.clone()),
            CachedPqKey::Refused { refused } => CachedKey::Refused {
                refused: refused.clone(),
            },
        }
        .isolate_until(now_ms)
    }
}

pub fn ban_key(subject: &Subject) -> String {
    format!("ban:{subject}")
}

pub fn limit_key(subject: &Subject) -> String {
    format!("rl:{subject}")
}

/// A ban-list entry, written with a KV TTL equal to the ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRecord {
    pub until_ms: u64,
    #[serde(default)]
    pub reason: String,
}

impl BanRecord {
    /// Seconds left, rounded up; `None` once expired.
    pub fn retry_after_secs(&self, now_ms: u64) -> Option<u64> {
        (self.until_ms > now_ms).then(|| (self.until_ms - now_ms).div_ceil(1000))
    }
}

/// A KV `expirationTtl` of at least `secs`.
pub fn kv_ttl(secs: u64) -> u64 {
    secs.max(MIN_KV_TTL_SECS)
}

/// Combines this isolate's state with the copy read from KV. Both are moved to `now`'s
/// window first; then each counter takes the larger value. Taking the maximum (not the sum)
/// keeps an isolate from counting its own earlier writes twice; the price is that requests
/// admitted concurrently by different isolates inside one KV propagation delay are not added
/// up (the over-admission README states).
pub fn merge(
    local: &SubjectState,
    stored: &SubjectState,
    window_ms: u64,
    now_ms: u64,
) -> SubjectState {
    SubjectState {
        window: merge_window(&local.window, &stored.window, window_ms, now_ms),
        banned_until_ms: local.banned_until_ms.max(stored.banned_until_ms),
        offences: local.offences.max(stored.offences),
        offences_expire_at_ms: local
            .offences_expire_at_ms
            .max(stored.offences_expire_at_ms),
    }
}

/// [`merge`] for a bare window (the failed-authentication count): both moved to `now`'s
/// window, then each counter the larger.
pub fn merge_window(
    local: &WindowState,
    stored: &WindowState,
    window_ms: u64,
    now_ms: u64,
) -> WindowState {
    let roll = |w: &WindowState| {
        let mut w = *w;
        w.roll(window_ms, now_ms);
        w
    };
    let (a, b) = (roll(local), roll(stored));
    WindowState {
        window_start_ms: a.window_start_ms.max(b.window_start_ms),
        prev: a.prev.max(b.prev),
        curr: a.curr.max(b.curr),
        attempts: a.attempts.max(b.attempts),
    }
}

/// Per key: when it was last written, and whether a later write is already scheduled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSlot {
    pub last_write_ms: Option<u64>,
    pub scheduled: bool,
}

/// What to do with a changed limiter state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Write it now.
    Now,
    /// Write it after this many milliseconds (one delayed write per key at a time).
    After(u64),
    /// A delayed write is already pending; it will carry this change.
    Pending,
}

impl WriteSlot {
    /// Decides the next write so that no key is written twice within
    /// [`MIN_KV_WRITE_INTERVAL_MS`], and marks the slot accordingly.
    pub fn plan(&mut self, now_ms: u64) -> Flush {
        if self.scheduled {
            return Flush::Pending;
        }
        match self.last_write_ms {
            Some(last) if now_ms < last + MIN_KV_WRITE_INTERVAL_MS => {
                self.scheduled = true;
                Flush::After(last + MIN_KV_WRITE_INTERVAL_MS - now_ms)
            }
            _ => {
                self.last_write_ms = Some(now_ms);
                Flush::Now
            }
        }
    }

    /// A delayed write ran at `now_ms`.
    pub fn delayed_write_done(&mut self, now_ms: u64) {
        self.scheduled = false;
        self.last_write_ms = Some(now_ms);
    }
}

/// Request headers never passed to the origin: hop-by-hop, the transport's.
const DROPPED: [&str; 8] = [
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "te",
    "trailer",
];

/// Whether a client's request header goes on to the origin: all but the hop-by-hop and
/// transport ones, and anything a client could use to impersonate the edge (`x-heady-*`,
/// which the edge sets itself, and Cloudflare's `cf-*`). End-to-end credentials pass
/// unchanged: `Authorization`, and a PQC API key's `Signature-Input`, `Signature` and
/// `Content-Digest`, which the origin verifies over the same path, query and body.
pub fn passed_to_origin(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !(DROPPED.contains(&lower.as_str())
        || lower.starts_with("x-heady-")
        || lower.starts_with("cf-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use heady_shared::limiter::{BanPolicy, LimitOutcome, SubjectPolicy};

    #[test]
    fn end_to_end_credentials_reach_the_origin_and_edge_headers_do_not() {
        use heady_shared::http_sig::header;
        for name in [
            header::SIGNATURE_INPUT,
            header::SIGNATURE,
            header::CONTENT_DIGEST,
            "Signature-Input",
            "Authorization",
            "content-type",
        ] {
            assert!(passed_to_origin(name), "{name}");
        }
        for name in heady_shared::wire::header::ALL.into_iter().chain([
            "Host",
            "CF-Connecting-IP",
            "x-heady-session",
            "Content-Length",
        ]) {
            assert!(!passed_to_origin(name), "{name}");
        }
    }

    const KEY: &str = "hk_abcdefghijklmnop0123";

    #[test]
    fn authorization_is_a_bearer_heady_key_or_nothing() {
        assert_eq!(parse_authorization(None), Ok(None));
        assert_eq!(parse_authorization(Some("  ")), Ok(None));
        let key = parse_authorization(Some(&format!("Bearer {KEY}")))
            .unwrap()
            .unwrap();
        assert_eq!(key.as_str(), KEY);
        assert!(parse_authorization(Some(&format!("bearer  {KEY} "))).is_ok());
        for bad in [
            "Basic dXNlcjpwYXNz",
            "Bearer sk-openai-style-key-123456",
            "Bearer hk_short",
            "Bearer hk_has spaces in it here",
            "Bearer hk_quote\"0123456789abcdef",
            "hk_abcdefghijklmnop0123",
        ] {
            let err = parse_authorization(Some(bad)).unwrap_err();
            assert_eq!(
                (err.status(), err.code),
                (401, ErrorCode::InvalidApiKey),
                "{bad}"
            );
        }
        assert!(!format!("{key:?}").contains("abcdef"));
    }

    #[test]
    fn session_keys_hash_the_api_key() {
        let key = parse_authorization(Some(&format!("Bearer {KEY}")))
            .unwrap()
            .unwrap();
        let kv = key.session_key();
        assert!(kv.starts_with("sess:") && kv.len() == 5 + 64);
        assert!(!kv.contains(KEY));
    }

    #[test]
    fn client_ip_is_parsed_or_the_shared_unspecified_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_ip(Some("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(client_ip(Some(" 2001:db8::1 ")), ip("2001:db8::1"));
        assert_eq!(client_ip(Some("203.0.113.9, 10.0.0.1")), ip("0.0.0.0"));
        assert_eq!(client_ip(None), ip("0.0.0.0"));
    }

    #[test]
    fn anonymous_ipv6_callers_are_one_subject_per_64() {
        let a = Session::anonymous(client_ip(Some("2001:db8:1:2:aaaa::1")));
        let b = Session::anonymous(client_ip(Some("2001:db8:1:2:bbbb:cccc:dddd:9")));
        assert_eq!(a, b);
        assert_eq!(a.subject.to_string(), "ip:2001:db8:1:2::/64");
        assert_eq!(limit_key(&a.subject), "rl:ip:2001:db8:1:2::/64");
        assert_eq!(ban_key(&b.subject), "ban:ip:2001:db8:1:2::/64");
        let other = Session::anonymous(client_ip(Some("2001:db8:1:3::1")));
        assert_ne!(a.subject, other.subject);
        let v4 = Session::anonymous(client_ip(Some("198.51.100.7")));
        assert_eq!(limit_key(&v4.subject), "rl:ip:198.51.100.7");
        assert_eq!(
            Session::anonymous(client_ip(Some("::ffff:198.51.100.7"))),
            v4
        );
        assert_eq!((a.tier, a.clearance), (Tier::Free, Classification::Public));
    }

    /// What the origin answers for a key (heady-shared's type, as its handler renders it).
    fn answer(subject: &str, tier: Tier, clearance: Classification, ttl_secs: u64) -> String {
        serde_json::to_string(&IdentityAnswer::new(
            subject.parse().unwrap(),
            tier,
            clearance,
            Some("k1".into()),
            ttl_secs,
        ))
        .unwrap()
    }

    #[test]
    fn identity_answers_are_checked_and_ttls_clamped() {
        let (session, ttl) =
            parse_identity(&answer("user:u1", Tier::Pro, Classification::Internal, 5)).unwrap();
        assert_eq!(
            session,
            Session {
                subject: Subject::user("u1").unwrap(),
                tier: Tier::Pro,
                clearance: Classification::Internal
            }
        );
        assert_eq!(ttl, 5, "trusted for less than KV keeps it");
        let (_, ttl) = parse_identity(&answer(
            "user:u1",
            Tier::Free,
            Classification::Public,
            99_999_999,
        ))
        .unwrap();
        assert_eq!(ttl, heady_shared::identity::MAX_SESSION_TTL_SECS);
        // An anonymous answer to a key lookup would let the key holder share an address's
        // quota; anything malformed is refused naming the problem.
        let anonymous = answer("ip:1.2.3.4", Tier::Pro, Classification::Public, 60);
        assert!(parse_identity(&anonymous)
            .unwrap_err()
            .to_string()
            .contains("anonymous"));
        let bad_tier =
            answer("user:u1", Tier::Pro, Classification::Public, 60).replace("\"pro\"", "\"gold\"");
        assert!(parse_identity(&bad_tier)
            .unwrap_err()
            .to_string()
            .contains("gold"));
        assert!(parse_identity("not json").is_err());
    }

    #[test]
    fn cached_sessions_read_back_and_old_spellings_are_normalised() {
        let session = Session::anonymous(client_ip(Some("2001:db8:1:2::1")));
        let text = serde_json::to_string(&session).unwrap();
        assert_eq!(
            text,
            r#"{"subject":"ip:2001:db8:1:2::/64","tier":"free","clearance":"PUBLIC"}"#
        );
        let back: Session = serde_json::from_str(
            r#"{"subject":"ip:2001:db8:1:2:0:0:0:9","tier":"free","clearance":"PUBLIC"}"#,
        )
        .unwrap();
        assert_eq!(back, session);
        assert!(serde_json::from_str::<Session>(
            r#"{"subject":"key:k1","tier":"pro","clearance":"PUBLIC"}"#
        )
        .is_err());
    }

    #[test]
    fn merge_takes_the_larger_count_in_the_current_window() {
        let w = 60_000;
        let local = SubjectState {
            window: WindowState {
                window_start_ms: 60_000,
                prev: 3,
                curr: 10,
                attempts: 12,
            },
            ..SubjectState::default()
        };
        let stored = SubjectState {
            window: WindowState {
                window_start_ms: 60_000,
                prev: 5,
                curr: 7,
                attempts: 7,
            },
            banned_until_ms: 500_000,
            ..SubjectState::default()
        };
        let merged = merge(&local, &stored, w, 90_000);
        assert_eq!(
            merged.window,
            WindowState {
                window_start_ms: 60_000,
                prev: 5,
                curr: 10,
                attempts: 12
            }
        );
        assert_eq!(merged.banned_until_ms, 500_000);
        // An old stored window rolls forward before comparing.
        let stale = SubjectState {
            window: WindowState {
                window_start_ms: 0,
                prev: 0,
                curr: 29,
                attempts: 29,
            },
            ..SubjectState::default()
        };
        let merged = merge(&local, &stale, w, 90_000);
        assert_eq!(merged.window.prev, 29);
        assert_eq!(merged.window.curr, 10);
    }

    #[test]
    fn merged_state_still_limits_a_free_subject_at_30() {
        let policy = SubjectPolicy::new(Tier::Free.limits(), BanPolicy::default()).unwrap();
        let mut local = SubjectState::default();
        let mut admitted = 0;
        for i in 0..40u64 {
            let now = 1_000_000 + i * 10;
            // KV still returns an empty state (eventual consistency): the isolate's own count holds.
            let mut state = merge(&local, &SubjectState::default(), 60_000, now);
            if policy.decide(&mut state, now, 1).is_admitted() {
                admitted += 1;
            }
            local = state;
        }
        assert_eq!(admitted, 30);
        let mut state = local;
        assert!(matches!(
            policy.decide(&mut state, 1_000_500, 1),
            LimitOutcome::Limited { .. }
        ));
    }

    #[test]
    fn writes_to_one_key_are_at_least_a_second_apart() {
        let mut slot = WriteSlot::default();
        assert_eq!(slot.plan(10_000), Flush::Now);
        assert_eq!(slot.plan(10_200), Flush::After(800));
        assert_eq!(slot.plan(10_500), Flush::Pending);
        slot.delayed_write_done(11_000);
        assert_eq!(slot.plan(11_400), Flush::After(600));
        slot.delayed_write_done(12_000);
        assert_eq!(slot.plan(13_000), Flush::Now);

        // Over any run of requests, the writes (immediate and delayed) are >= 1 s apart.
        let mut slot = WriteSlot::default();
        let mut writes: Vec<u64> = Vec::new();
        let mut due: Option<u64> = None;
        for now in (0..10_000).step_by(37) {
            if let Some(at) = due.filter(|at| *at <= now) {
                slot.delayed_write_done(at);
                writes.push(at);
                due = None;
            }
            match slot.plan(now) {
                Flush::Now => writes.push(now),
                Flush::After(ms) => due = Some(now + ms),
                Flush::Pending => {}
            }
        }
        assert!(writes.len() >= 9);
        assert!(writes
            .windows(2)
            .all(|w| w[1] - w[0] >= MIN_KV_WRITE_INTERVAL_MS));
    }

    #[test]
    fn twenty_failed_keys_a_minute_then_429() {
        let w = failed_auth_window(DEFAULT_FAILED_AUTH_LIMIT);
        let mut state = WindowState::default();
        let t0 = 1_000_000;
        for i in 0..20 {
            assert!(w.fits(&mut state, t0 + i, 1), "failure {i}");
            w.decide(&mut state, t0 + i, 1);
        }
        assert!(!w.fits(&mut state, t0 + 100, 1));
        // Two windows later the address may try again.
        assert!(w.fits(&mut state, t0 + 2 * FAILED_AUTH_WINDOW_MS, 1));
        let e = too_many_failed_auth(20, 0);
        assert_eq!((e.status(), e.code), (429, ErrorCode::TooManyFailedAuth));
        assert_eq!(e.retry_after, Some(1));
        // Counted per address, an IPv6 client by its /64.
        let a = Session::anonymous(client_ip(Some("2001:db8:5:6:1::1")));
        let b = Session::anonymous(client_ip(Some("2001:db8:5:6:2::2")));
        assert_eq!(failed_auth_key(&a.subject), failed_auth_key(&b.subject));
        assert_eq!(failed_auth_key(&a.subject), "af:ip:2001:db8:5:6::/64");
    }

    #[test]
    fn the_session_cache_holds_sessions_and_refusals() {
        let session = Session::anonymous(client_ip(Some("192.0.2.1")));
        let known = CachedKey::Known(CachedSession::new(session.clone(), 1_000, 3));
        let text = serde_json::to_string(&known).unwrap();
        assert!(text.contains(r#""until_ms":4000"#), "{text}");
        // The session part reads back as a session.
        assert_eq!(serde_json::from_str::<Session>(&text).unwrap(), session);
        assert_eq!(serde_json::from_str::<CachedKey>(&text).unwrap(), known);
        // An entry written without an expiry is trusted until KV drops it.
        let old = serde_json::to_string(&session).unwrap();
        match serde_json::from_str::<CachedKey>(&old).unwrap() {
            CachedKey::Known(s) => {
                assert_eq!(s.until_ms, None);
                assert!(s.is_fresh(u64::MAX - 1));
                assert_eq!(s.session(), session);
            }
            other => panic!("{other:?}"),
        }
        let refused = CachedKey::Refused {
            refused: ApiError::new(ErrorCode::KeyExpired, "the API key expired"),
        };
        let text = serde_json::to_string(&refused).unwrap();
        assert_eq!(serde_json::from_str::<CachedKey>(&text).unwrap(), refused);
    }

    #[test]
    fn a_cached_session_is_trusted_no_longer_than_the_origin_said() {
        let s = CachedSession::new(Session::anonymous(client_ip(None)), 10_000, 3);
        assert!(s.is_fresh(12_999));
        assert!(!s.is_fresh(13_000));
        let known = CachedKey::Known(s);
        // An isolate rereads KV after SESSION_CACHE_MS, and never trusts past the expiry.
        assert_eq!(known.isolate_until(10_000), 13_000);
        let long = CachedKey::Known(CachedSession::new(
            Session::anonymous(client_ip(None)),
            0,
            60,
        ));
        assert_eq!(long.isolate_until(1_000), 1_000 + SESSION_CACHE_MS);
        let refused = CachedKey::Refused {
            refused: ApiError::new(ErrorCode::RevokedApiKey, "revoked"),
        };
        assert_eq!(refused.isolate_until(0), REFUSED_KEY_CACHE_SECS * 1000);
    }

    #[test]
    fn memory_belongs_to_an_account_and_anonymous_callers_have_none() {
        let account = heady_shared::AccountId::from_random([7; 15]);
        let keyed = Session {
            subject: Subject::account(&account),
            tier: Tier::Pro,
            clearance: Classification::Internal,
        };
        assert_eq!(memory_owner(&keyed).unwrap(), account.to_string());
        let anonymous = Session::anonymous(client_ip(Some("2001:db8::1")));
        let e = memory_owner(&anonymous).unwrap_err();
        assert_eq!(
            (e.status(), e.code),
            (401, ErrorCode::AuthenticationRequired)
        );
        let public = Session {
            clearance: Classification::Public,
            ..keyed.clone()
        };
        assert_eq!(
            memory_owner(&public).unwrap_err().code,
            ErrorCode::InsufficientClearance
        );
        let no_account = Session {
            subject: Subject::user("legacy-name").unwrap(),
            ..keyed
        };
        let e = memory_owner(&no_account).unwrap_err();
        assert_eq!((e.status(), e.code), (403, ErrorCode::MemoryUnavailable));
    }

    /// A request to `path` on headyapi.com signed with `key` at `created`: (headers, body).
    fn signed_by(
        key: &http_sig::SigningKey,
        method: &str,
        path: &str,
        body: &[u8],
        created: u64,
    ) -> Vec<(&'static str, String)> {
        let target = http_sig::Request {
            method,
            authority: "headyapi.com",
            path,
            query: None,
        };
        http_sig::sign_request(key, &target, body, created, &[3; 32])
    }

    /// Runs the edge's checks on a request as received (`authority` the host called).
    fn check(
        headers: &[(&'static str, String)],
        authority: &str,
        path: &str,
        body: &[u8],
        now: u64,
    ) -> Result<PreparedSignature, ApiError> {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let (input, sig) = (
            get(http_sig::header::SIGNATURE_INPUT),
            get(http_sig::header::SIGNATURE),
        );
        let req = SignedRequest {
            signature_input: input.as_deref(),
            signature: sig.as_deref(),
            target: http_sig::Request {
                method: "POST",
                authority,
                path,
                query: None,
            },
            body,
            field: &get,
        };
        prepare_signed(&req, now)
    }

    fn enterprise() -> Session {
        Session {
            subject: Subject::account(&heady_shared::AccountId::from_random([4; 15])),
            tier: Tier::Enterprise,
            clearance: Classification::Internal,
        }
    }

    #[test]
    fn a_signed_request_is_its_key_s_enterprise_account_once_it_verifies() {
        let key = http_sig::SigningKey::from_seed([1; 32]);
        let now = 1_765_100_000;
        let body = br#"{"input":"fn main() {}"}"#;
        let h = signed_by(&key, "POST", "/api/code", body, now);
        let prepared = check(&h, "headyapi.com", "/api/code", body, now + 10).unwrap();
        assert_eq!(prepared.keyid(), key.public_key().key_id());
        assert_eq!(
            prepared.session_key(),
            format!("pq:{}", key.public_key().key_id())
        );
        assert!(!format!("{prepared:?}").contains("signature: ["));
        let session = prepared.accept(&enterprise(), key.public_key()).unwrap();
        assert_eq!(session, enterprise());
        assert_eq!(session.tier.limits().requests_per_window, None);

        // Another key's public key, or another account tier: refused as at the origin.
        let other = http_sig::SigningKey::from_seed([2; 32]);
        let e = prepared
            .accept(&enterprise(), other.public_key())
            .unwrap_err();
        assert_eq!(
            (e.status(), e.code),
            (401, ErrorCode::InvalidRequestSignature)
        );
        assert!(counts_as_failed_auth(&e));
        let pro = Session {
            tier: Tier::Pro,
            ..enterprise()
        };
        let e = prepared.accept(&pro, key.public_key()).unwrap_err();
        assert_eq!((e.status(), e.code), (403, ErrorCode::UpgradeRequired));
        assert!(!counts_as_failed_auth(&e));
    }

    #[test]
    fn each_change_to_a_signed_request_is_refused_with_the_origin_s_code() {
        let key = http_sig::SigningKey::from_seed([1; 32]);
        let now = 1_765_100_000;
        let body = br#"{"input":"fn main() {}"}"#;
        let h = signed_by(&key, "POST", "/api/code", body, now);
        let refused = |r: Result<PreparedSignature, ApiError>| {
            let e = r
                .and_then(|p| p.accept(&enterprise(), key.public_key()))
                .unwrap_err();
            (e.status(), e.code)
        };
        // One changed body byte: Content-Digest, before any key is looked up.
        let tampered = br#"{"input":"fn main() {!"}"#;
        assert_eq!(
            refused(check(&h, "headyapi.com", "/api/code", tampered, now)),
            (401, ErrorCode::InvalidRequestSignature)
        );
        // Another path or another host than signed: the signature does not verify.
        assert_eq!(
            refused(check(&h, "headyapi.com", "/api/codE", body, now)),
            (401, ErrorCode::InvalidRequestSignature)
        );
        assert_eq!(
            refused(check(&h, "headyme.com", "/api/code", body, now)),
            (401, ErrorCode::InvalidRequestSignature)
        );
        // created more than 300 s away.
        assert_eq!(
            refused(check(&h, "headyapi.com", "/api/code", body, now + 301)),
            (401, ErrorCode::StaleSignature)
        );
        // A Signature without its Signature-Input, or a body the signature does not cover.
        let only_sig: Vec<_> = h
            .iter()
            .filter(|(k, _)| *k != http_sig::header::SIGNATURE_INPUT)
            .cloned()
            .collect();
        assert_eq!(
            refused(check(&only_sig, "headyapi.com", "/api/code", body, now)),
            (400, ErrorCode::MalformedSignature)
        );
        let no_body = signed_by(&key, "POST", "/api/code", b"", now);
        assert_eq!(
            refused(check(&no_body, "headyapi.com", "/api/code", body, now)),
            (400, ErrorCode::MalformedSignature)
        );
        // A keyid that is no key id: refused without a lookup.
        let odd: Vec<_> = h
            .iter()
            .map(|(k, v)| {
                let v = v.replace(&key.public_key().key_id(), "NOT-A-KEY-ID");
                (*k, v)
            })
            .collect();
        assert_eq!(
            refused(check(&odd, "headyapi.com", "/api/code", body, now)),
            (401, ErrorCode::InvalidRequestSignature)
        );
        assert!(counts_as_failed_auth(&signature_refused(
            SigError::NoPqcSignature
        )));
        // A signature and a bearer key together: 400, as at the origin.
        assert!(is_signed(true, false) && is_signed(false, true) && !is_signed(false, false));
        let e = conflicting_credentials();
        assert_eq!(
            (e.status(), e.code),
            (400, ErrorCode::ConflictingCredentials)
        );
    }

    #[test]
    fn the_origin_s_answer_for_a_pq_key_is_cached_with_its_public_key() {
        let key = http_sig::SigningKey::from_seed([1; 32]);
        let keyid = key.public_key().key_id();
        let session = enterprise();
        let answer = PqKeyAnswer::new(
            IdentityAnswer::new(
                session.subject.clone(),
                session.tier,
                session.clearance,
                Some(keyid.clone()),
                7,
            ),
            key.public_key(),
        );
        let text = serde_json::to_string(&answer).unwrap();
        let (got, public_key, ttl) = parse_pq_identity(&text, &keyid).unwrap();
        assert_eq!((got.clone(), ttl), (session.clone(), 7));
        assert_eq!(public_key.as_bytes(), key.public_key().as_bytes());
        // An answer for another key than asked is not believed.
        let other = http_sig::SigningKey::from_seed([2; 32])
            .public_key()
            .key_id();
        assert!(parse_pq_identity(&text, &other).is_err());

        let cached = CachedPqKey::known(CachedSession::new(got, 1_000, ttl), &public_key);
        let stored = serde_json::to_string(&cached).unwrap();
        assert!(stored.contains(r#""until_ms":8000"#), "{stored}");
        assert_eq!(
            serde_json::from_str::<CachedPqKey>(&stored).unwrap(),
            cached
        );
        assert_eq!(cached.isolate_until(1_000), 1_000 + SESSION_CACHE_MS);
        assert_eq!(cached.isolate_until(5_000), 8_000);
        match serde_json::from_str::<CachedPqKey>(&stored).unwrap() {
            CachedPqKey::Known {
                session: s,
                public_key: b64,
            } => {
                assert_eq!(s.session(), session);
                let back = PublicKey::from_raw_or_base64(b64.as_bytes()).unwrap();
                assert_eq!(back.key_id(), keyid);
            }
            other => panic!("{other:?}"),
        }
        let refused = CachedPqKey::Refused {
            refused: unknown_pq_key(),
        };
        let stored = serde_json::to_string(&refused).unwrap();
        assert_eq!(
            serde_json::from_str::<CachedPqKey>(&stored).unwrap(),
            refused
        );
        assert_eq!(refused.isolate_until(0), REFUSED_KEY_CACHE_SECS * 1000);
        assert_eq!(pq_session_key(&keyid), format!("pq:{keyid}"));
    }

    #[test]
    fn bans_report_seconds_left() {
        let ban = BanRecord {
            until_ms: 10_500,
            reason: "abuse".into(),
        };
        assert_eq!(ban.retry_after_secs(9_000), Some(2));
        assert_eq!(ban.retry_after_secs(10_500), None);
        assert_eq!(kv_ttl(5), 60);
        assert_eq!(kv_ttl(900), 900);
    }
}
