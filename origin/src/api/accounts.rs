//! `/api/account` (the caller's account) and the operators' API under `/api/admin/`: list,
//! create, change and disable accounts, mint and revoke keys. The same operations as
//! `heady-origin accounts ...` / `keys ...`; RESTRICTED clearance (checked here too, so turning
//! the defense off for a benchmark does not open them).

use super::{require_json, segment, Ctx, Reply};
use crate::accounts::{parse_expiry, AccountChange, AccountError, KeyOptions};
use crate::app::App;
use crate::defense::authentication_required;
use crate::error::{Error, ErrorCode};
use heady_shared::{AccountId, Classification, Tier};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

fn now_secs() -> i64 {
    crate::accounts::now_secs()
}

/// An account store error as the client sees it: bad input 400 naming the field, unknown 404,
/// a taken name 409; the store's own failures are logged and answered 503 without their text.
pub fn error_of(e: AccountError) -> Error {
    match e {
        AccountError::Invalid { .. } => Error::bad_request(e.to_string()),
        AccountError::NotFound(m) => Error::not_found(m),
        AccountError::Conflict(m) => Error::new(ErrorCode::InvalidRequest, m).with_status(409),
        AccountError::UpgradeRequired(m) => Error::forbidden(ErrorCode::UpgradeRequired, m),
        e @ (AccountError::Store(_) | AccountError::Damaged { .. }) => {
            tracing::error!(error = %e, "account store failed");
            Error::unavailable("the account store is not answering; try again shortly")
        }
    }
}

/// A JSON body; an error names the field (`tier: unknown tier "gold"`).
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    if body.is_empty() {
        return crate::error::parse_json(body);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::invalid_json(format!("malformed JSON: {inner}"))
        } else if path == "." {
            Error::bad_request(format!("invalid request: {inner}"))
        } else {
            Error::bad_request(format!("{path}: {inner}"))
        }
    })
}

/// An optional field given as text (`"pro"`, `"internal"` in any case), parsed by its type.
fn field<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<Option<T>, Error>
where
    T::Err: std::fmt::Display,
{
    v.map(|s| {
        s.parse::<T>()
            .map_err(|e| Error::bad_request(format!("{name}: {e}")))
    })
    .transpose()
}

/// `GET /api/account`: `{"id","name","tier","clearance","subscription","semantic_cache",
/// "discord"}` of the caller's account; `subscription` is `null` until billing has seen one,
/// else `{"status","current_period_end","past_due_since"?}`; `discord` is the linked Discord
/// user `{"user_id","username","linked_at"}` or `null`.
pub async fn me(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let Some(id) = c.identity.account() else {
        return Err(authentication_required("this route answers for an account"));
    };
    let a = s
        .defense
        .accounts
        .require_account(&id)
        .await
        .map_err(error_of)?;
    let sub = &a.subscription;
    let subscription = sub.status.map(|status| {
        let mut v = json!({"status": status, "current_period_end": sub.current_period_end});
        if let Some(since) = sub.past_due_since {
            v["past_due_since"] = json!(since);
        }
        v
    });
    let discord = s
        .defense
        .accounts
        .discord_link_of(&a.id)
        .await
        .map_err(error_of)?
        .map(|l| json!({"user_id": l.user_id, "username": l.username, "linked_at": l.linked_at}));
    Reply::ok(&json!({
        "id": a.id,
        "name": a.name,
        "tier": a.tier,
        "clearance": a.clearance,
        "subscription": subscription,
        "semantic_cache": a.semantic_cache,
        "discord": discord,
    }))
}

/// `DELETE /api/account/discord`: the Discord user linked to the caller's account no longer
/// acts for it. `{"unlinked": true}`, or `false` when none was linked.
pub async fn unlink_discord(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let Some(id) = c.identity.account() else {
        return Err(authentication_required("this route answers for an account"));
    };
    let unlinked = s
        .defense
        .accounts
        .unlink_discord(&id)
        .await
        .map_err(error_of)?;
    if unlinked {
        tracing::info!(request_id = %c.request_id, account = %id, "account unlinked its Discord user");
    }
    Reply::ok(&json!({ "unlinked": unlinked }))
}

/// What an account may change itself (`PATCH /api/account`); tier and status are the
/// operators' and billing's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelfChange {
    semantic_cache: bool,
}

/// `PATCH /api/account`: the caller's account opts in to or out of the semantic cache.
pub async fn update_me(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let Some(id) = c.identity.account() else {
        return Err(authentication_required("this route answers for an account"));
    };
    require_json(&c)?;
    let req: SelfChange = parse_body(&c.body)?;
    let change = AccountChange {
        semantic_cache: Some(req.semantic_cache),
        ..AccountChange::default()
    };
    s.defense
        .accounts
        .update_account(&id, &change)
        .await
        .map_err(error_of)?;
    tracing::info!(request_id = %c.request_id, account = %id, semantic_cache = req.semantic_cache, "account changed its semantic cache switch");
    me(s, c).await
}

/// The operators' routes are RESTRICTED whatever `defense.enabled` says.
fn operator(c: &Ctx) -> Result<(), Error> {
    if c.identity.account().is_none() {
        return Err(authentication_required("the admin API is for operators"));
    }
    if !c.identity.clearance.permits(Classification::Restricted) {
        return Err(Error::forbidden(
            ErrorCode::InsufficientClearance,
            format!(
                "the admin API is RESTRICTED; the key's clearance is {}",
                c.identity.clearance
            ),
        ));
    }
    Ok(())
}

fn account_param(c: &Ctx) -> Result<AccountId, Error> {
    let text = segment(&c.path, 3).unwrap_or("");
    // A malformed id names no account.
    AccountId::parse(text).map_err(|_| {
        Error::not_found(format!(
            "no account with id {:?}",
            text.chars().take(64).collect::<String>()
        ))
    })
}

fn audit(c: &Ctx, action: &str, target: &str) {
    tracing::info!(
        request_id = %c.request_id,
        operator = %c.identity.subject,
        key = c.identity.key_id.as_deref().unwrap_or("-"),
        action,
        target,
        "admin API"
    );
}

/// `GET /api/admin/accounts`
pub async fn list(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    operator(&c)?;
    let accounts = s.defense.accounts.accounts().await.map_err(error_of)?;
    Reply::ok(&json!({ "accounts": accounts }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    name: String,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    clearance: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    clearance: Option<String>,
    #[serde(default)]
    status: Option<String>,
    /// `true`: the account's requests may be answered from the semantic cache.
    #[serde(default)]
    semantic_cache: Option<bool>,
}

/// `POST /api/admin/accounts` `{"name","tier"?,"clearance"?}` -> 201 the account.
pub async fn create(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    operator(&c)?;
    require_json(&c)?;
    let req: NewAccount = parse_body(&c.body)?;
    let tier = field::<Tier>("tier", req.tier)?.unwrap_or(Tier::Free);
    let clearance =
        field::<Classification>("clearance", req.clearance)?.unwrap_or(Classification::Public);
    let a = s
        .defense
        .accounts
        .create_account(&req.name, tier, clearance, now_secs())
        .await
        .map_err(error_of)?;
    audit(&c, "create account", a.id.as_str());
    Reply::json(201, &a)
}

/// `GET /api/admin/accounts/{id}`: the account and its keys.
pub async fn show(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    operator(&c)?;
    let id = account_param(&c)?;
    let store = &s.defense.accounts;
    let account = store.require_account(&id).await.map_err(error_of)?;
    let keys = store.keys(Some(&id)).await.map_err(error_of)?;
    Reply::ok(&json!({"account": account, "keys": keys}))
}

/// `PATCH /api/admin/accounts/{id}` `{"tier"?,"clearance"?,"status"?,"semantic_cache"?}`; takes
/// effect on every origin at once (with Redis) or within the key cache's TTL.
pub async fn change(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    operator(&c)?;
    require_json(&c)?;
    let id = account_param(&c)?;
    let req: ChangeRequest = parse_body(&c.body)?;
    let change = AccountChange {
        tier: field("tier", req.tier)?,
        clearance: field("clearance", req.clearance)?,
        status: field("status", req.status)?,
        semantic_cache: req.semantic_cache,
    };
    let a = s
        .defense
        .accounts
        .update_account(&id, &change)
        .await
        .map_err(error_of)?;
    audit(&c, "change account", a.id.as_str());
    Reply::ok(&a)
}

/// `GET /api/admin/accounts/{id}/keys`
pub async fn keys(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    operator(&c)?;
    let id = account_param(&c)?;
    let store = &s.defense.accounts;
    store.require_account(&id).await.map_err(error_of)?;
    let keys = store.keys(Some(&id)).await.map_err(error_of)?;
    Reply::ok(&json!({ "keys": keys }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default)]
    label: Option<String>,
    /// `30d`, `12h`, `90m`, `3600s` or an RFC 3339 time.
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
}

/// `POST /api/admin/accounts/{id}/keys` `{"label"?,"expires"?,"models"?}` -> 201 with the
/// secret, shown this once.
pub async fn create_key(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    operator(&c)?;
    require_json(&c)?;
    let id = account_param(&c)?;
    let req: NewKey = if c.body.is_empty() {
        NewKey::default()
    } else {
        parse_body(&c.body)?
    };
    let now = now_secs();
    let opts = KeyOptions {
        label: req.label,
        expires_at: req
            .expires
            .as_deref()
            .map(|e| parse_expiry(e, now))
            .transpose()
            .map_err(error_of)?,
        models: req.models,
    };
    let k = s
        .defense
        .accounts
        .create_key(&id, opts, now)
        .await
        .map_err(error_of)?;
    audit(&c, "create key", &k.record.id);
    Reply::json(201, &k)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPqKey {
    /// Base64 of the 1,952-byte FIPS 204 encoding.
    public_key: String,
    #[serde(default)]
    label: Option<String>,
}

/// `POST /api/admin/accounts/{id}/pq-keys` `{"public_key","label"?}`: registers an ML-DSA-65
/// public key for an Enterprise account (others: 403 `upgrade_required`) -> 201 with the key
/// (`id` is the `keyid` to sign with).
pub async fn register_pq_key(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    operator(&c)?;
    require_json(&c)?;
    let id = account_param(&c)?;
    let req: NewPqKey = parse_body(&c.body)?;
    let public = heady_shared::http_sig::PublicKey::from_raw_or_base64(req.public_key.as_bytes())
        .map_err(|e| Error::bad_request(format!("public_key: {e}")))?;
    let k = s
        .defense
        .accounts
        .register_pq_key(&id, &public, req.label, now_secs())
        .await
        .map_err(error_of)?;
    audit(&c, "register pq key", &k.id);
    Reply::json(201, &k)
}

/// `DELETE /api/admin/keys/{id}`: revoke.
pub async fn revoke_key(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    operator(&c)?;
    let id = segment(&c.path, 3).unwrap_or("").to_string();
    let r = s
        .defense
        .accounts
        .revoke_key(&id, now_secs())
        .await
        .map_err(error_of)?;
    audit(&c, "revoke key", &r.id);
    Reply::ok(&r)
}
