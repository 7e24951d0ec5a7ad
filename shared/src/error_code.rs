//! Error codes and the JSON error body, as the edge and the origin send them:
//! `{"error":{"code":"rate_limited","message":"...","retry_after":12}}`.
//!
//! One code per meaning: a client that handles `upgrade_required` handles it from either side.
//! Each code has the status it is usually sent with; a handler may send another where the
//! meaning fits better (the origin's `POST /api/conductor/route` answers `unknown_action` with
//! 400, the conductor path with 404).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, $status:literal; )+) => {
        /// Every error code a Heady answer carries.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )+
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )+ ];

            /// The code as sent: `snake_case`, the same text serde writes.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $text, )+
                }
            }

            /// The HTTP status this code is sent with unless the handler says otherwise.
            pub const fn default_status(self) -> u16 {
                match self {
                    $( ErrorCode::$variant => $status, )+
                }
            }
        }
    };
}

error_codes! {
    // 400
    /// The request is malformed or a field is invalid (the message names it).
    InvalidRequest = "invalid_request", 400;
    /// The body is not JSON.
    InvalidJson = "invalid_json", 400;
    /// A provider refused the request itself (sent with the provider's status; `type`,
    /// `param` and `upstream_code` are the provider's).
    UpstreamRejected = "upstream_rejected", 400;
    /// The request needs something (tools, json_schema, images, multiple_choices) that no
    /// provider serving it can do; the message names it.
    UnsupportedFeature = "unsupported_feature", 400;
    /// A webhook whose signature header is missing, malformed, stale or does not verify.
    InvalidSignature = "invalid_signature", 400;
    /// A PQC-signed request whose `Signature-Input`, `Signature` or `Content-Digest` is
    /// malformed, or covers too little (RFC 9421; the message names the problem).
    MalformedSignature = "malformed_signature", 400;
    /// A request with both a bearer key and a PQC signature: send one.
    ConflictingCredentials = "conflicting_credentials", 400;
    // 401
    /// The route needs more than PUBLIC clearance and no key was sent.
    AuthenticationRequired = "authentication_required", 401;
    /// `Authorization` is not `Bearer <key>`.
    InvalidAuthorization = "invalid_authorization", 401;
    /// The API key is malformed or unknown.
    InvalidApiKey = "invalid_api_key", 401;
    RevokedApiKey = "revoked_api_key", 401;
    /// The API key's expiry has passed.
    KeyExpired = "key_expired", 401;
    /// The key's account is disabled.
    AccountDisabled = "account_disabled", 401;
    /// The origin serves `/api` and `/v1` only through the edge.
    EdgeRequired = "edge_required", 401;
    /// A request carries an edge signature but this origin has no tunnel key.
    EdgeNotConfigured = "edge_not_configured", 401;
    /// The edge signature is forged, stale or over a different request.
    InvalidEdgeSignature = "invalid_edge_signature", 401;
    /// A correctly signed envelope whose subject is not a [`crate::Subject`].
    InvalidEdgeSubject = "invalid_edge_subject", 401;
    /// A tunnelled request whose nonce was already used, or a PQC signature already accepted.
    ReplayedRequest = "replayed_request", 401;
    /// A PQC signature that does not verify over the request (a changed method, authority,
    /// path, query or body), or by a key that is not registered.
    InvalidRequestSignature = "invalid_request_signature", 401;
    /// A PQC signature whose `created` is more than 300 s from the origin's clock, or whose
    /// `expires` has passed.
    StaleSignature = "stale_signature", 401;
    /// Under `tunnel_auth = "pq-hybrid"` a request signed with only the shared HMAC key is
    /// refused: no downgrade.
    TunnelSessionRequired = "tunnel_session_required", 401;
    /// The handshake's edge identity is not pinned by this origin.
    TunnelIdentityUnknown = "tunnel_identity_unknown", 401;
    /// The handshake's signature does not verify over its transcript (tampered or forged).
    TunnelTranscriptInvalid = "tunnel_transcript_invalid", 401;
    /// A handshake hello this origin (or one sharing its Redis) has already answered.
    TunnelHandshakeReplayed = "tunnel_handshake_replayed", 401;
    /// A handshake hello whose timestamp is too far from the origin's clock.
    TunnelHandshakeStale = "tunnel_handshake_stale", 401;
    /// The session's ticket has expired: the edge opens a new session.
    TunnelSessionExpired = "tunnel_session_expired", 401;
    /// The session ticket does not open under this origin's ticket keys (another deployment,
    /// a rotated ticket key, or tampered).
    TunnelSessionInvalid = "tunnel_session_invalid", 401;
    /// A Discord interaction whose `X-Signature-Ed25519` or `X-Signature-Timestamp` is
    /// missing, malformed, stale or does not verify with the application's public key.
    InvalidDiscordSignature = "invalid_discord_signature", 401;
    // 403
    /// The key's clearance is below the route's classification.
    InsufficientClearance = "insufficient_clearance", 403;
    /// The caller's tier lacks the feature or action (`requireProPlan`).
    UpgradeRequired = "upgrade_required", 403;
    /// The subject is banned for abuse (`retry_after` says for how long).
    Banned = "banned", 403;
    /// The model is outside the API key's allowlist.
    ModelNotAllowed = "model_not_allowed", 403;
    /// The account's tier allows no more stored memory rows.
    QuotaExceeded = "quota_exceeded", 403;
    /// Anonymous callers have no memory: sign in with an API key.
    MemoryUnavailable = "memory_unavailable", 403;
    // 404
    NotFound = "not_found", 404;
    UnknownAction = "unknown_action", 404;
    ModelNotFound = "model_not_found", 404;
    // 405, 408, 413, 415, 422, 429
    MethodNotAllowed = "method_not_allowed", 405;
    /// The request body did not arrive within the body read timeout.
    RequestTimeout = "request_timeout", 408;
    BodyTooLarge = "body_too_large", 413;
    BatchTooLarge = "batch_too_large", 413;
    UnsupportedMediaType = "unsupported_media_type", 415;
    /// An embedding with non-finite values or all zeros.
    InvalidEmbedding = "invalid_embedding", 422;
    /// An embedding of the wrong dimension.
    WrongDimension = "wrong_dimension", 422;
    RateLimited = "rate_limited", 429;
    /// Too many failed authentications from this client address (its /64 for IPv6).
    TooManyFailedAuth = "too_many_failed_auth", 429;
    /// The caller already holds its tier's share of the provider slots, and as many waiting.
    TooManyConcurrentRequests = "too_many_concurrent_requests", 429;
    /// Over the tier's token limit per window (`retry_after`; the `RateLimit` headers name the
    /// token policy).
    TokenLimitExceeded = "token_limit_exceeded", 429;
    /// Every provider asked us to slow down (their 429), through retries and fallbacks
    /// (`retry_after`).
    UpstreamRateLimited = "upstream_rate_limited", 429;
    // 500
    Internal = "internal", 500;
    /// A binding, secret or variable the deployment needs is missing or wrong.
    ConfigError = "config_error", 500;
    /// The edge could not build the request to the origin.
    TunnelError = "tunnel_error", 500;
    // 502
    EmbedderFailed = "embedder_failed", 502;
    /// The embedder answered vectors of another dimension than the memory's.
    EmbedderDimension = "embedder_dimension", 502;
    /// Every provider failed.
    UpstreamFailed = "upstream_failed", 502;
    /// Workers AI or Vectorize failed at the edge.
    EdgeAiFailed = "edge_ai_failed", 502;
    /// Workers Static Assets failed at the edge.
    AssetsUnavailable = "assets_unavailable", 502;
    /// The edge could not open a tunnel session: the origin refused the handshake, or its
    /// answer was not signed by a pinned origin identity.
    TunnelHandshakeFailed = "tunnel_handshake_failed", 502;
    /// Stripe's API refused or failed a call (the message names Stripe's error type and message).
    StripeFailed = "stripe_failed", 502;
    // 503
    Unavailable = "unavailable", 503;
    /// No provider is configured.
    NoProvider = "no_provider", 503;
    /// No provider is likely to answer before the deadline.
    NotReady = "not_ready", 503;
    /// The queue is full or the wait too long (`retry_after`).
    Overloaded = "overloaded", 503;
    /// Every provider's breaker is open (`retry_after`).
    ProvidersUnavailable = "providers_unavailable", 503;
    /// The edge cannot reach the origin (`retry_after`).
    OriginUnavailable = "origin_unavailable", 503;
    /// Every provider was unavailable (their 503 or 529, or no answer in time), through
    /// retries and fallbacks (`retry_after`).
    UpstreamUnavailable = "upstream_unavailable", 503;
    /// The billing routes need `[billing]` (Stripe) configured.
    BillingNotConfigured = "billing_not_configured", 503;
    /// The Discord routes need the Discord application configured (the message names what).
    DiscordNotConfigured = "discord_not_configured", 503;
    /// An external property whose address is a deployment setting that is not set (the
    /// message names it).
    PropertyNotConfigured = "property_not_configured", 503;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;
    fn from_str(s: &str) -> Result<ErrorCode, UnknownErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

/// One refused or failed request: the object inside [`ErrorBody`]. `code` is stable for
/// clients; `message` says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds until a retry can succeed; also sent as `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The request's id, the one its log lines carry: what to quote when reporting a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// A provider's refusal passed on: its `error.type` (`invalid_request_error`, ...).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A provider's refusal passed on: the request field at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// A provider's refusal passed on: its own `error.code` (`context_length_exceeded`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_code: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
            request_id: None,
            kind: None,
            param: None,
            upstream_code: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    pub fn with_retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    /// The code's default status.
    pub fn status(&self) -> u16 {
        self.code.default_status()
    }

    /// The JSON body to send.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `{"error":{"code":..,"message":..,"retry_after"?:..,"request_id"?:..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;

    #[test]
    fn codes_are_snake_case_unique_and_spelled_as_serde_spells_them() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(
                !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && !text.starts_with('_')
                    && !text.ends_with('_'),
                "{text}"
            );
            assert_eq!(serde_json::to_value(code).unwrap(), json!(text));
            assert_eq!(text.parse::<ErrorCode>(), Ok(*code));
            assert_eq!(code.to_string(), text);
            assert!((400..600).contains(&code.default_status()), "{text}");
        }
        assert!("tier_required".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn documented_statuses() {
        use ErrorCode::*;
        for (code, status) in [
            (InvalidRequest, 400),
            (InvalidApiKey, 401),
            (UpgradeRequired, 403),
            (Banned, 403),
            (NotFound, 404),
            (UnknownAction, 404),
            (RequestTimeout, 408),
            (BodyTooLarge, 413),
            (UnsupportedMediaType, 415),
            (WrongDimension, 422),
            (RateLimited, 429),
            (TokenLimitExceeded, 429),
            (TooManyConcurrentRequests, 429),
            (UpstreamFailed, 502),
            (OriginUnavailable, 503),
            (InvalidSignature, 400),
            (StripeFailed, 502),
            (BillingNotConfigured, 503),
            (MalformedSignature, 400),
            (ConflictingCredentials, 400),
            (InvalidRequestSignature, 401),
            (StaleSignature, 401),
        ] {
            assert_eq!(code.default_status(), status, "{code}");
        }
    }

    #[test]
    fn the_body_is_the_documented_json() {
        let e = ApiError::new(ErrorCode::Banned, "banned for 900 s").with_retry_after(900);
        assert_eq!(
            serde_json::to_value(e.body()).unwrap(),
            json!({"error": {"code": "banned", "message": "banned for 900 s", "retry_after": 900}})
        );
        assert_eq!(e.status(), 403);
        let plain = ApiError::bad_request("nope");
        assert_eq!(
            serde_json::to_value(plain.body()).unwrap(),
            json!({"error": {"code": "invalid_request", "message": "nope"}})
        );
        let back: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"rate_limited","message":"slow down"}}"#)
                .unwrap();
        assert_eq!(back.error.code, ErrorCode::RateLimited);
        assert_eq!(back.error.retry_after, None);
        assert_eq!(e.to_string(), "403 banned: banned for 900 s");
        let mut passed = ApiError::new(ErrorCode::UpstreamRejected, "Invalid 'tools[0].name'");
        passed.kind = Some("invalid_request_error".into());
        passed.param = Some("tools[0].name".into());
        assert_eq!(
            serde_json::to_value(passed.body()).unwrap(),
            json!({"error": {"code": "upstream_rejected", "message": "Invalid 'tools[0].name'", "type": "invalid_request_error", "param": "tools[0].name"}})
        );
    }
}
