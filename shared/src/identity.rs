//! The identity answer: who the origin takes a caller to be (`GET /api/identity`), and for a
//! PQC API key, with its public key ([`PqKeyAnswer`]). The edge asks it on a session-cache
//! miss, with the caller's API key (or the keyid), and caches the answer in KV for at most
//! [`MAX_SESSION_TTL_SECS`]: a tier change (a Stripe subscription, an operator) reaches the
//! edge within that.
//!
//! ```json
//! {"subject":"user:alice","tier":"pro","clearance":"internal","key_id":"3f9a0c1d2e4b5a69",
//!  "anonymous":false,"limits":{"requests_per_window":120,"window_secs":60},
//!  "features":["basic_chat","search","analyze","all_tools"],"ttl_secs":60}
//! ```

use crate::classification::Classification;
use crate::http_sig::PublicKey;
use crate::subject::Subject;
use crate::tiers::{Feature, Tier, TierLimits};
use serde::{Deserialize, Serialize};

/// The shortest time an answer is trusted.
pub const MIN_SESSION_TTL_SECS: u64 = 1;
/// The longest time an answer is trusted, whatever the origin says: a tier change is seen at
/// the edge within it. (KV keeps an entry at least 60 s, its smallest `expirationTtl`; the
/// edge stores the answer's own expiry inside it and ignores it after that.)
pub const MAX_SESSION_TTL_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityAnswer {
    pub subject: Subject,
    pub tier: Tier,
    /// Sent in lowercase (`internal`); read in any case.
    #[serde(with = "lowercase_classification")]
    pub clearance: Classification,
    /// The API key's public id, when a key was presented.
    pub key_id: Option<String>,
    pub anonymous: bool,
    pub limits: TierLimits,
    pub features: Vec<Feature>,
    /// How long the edge may trust this answer (clamped to 1-60 s by [`Self::cache_ttl_secs`]).
    pub ttl_secs: u64,
}

/// Why an identity answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("identity answer: {0}")]
    Malformed(String),
    #[error(
        "identity answer: subject {0} is anonymous; an API key's holder is user:<name> (an ip: subject would let a key holder share an address's quota)"
    )]
    NotAKeyHolder(Subject),
    #[error("identity answer: \"anonymous\" is {anonymous} but the subject is {subject}")]
    Inconsistent { subject: Subject, anonymous: bool },
    #[error("PQC key answer: {0}")]
    PublicKey(String),
}

impl IdentityAnswer {
    /// The answer for `subject`: `anonymous`, limits and features follow from it and the tier.
    pub fn new(
        subject: Subject,
        tier: Tier,
        clearance: Classification,
        key_id: Option<String>,
        ttl_secs: u64,
    ) -> IdentityAnswer {
        IdentityAnswer {
            anonymous: subject.is_anonymous(),
            subject,
            tier,
            clearance,
            key_id,
            limits: tier.limits(),
            features: tier.features().to_vec(),
            ttl_secs,
        }
    }

    /// Parses the answer to a lookup made with an API key: it must name a key holder.
    pub fn parse_key_holder(body: &str) -> Result<IdentityAnswer, IdentityError> {
        let answer: IdentityAnswer =
            serde_json::from_str(body).map_err(|e| IdentityError::Malformed(e.to_string()))?;
        answer.key_holder()
    }

    fn key_holder(self) -> Result<IdentityAnswer, IdentityError> {
        let answer = self;
        if answer.anonymous != answer.subject.is_anonymous() {
            return Err(IdentityError::Inconsistent {
                subject: answer.subject,
                anonymous: answer.anonymous,
            });
        }
        if answer.subject.is_anonymous() {
            return Err(IdentityError::NotAKeyHolder(answer.subject));
        }
        Ok(answer)
    }

    /// How long to cache the answer: `ttl_secs` within
    /// [`MIN_SESSION_TTL_SECS`]..=[`MAX_SESSION_TTL_SECS`].
    pub fn cache_ttl_secs(&self) -> u64 {
        self.ttl_secs
            .clamp(MIN_SESSION_TTL_SECS, MAX_SESSION_TTL_SECS)
    }
}

/// The origin's answer for a PQC API key (`GET /api/identity/pq-keys/{keyid}`, asked by the
/// edge only): whom a request signed with the key identifies, as [`IdentityAnswer`] does for a
/// bearer key, and the public key that verifies its signatures (base64 of the 1,952-byte FIPS
/// 204 encoding). Nothing private: the origin holds no private key.
///
/// ```json
/// {"subject":"user:acct_...","tier":"enterprise","clearance":"internal",
///  "key_id":"3f9c0a7d12e4b856","anonymous":false,...,"ttl_secs":60,"public_key":"..."}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PqKeyAnswer {
    #[serde(flatten)]
    pub identity: IdentityAnswer,
    pub public_key: String,
}

impl PqKeyAnswer {
    pub fn new(identity: IdentityAnswer, public_key: &PublicKey) -> PqKeyAnswer {
        PqKeyAnswer {
            identity,
            public_key: public_key.to_base64(),
        }
    }

    /// Parses the answer to the lookup of `keyid`: it must name a key holder, and its public
    /// key must be the one `keyid` names (the key id is its hash), so no answer can make
    /// another key verify the request.
    pub fn parse(body: &str, keyid: &str) -> Result<(IdentityAnswer, PublicKey), IdentityError> {
        let answer: PqKeyAnswer =
            serde_json::from_str(body).map_err(|e| IdentityError::Malformed(e.to_string()))?;
        let identity = answer.identity.key_holder()?;
        let key = PublicKey::from_raw_or_base64(answer.public_key.as_bytes())
            .map_err(IdentityError::PublicKey)?;
        if key.key_id() != keyid || identity.key_id.as_deref() != Some(keyid) {
            return Err(IdentityError::PublicKey(format!(
                "asked for key {keyid}, got key {} (key_id {:?})",
                key.key_id(),
                identity.key_id
            )));
        }
        Ok((identity, key))
    }
}

mod lowercase_classification {
    use crate::classification::Classification;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &Classification, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&c.as_str().to_ascii_lowercase())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Classification, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn alice() -> IdentityAnswer {
        IdentityAnswer::new(
            Subject::user("alice").unwrap(),
            Tier::Pro,
            Classification::Internal,
            Some("3f9a0c1d2e4b5a69".into()),
            60,
        )
    }

    #[test]
    fn renders_the_fields_the_origin_sends() {
        assert_eq!(
            serde_json::to_value(alice()).unwrap(),
            json!({
                "subject": "user:alice",
                "tier": "pro",
                "clearance": "internal",
                "key_id": "3f9a0c1d2e4b5a69",
                "anonymous": false,
                "limits": {"requests_per_window": 120, "window_secs": 60},
                "features": ["basic_chat", "search", "analyze", "all_tools"],
                "ttl_secs": 60,
            })
        );
        let anon = IdentityAnswer::new(
            Subject::anonymous("2001:db8:1:2::7".parse().unwrap()),
            Tier::Free,
            Classification::Public,
            None,
            60,
        );
        let v = serde_json::to_value(&anon).unwrap();
        assert_eq!(v["subject"], "ip:2001:db8:1:2::/64");
        assert_eq!(v["anonymous"], true);
        assert_eq!(v["key_id"], Value::Null);
        assert_eq!(v["limits"]["requests_per_window"], 30);
    }

    fn with(changes: Value) -> String {
        let mut v = serde_json::to_value(alice()).unwrap();
        for (k, val) in changes.as_object().unwrap() {
            if val.is_null() && k != "key_id" {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = val.clone();
            }
        }
        v.to_string()
    }

    #[test]
    fn a_key_holder_answer_parses_and_its_ttl_is_clamped() {
        let got = IdentityAnswer::parse_key_holder(&with(json!({"ttl_secs": 5}))).unwrap();
        assert_eq!(got.subject, Subject::user("alice").unwrap());
        assert_eq!(got.clearance, Classification::Internal);
        assert_eq!(got.cache_ttl_secs(), 5);
        let got = IdentityAnswer::parse_key_holder(&with(json!({"ttl_secs": 0}))).unwrap();
        assert_eq!(got.cache_ttl_secs(), MIN_SESSION_TTL_SECS);
        let got = IdentityAnswer::parse_key_holder(&with(
            json!({"ttl_secs": 99_999_999, "clearance": "PUBLIC", "key_id": null}),
        ))
        .unwrap();
        assert_eq!(got.cache_ttl_secs(), MAX_SESSION_TTL_SECS);
        assert_eq!(got.clearance, Classification::Public);
        assert_eq!(got.key_id, None);
        // A tier change must reach the edge within a minute, whatever the origin says.
        assert_eq!(
            IdentityAnswer::parse_key_holder(&with(json!({"ttl_secs": 600})))
                .unwrap()
                .cache_ttl_secs(),
            60
        );
        // Fields added later are ignored.
        assert!(IdentityAnswer::parse_key_holder(&with(json!({"plan": "x"}))).is_ok());
    }

    #[test]
    fn a_pq_key_answer_carries_the_public_key_its_keyid_names() {
        let key = crate::http_sig::SigningKey::from_seed([9; 32]);
        let other = crate::http_sig::SigningKey::from_seed([8; 32]);
        let keyid = key.public_key().key_id();
        let identity = |id: &str| {
            IdentityAnswer::new(
                "user:acct_aaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap(),
                Tier::Enterprise,
                Classification::Internal,
                Some(id.to_string()),
                60,
            )
        };
        let answer = PqKeyAnswer::new(identity(&keyid), key.public_key());
        let text = serde_json::to_string(&answer).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["tier"], "enterprise");
        assert_eq!(v["key_id"], keyid.as_str());
        assert_eq!(v["public_key"].as_str().unwrap().len(), 2604);
        let (got, pk) = PqKeyAnswer::parse(&text, &keyid).unwrap();
        assert_eq!(got, identity(&keyid));
        assert_eq!(pk.as_bytes(), key.public_key().as_bytes());
        // Another key than the one asked for, whatever key_id says, is refused.
        let swapped = PqKeyAnswer::new(identity(&keyid), other.public_key());
        let err = PqKeyAnswer::parse(&serde_json::to_string(&swapped).unwrap(), &keyid)
            .unwrap_err()
            .to_string();
        assert!(err.contains("asked for key"), "{err}");
        assert!(PqKeyAnswer::parse(&text, &other.public_key().key_id()).is_err());
        // An anonymous subject, a broken key or a missing one: refused naming the problem.
        let mut anon = answer.clone();
        anon.identity = IdentityAnswer::new(
            "ip:192.0.2.1".parse().unwrap(),
            Tier::Enterprise,
            Classification::Internal,
            Some(keyid.clone()),
            60,
        );
        assert!(matches!(
            PqKeyAnswer::parse(&serde_json::to_string(&anon).unwrap(), &keyid),
            Err(IdentityError::NotAKeyHolder(_))
        ));
        let mut broken = answer.clone();
        broken.public_key = "AAAA".into();
        assert!(matches!(
            PqKeyAnswer::parse(&serde_json::to_string(&broken).unwrap(), &keyid),
            Err(IdentityError::PublicKey(_))
        ));
        let without: String = text.replace("\"public_key\"", "\"pk\"");
        assert!(PqKeyAnswer::parse(&without, &keyid).is_err());
    }

    #[test]
    fn anything_else_is_an_error_naming_the_problem() {
        for (body, needle) in [
            (
                with(json!({"subject": "ip:1.2.3.4", "anonymous": true})),
                "anonymous",
            ),
            (
                with(json!({"subject": "ip:1.2.3.4"})),
                "\"anonymous\" is false",
            ),
            (with(json!({"subject": "nokind"})), "subject"),
            (with(json!({"subject": "key:k1"})), "key:k1"),
            (with(json!({"tier": "gold"})), "gold"),
            (with(json!({"clearance": "top"})), "top"),
            (with(json!({"clearance": null})), "clearance"),
            (with(json!({"features": null})), "features"),
            ("not json".to_owned(), "identity answer"),
        ] {
            let err = IdentityAnswer::parse_key_holder(&body)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("identity answer"), "{err}");
            assert!(err.contains(needle), "{body}: {err}");
        }
    }
}
