//! Accounts and their API keys.
//!
//! An account (`acct_` + 24 base32 characters) has a unique name, a tier, a clearance, a
//! status and the semantic-cache switch (off until an operator turns it on); its keys (`hk_` +
//! 64 hex digits, stored only as SHA-256 hashes) each carry an optional expiry, an optional
//! model allowlist and a label. An Enterprise account may also register ML-DSA-65 public keys
//! ([`KeyKind::MlDsa65`], "PQC API keys"): stored beside the bearer keys (the hash is of the
//! public key, the id its first 16 hex digits), listed and revoked like them, used to verify
//! signed requests (`heady_shared::http_sig`). Everything a caller owns belongs to an account.
//!
//! Where they live ([`store::Backend`]): the daemon's DuckDB file by default, or PostgreSQL
//! when `database_url` is set, shared by every origin. Key lookups are cached for
//! `defense.key_cache_secs` (misses too); a change made on one origin is broadcast on Redis
//! ([`broadcast`]) so every origin drops the entries it affects at once.
//!
//! The pure parts are here: the shapes, the checks of names, models and expiries, and the
//! verdict on a presented key ([`judge`]).

pub mod billing;
pub mod broadcast;
pub mod config;
mod duck;
mod pg;
pub mod store;

use heady_shared::{AccountId, AccountStatus, Classification, Tier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use billing::{Subscription, SubscriptionStatus};
/// The PostgreSQL schema's numbered migrations (tests bring a database to an older version).
pub use pg::MIGRATIONS as PG_MIGRATIONS;
pub use store::AccountStore;

pub const KEY_PREFIX: &str = "hk_";
/// Most models one key may be limited to.
pub const MAX_MODELS: usize = 64;
const MAX_LABEL: usize = 200;
const MAX_MODEL_NAME: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub tier: Tier,
    pub clearance: Classification,
    pub status: AccountStatus,
    /// Unix seconds.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_subscription_id: Option<String>,
    /// The Stripe subscription as the last webhook event left it.
    #[serde(default, skip_serializing_if = "Subscription::is_empty")]
    pub subscription: Subscription,
    /// The account's requests may be answered from the semantic cache: an operator's opt-in,
    /// off by default.
    #[serde(default)]
    pub semantic_cache: bool,
}

/// A Discord user linked to an account (`/discord/callback`): the slash commands that user
/// runs act for the account. One Discord user has at most one account and an account at most
/// one Discord user; a new link replaces both sides' earlier ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscordLink {
    /// Discord's snowflake id of the user.
    pub user_id: String,
    /// The Discord username when the link was made.
    pub username: String,
    pub account_id: AccountId,
    /// Unix seconds.
    pub linked_at: i64,
}

/// What a key is: a bearer secret, or an ML-DSA-65 public key that verifies signed requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    #[default]
    #[serde(rename = "bearer")]
    Bearer,
    #[serde(rename = "ml-dsa-65")]
    MlDsa65,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Bearer => "bearer",
            KeyKind::MlDsa65 => "ml-dsa-65",
        }
    }
}

/// One API key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Public identifier (the first 16 hex digits of the hash): safe to log and to show.
    pub id: String,
    pub account_id: AccountId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub created_at: i64,
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// `None`: every model; otherwise the only models the key may name.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub revoked_at: Option<i64>,
    #[serde(default)]
    pub kind: KeyKind,
}

/// A newly created key: the secret is shown once and never stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// A stored key with its account: what a lookup finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub key: KeyRecord,
    pub account: Account,
}

/// A registered ML-DSA-65 key with its account: what a signed request's `keyid` finds.
#[derive(Debug, Clone)]
pub struct PqGrant {
    pub grant: Grant,
    pub public_key: heady_shared::http_sig::PublicKey,
}

/// Why a presented key was refused (all 401 to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Malformed,
    Unknown,
    Revoked,
    Expired,
    AccountDisabled,
}

/// What a new key gets besides its account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOptions {
    pub label: Option<String>,
    pub expires_at: Option<i64>,
    pub models: Option<Vec<String>>,
}

/// A change to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountChange {
    pub tier: Option<Tier>,
    pub clearance: Option<Classification>,
    pub status: Option<AccountStatus>,
    /// Left out when `None`, so a change without it reads the same to an origin that predates
    /// the switch (the admin socket and the mesh carry changes as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic_cache: Option<bool>,
}

impl AccountChange {
    pub fn is_empty(&self) -> bool {
        self.tier.is_none()
            && self.clearance.is_none()
            && self.status.is_none()
            && self.semantic_cache.is_none()
    }

    pub fn apply(&self, a: &mut Account) {
        if let Some(t) = self.tier {
            a.tier = t;
        }
        if let Some(c) = self.clearance {
            a.clearance = c;
        }
        if let Some(s) = self.status {
            a.status = s;
        }
        if let Some(on) = self.semantic_cache {
            a.semantic_cache = on;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Bad input, naming the field.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The account's tier does not include this (403 `upgrade_required`).
    #[error("upgrade_required: {0}")]
    UpgradeRequired(String),
    /// The store failed (the text is for the log, not for clients).
    #[error("account store: {0}")]
    Store(String),
    #[error("stored {what} {id} is damaged: {problem}")]
    Damaged {
        what: &'static str,
        id: String,
        problem: String,
    },
}

impl AccountError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> AccountError {
        AccountError::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<crate::db::DbError> for AccountError {
    fn from(e: crate::db::DbError) -> Self {
        AccountError::Store(e.to_string())
    }
}

impl From<duckdb::Error> for AccountError {
    fn from(e: duckdb::Error) -> Self {
        AccountError::Store(e.to_string())
    }
}

/// An account name: the user-name rule (1-128 of `A-Z a-z 0-9 . _ @ -`).
pub fn check_name(name: &str) -> Result<(), AccountError> {
    heady_shared::subject::UserName::new(name)
        .map(|_| ())
        .map_err(|e| AccountError::invalid("name", e.to_string()))
}

/// A key label: up to 200 printable characters.
pub fn check_label(label: &str) -> Result<(), AccountError> {
    if label.len() > MAX_LABEL || label.chars().any(char::is_control) {
        return Err(AccountError::invalid(
            "label",
            format!("at most {MAX_LABEL} bytes of printable characters"),
        ));
    }
    Ok(())
}

/// A model allowlist: 1-64 names, each 1-200 characters without spaces, commas or control
/// characters (names are stored as one comma list). Duplicates are dropped, order is kept (the
/// first is the default model).
pub fn check_models(models: &[String]) -> Result<Vec<String>, AccountError> {
    if models.is_empty() || models.len() > MAX_MODELS {
        return Err(AccountError::invalid(
            "models",
            format!("give 1 to {MAX_MODELS} model names (leave it out for every model)"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(models.len());
    for m in models {
        let m = m.trim();
        if m.is_empty()
            || m.len() > MAX_MODEL_NAME
            || m.chars()
                .any(|c| c == ',' || c.is_whitespace() || c.is_control())
        {
            return Err(AccountError::invalid(
                "models",
                format!(
                    "{:?} is not a model name (1-{MAX_MODEL_NAME} characters, no spaces or commas)",
                    excerpt(m)
                ),
            ));
        }
        if !out.iter().any(|o| o == m) {
            out.push(m.to_string());
        }
    }
    Ok(out)
}

fn excerpt(s: &str) -> String {
    s.chars().take(64).collect()
}

/// When a key expires, from `30d`, `12h`, `90m`, `3600s` (from `now`) or an RFC 3339 time.
pub fn parse_expiry(text: &str, now_secs: i64) -> Result<i64, AccountError> {
    let t = text.trim();
    let bad = || {
        AccountError::invalid(
            "expires",
            format!(
                "{:?} is neither a duration like 30d, 12h, 90m, 3600s nor an RFC 3339 time like 2027-01-31T00:00:00Z",
                excerpt(t)
            ),
        )
    };
    let unit = match t.chars().last() {
        Some('d') => Some(86_400),
        Some('h') => Some(3_600),
        Some('m') => Some(60),
        Some('s') => Some(1),
        _ => None,
    };
    let at = match unit {
        Some(mult) if t.len() > 1 && t[..t.len() - 1].bytes().all(|b| b.is_ascii_digit()) => {
            let n: i64 = t[..t.len() - 1].parse().map_err(|_| bad())?;
            n.checked_mul(mult)
                .and_then(|d| now_secs.checked_add(d))
                .ok_or_else(bad)?
        }
        _ => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| bad())?
            .timestamp(),
    };
    if at <= now_secs {
        return Err(AccountError::invalid("expires", "must be in the future"));
    }
    Ok(at)
}

/// Is `key` shaped like one of ours? (Checked before any hashing or lookup.)
pub fn well_formed(key: &str) -> bool {
    key.len() == KEY_PREFIX.len() + 64
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn hash_of(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// The public id of the key with this hash.
pub fn id_of_hash(hash: &str) -> String {
    hash[..16].to_string()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored public key (base64) read back.
pub(crate) fn decode_public_key(
    id: &str,
    b64: &str,
) -> Result<heady_shared::http_sig::PublicKey, AccountError> {
    heady_shared::http_sig::PublicKey::from_raw_or_base64(b64.as_bytes()).map_err(|problem| {
        AccountError::Damaged {
            what: "key",
            id: id.to_string(),
            problem,
        }
    })
}

/// How a public key is stored: base64 of the 1,952-byte FIPS 204 encoding.
pub(crate) fn encode_public_key(k: &heady_shared::http_sig::PublicKey) -> String {
    k.to_base64()
}

/// Is `id` shaped like a key id (16 lowercase hex digits)?
pub fn well_formed_id(id: &str) -> bool {
    heady_shared::http_sig::is_key_id(id)
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A fresh secret key.
pub fn mint_key() -> String {
    let secret: [u8; 32] = rand::random();
    format!("{KEY_PREFIX}{}", hex(&secret))
}

/// A fresh account id.
pub fn mint_account_id() -> AccountId {
    AccountId::from_random(rand::random())
}

/// The verdict on a stored key at `now_secs`: revoked, then expired, then a disabled account.
pub fn judge(found: Option<&Grant>, now_secs: i64) -> Result<&Grant, KeyRefusal> {
    match found {
        None => Err(KeyRefusal::Unknown),
        Some(g) if g.key.revoked_at.is_some() => Err(KeyRefusal::Revoked),
        Some(g) if g.key.expires_at.is_some_and(|at| at <= now_secs) => Err(KeyRefusal::Expired),
        Some(g) if g.account.status == AccountStatus::Disabled => Err(KeyRefusal::AccountDisabled),
        Some(g) => Ok(g),
    }
}

/// The model a request may use under a key's allowlist: the one it names when allowed, the
/// first allowed one when it names none. `Err` carries the refused name.
pub fn permitted_model<'a>(
    allow: Option<&'a [String]>,
    asked: Option<&'a str>,
) -> Result<Option<&'a str>, String> {
    match (allow, asked) {
        (None, asked) => Ok(asked),
        (Some(list), None) => Ok(list.first().map(String::as_str)),
        (Some(list), Some(m)) if list.iter().any(|a| a == m) => Ok(Some(m)),
        (Some(_), Some(m)) => Err(m.to_string()),
    }
}

pub(crate) fn join_models(models: &Option<Vec<String>>) -> Option<String> {
    models.as_ref().map(|m| m.join(","))
}

pub(crate) fn split_models(text: Option<String>) -> Option<Vec<String>> {
    text.map(|t| t.split(',').map(str::to_string).collect())
}

/// A stored link row; a damaged account id is named, not passed on.
pub(crate) fn discord_link_of(
    user_id: String,
    account: String,
    username: String,
    linked_at: i64,
) -> Result<DiscordLink, AccountError> {
    let account_id = AccountId::parse(&account).map_err(|e| AccountError::Damaged {
        what: "discord link",
        id: user_id.clone(),
        problem: e.to_string(),
    })?;
    Ok(DiscordLink {
        user_id,
        username,
        account_id,
        linked_at,
    })
}

/// Columns as both backends store them, turned into an account.
#[allow(clippy::too_many_arguments)]
pub(crate) fn account_of(
    id: String,
    name: String,
    tier: String,
    clearance: String,
    status: String,
    created_at: i64,
    stripe_customer_id: Option<String>,
    stripe_subscription_id: Option<String>,
    subscription: Subscription,
    semantic_cache: bool,
) -> Result<Account, AccountError> {
    let damaged = |problem: String| AccountError::Damaged {
        what: "account",
        id: id.clone(),
        problem,
    };
    Ok(Account {
        tier: tier.parse().map_err(|e| damaged(format!("{e}")))?,
        clearance: clearance.parse().map_err(|e| damaged(format!("{e}")))?,
        status: status.parse().map_err(damaged)?,
        id: AccountId::parse(&id).map_err(|e| damaged(e.to_string()))?,
        name,
        created_at,
        stripe_customer_id,
        stripe_subscription_id,
        subscription,
        semantic_cache,
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn key_of(
    id: String,
    account_id: String,
    label: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
    models: Option<String>,
    revoked_at: Option<i64>,
    pq: bool,
) -> Result<KeyRecord, AccountError> {
    Ok(KeyRecord {
        account_id: AccountId::parse(&account_id).map_err(|e| AccountError::Damaged {
            what: "key",
            id: id.clone(),
            problem: e.to_string(),
        })?,
        id,
        label,
        created_at,
        expires_at,
        models: split_models(models),
        revoked_at,
        kind: if pq {
            KeyKind::MlDsa65
        } else {
            KeyKind::Bearer
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            key: KeyRecord {
                id: "0123456789abcdef".into(),
                account_id: AccountId::from_random([1; 15]),
                label: None,
                created_at: 0,
                expires_at: Some(100),
                models: None,
                revoked_at: None,
                kind: KeyKind::Bearer,
            },
            account: Account {
                id: AccountId::from_random([1; 15]),
                name: "ann".into(),
                tier: Tier::Pro,
                clearance: Classification::Internal,
                status: AccountStatus::Active,
                created_at: 0,
                stripe_customer_id: None,
                stripe_subscription_id: None,
                subscription: Subscription::default(),
                semantic_cache: false,
            },
        }
    }

    #[test]
    fn the_verdict_checks_revocation_expiry_then_status() {
        let mut g = grant();
        assert!(judge(Some(&g), 99).is_ok());
        assert_eq!(judge(Some(&g), 100), Err(KeyRefusal::Expired));
        g.account.status = AccountStatus::Disabled;
        assert_eq!(judge(Some(&g), 99), Err(KeyRefusal::AccountDisabled));
        g.key.revoked_at = Some(5);
        assert_eq!(judge(Some(&g), 200), Err(KeyRefusal::Revoked));
        assert_eq!(judge(None, 0), Err(KeyRefusal::Unknown));
    }

    #[test]
    fn the_semantic_cache_switch_is_off_unless_changed() {
        let mut a = grant().account;
        // An account stored as JSON before the switch existed reads as off.
        let mut v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["semantic_cache"], false, "always shown: {v}");
        v.as_object_mut().unwrap().remove("semantic_cache");
        assert!(!serde_json::from_value::<Account>(v).unwrap().semantic_cache);

        let on = AccountChange {
            semantic_cache: Some(true),
            ..Default::default()
        };
        assert!(!on.is_empty());
        on.apply(&mut a);
        assert!(a.semantic_cache);
        let tier_only = AccountChange {
            tier: Some(Tier::Free),
            ..Default::default()
        };
        tier_only.apply(&mut a);
        assert!(a.semantic_cache, "a change without the switch keeps it");
        // Without the switch a change's JSON is what it was before the switch existed.
        assert_eq!(
            serde_json::to_value(&tier_only).unwrap(),
            serde_json::json!({"tier": "free", "clearance": null, "status": null})
        );
        assert_eq!(
            serde_json::from_str::<AccountChange>(r#"{"semantic_cache": false}"#)
                .unwrap()
                .semantic_cache,
            Some(false)
        );
        assert!(serde_json::from_str::<AccountChange>(r#"{"semantic_cache": "yes"}"#).is_err());
        assert!(AccountChange::default().is_empty());
    }

    #[test]
    fn expiries_are_durations_or_rfc3339() {
        assert_eq!(parse_expiry("30d", 1000).unwrap(), 1000 + 30 * 86_400);
        assert_eq!(parse_expiry("2h", 0).unwrap(), 7200);
        assert_eq!(parse_expiry("90m", 0).unwrap(), 5400);
        assert_eq!(parse_expiry("5s", 0).unwrap(), 5);
        assert_eq!(
            parse_expiry("2030-01-01T00:00:00Z", 0).unwrap(),
            1_893_456_000
        );
        for bad in [
            "",
            "d",
            "-1d",
            "1w",
            "tomorrow",
            "2030-01-01",
            "99999999999999999999d",
        ] {
            let e = parse_expiry(bad, 0).unwrap_err().to_string();
            assert!(e.starts_with("expires:"), "{bad}: {e}");
        }
        assert!(parse_expiry("0s", 10).is_err(), "not in the future");
        assert!(parse_expiry("2001-01-01T00:00:00Z", 1_893_456_000).is_err());
    }

    #[test]
    fn allowlists_pick_or_refuse_models() {
        let allow = vec!["a".to_string(), "b".to_string()];
        assert_eq!(permitted_model(Some(&allow), Some("b")), Ok(Some("b")));
        assert_eq!(permitted_model(Some(&allow), None), Ok(Some("a")));
        assert_eq!(permitted_model(Some(&allow), Some("c")), Err("c".into()));
        assert_eq!(permitted_model(None, Some("c")), Ok(Some("c")));
        assert_eq!(permitted_model(None, None), Ok(None));
        assert_eq!(
            check_models(&["a".into(), " b ".into(), "a".into()]).unwrap(),
            ["a", "b"]
        );
        for bad in [
            vec![],
            vec!["a,b".to_string()],
            vec!["a b".into()],
            vec!["".into()],
        ] {
            assert!(check_models(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_have_one_shape() {
        let k = mint_key();
        assert!(well_formed(&k));
        for bad in ["", "hk_", "hk_xyz", &format!("hk_{}", "A".repeat(64))] {
            assert!(!well_formed(bad), "{bad}");
        }
        assert_eq!(id_of_hash(&hash_of(&k)).len(), 16);
    }
}
