//! PQC API keys at request time: a request signed with an Enterprise account's ML-DSA-65 key
//! (HTTP Message Signatures, `heady_shared::http_sig`) is identified as that account, as a
//! bearer key would be, without one.
//!
//! Checked cheapest first: the headers' shape, `created` within 300 s, Content-Digest against
//! the body, the signature base (all pure); then the key by `keyid` (cached like bearer keys,
//! dropped on every origin by the same invalidation broadcast), the ML-DSA-65 verification,
//! the account's tier, and last the replay store, so only a valid signature can use up its
//! one acceptance. The `@authority` checked is the property host the edge vouches for
//! (`x-heady-host`) on a tunnelled request, else the request's own Host.
//!
//! The edge checks signatures too, before believing them: it learns a key's account and
//! public key from [`Defense::pq_key_holder`] (`GET /api/identity/pq-keys/{keyid}`).

use super::{Defense, Identity, Presented};
use crate::accounts::{KeyRefusal, PqGrant};
use crate::error::Error;
use crate::metrics::FailedAuthLabels;
use heady_shared::http_sig::{self, header, SigError};
use heady_shared::{ErrorCode, Subject, Tier};
use http::HeaderMap;
use std::net::IpAddr;

/// How long an accepted signature is remembered: `created` may be up to 300 s either side
/// of the clock, so one origin accepts a signature for at most 601 s; another origin's clock
/// may differ, so a minute more keeps it refused there too.
pub const REPLAY_TTL_SECS: u64 = 2 * http_sig::MAX_AGE_SECS + 60;

/// Does the request carry an RFC 9421 signature?
pub fn is_signed(headers: &HeaderMap) -> bool {
    headers.contains_key(header::SIGNATURE_INPUT) || headers.contains_key(header::SIGNATURE)
}

/// A header field as the signature base takes it: every line trimmed, joined with ", ".
/// `None` when absent or not text.
fn field(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        out.push(v.to_str().ok()?.trim());
    }
    Some(out.join(", "))
}

/// The authority a client signed: the edge's vouched property host, else `:authority`/Host.
fn authority<'a>(req: &'a Presented<'_>, edge_host: Option<&'a str>) -> &'a str {
    edge_host
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
}

fn refused(e: SigError) -> Error {
    let code = e.code();
    let msg = e.to_string();
    if code.default_status() == 400 {
        Error::new(code, msg)
    } else {
        Error::unauthorized(code, msg)
    }
}

/// 401 for a keyid the store refuses, with the code a signed request gets.
fn key_refused(refusal: KeyRefusal) -> Error {
    let (code, msg) = match refusal {
        KeyRefusal::Malformed | KeyRefusal::Unknown => (
            ErrorCode::InvalidRequestSignature,
            "keyid names no registered ML-DSA-65 key (see `heady-origin keys list`)",
        ),
        KeyRefusal::Revoked => (ErrorCode::RevokedApiKey, "the signing key has been revoked"),
        KeyRefusal::Expired => (ErrorCode::KeyExpired, "the signing key has expired"),
        KeyRefusal::AccountDisabled => (
            ErrorCode::AccountDisabled,
            "the account this signing key belongs to is disabled",
        ),
    };
    Error::unauthorized(code, msg)
}

impl Defense {
    /// Identifies a request signed with a PQC API key (see the module doc).
    pub(super) async fn identify_signed(
        &self,
        req: &Presented<'_>,
        edge_host: Option<&str>,
        client_ip: IpAddr,
        now_secs: u64,
    ) -> Result<Identity, Error> {
        let headers = req.headers;
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(input) = text(header::SIGNATURE_INPUT) else {
            self.count("unauthenticated", Tier::Free);
            return Err(refused(if headers.contains_key(header::SIGNATURE_INPUT) {
                SigError::Malformed {
                    header: "Signature-Input",
                    problem: "not ASCII text".into(),
                }
            } else {
                SigError::Missing("Signature-Input")
            }));
        };
        let target = http_sig::Request {
            method: req.method.as_str(),
            authority: authority(req, edge_host),
            path: req.uri.path(),
            query: req.uri.query(),
        };
        let lookup = |name: &str| field(headers, name);
        let from = Subject::anonymous(client_ip).to_string();
        // A keyid is public: naming a good one must not lift the throttle on the ML-DSA
        // verification (about 90 us each), so the address is checked before any work.
        self.throttle_failed_auth(&from, now_secs, "authentications")
            .await?;
        let (sig, base) = match http_sig::prepare(
            input,
            text(header::SIGNATURE),
            &target,
            req.body,
            &lookup,
            now_secs,
        ) {
            Ok(ok) => ok,
            Err(e) => {
                self.count("unauthenticated", Tier::Free);
                self.failed(&from, now_secs).await;
                return Err(refused(e));
            }
        };
        let keyid = sig.input.keyid().to_string();
        let now = now_secs as i64;
        let cached = self.accounts.pq_cached(&keyid, now);
        let verdict = match cached {
            Some(v) => v,
            None => self.accounts.pq_lookup(&keyid, now).await.map_err(|e| {
                tracing::error!(error = %e, "PQC key lookup failed");
                Error::unavailable("the key store is not answering; try again shortly")
            })?,
        };
        let PqGrant { grant, public_key } = match verdict {
            Ok(g) => g,
            Err(refusal) => {
                self.count("unauthenticated", Tier::Free);
                self.failed(&from, now_secs).await;
                return Err(key_refused(refusal));
            }
        };
        if let Err(e) = public_key.verify(base.as_bytes(), &sig.signature) {
            self.count("unauthenticated", Tier::Free);
            self.failed(&from, now_secs).await;
            return Err(refused(e));
        }
        let account = grant.account;
        if account.tier != Tier::Enterprise {
            self.count("upgrade_required", account.tier);
            return Err(Error::forbidden(
                ErrorCode::UpgradeRequired,
                format!(
                    "PQC API keys are for Enterprise accounts; this key's account is {}",
                    account.tier
                ),
            ));
        }
        let replay = format!("pqsig:{}", sig.replay_id());
        if !self
            .nonces
            .first_use(&replay, REPLAY_TTL_SECS, now_secs)
            .await
        {
            self.count("unauthenticated", account.tier);
            return Err(Error::unauthorized(
                ErrorCode::ReplayedRequest,
                "this signature was already accepted: sign each request anew",
            ));
        }
        Ok(Identity {
            subject: Subject::account(&account.id),
            tier: account.tier,
            clearance: account.clearance,
            key_id: Some(grant.key.id),
            client_ip,
            anonymous: false,
            models: None,
            via_edge: edge_host.is_some(),
            semantic_cache: account.semantic_cache,
        })
    }

    /// The account and public key of the PQC API key `keyid`, for the edge to verify signed
    /// requests itself (`GET /api/identity/pq-keys/{keyid}`). A key a signed request would be
    /// refused for is refused with the same code, and counts as a failed authentication of
    /// the client's address, as a bearer key the edge asks about does; an address over the
    /// limit is refused first. The tier is the edge's to check, after the signature verifies.
    pub async fn pq_key_holder(
        &self,
        keyid: &str,
        client_ip: IpAddr,
        now_secs: u64,
    ) -> Result<PqGrant, Error> {
        let from = Subject::anonymous(client_ip).to_string();
        let now = now_secs as i64;
        let cached = self.accounts.pq_cached(keyid, now);
        if !matches!(cached, Some(Ok(_))) {
            self.throttle_failed_auth(&from, now_secs, "authentications")
                .await?;
        }
        let verdict = match cached {
            Some(v) => v,
            None => self.accounts.pq_lookup(keyid, now).await.map_err(|e| {
                tracing::error!(error = %e, "PQC key lookup failed");
                Error::unavailable("the key store is not answering; try again shortly")
            })?,
        };
        match verdict {
            Ok(grant) => Ok(grant),
            Err(refusal) => {
                self.count("unauthenticated", Tier::Free);
                self.failed(&from, now_secs).await;
                Err(key_refused(refusal))
            }
        }
    }

    async fn failed(&self, from: &str, now_secs: u64) {
        self.failed_auth.record(from, now_secs).await;
        self.metrics
            .failed_auth
            .get_or_create(&FailedAuthLabels { outcome: "failed" })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_trimmed_and_joined() {
        let mut h = HeaderMap::new();
        h.append("x-a", " one ".parse().unwrap());
        h.append("x-a", "two".parse().unwrap());
        assert_eq!(field(&h, "x-a").as_deref(), Some("one, two"));
        assert_eq!(field(&h, "x-b"), None);
    }
}
