//! `/api/billing/*`: Checkout and the Billing Portal for the caller's account, and Stripe's
//! webhook. Without `[billing]` every one answers 503 `billing_not_configured`.

use super::{require_json, Ctx, Reply};
use crate::app::App;
use crate::billing::webhook::Outcome;
use crate::billing::Billing;
use crate::defense::authentication_required;
use crate::error::{Error, ErrorCode};
use heady_shared::{AccountId, Subject, Tier};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Stripe's events are a few KiB; a larger body is refused (413) before it is read whole.
pub const WEBHOOK_MAX_BYTES: usize = 256 * 1024;

fn configured(s: &App) -> Result<&Arc<Billing>, Error> {
    s.billing.as_ref().ok_or_else(|| {
        Error::new(
            ErrorCode::BillingNotConfigured,
            "billing is not configured on this server ([billing], HEADY_STRIPE_SECRET_KEY)",
        )
    })
}

fn account(c: &Ctx) -> Result<AccountId, Error> {
    c.identity
        .account()
        .ok_or_else(|| authentication_required("billing is per account"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutRequest {
    tier: String,
}

/// `POST /api/billing/checkout {"tier":"pro"|"enterprise"}` -> `{"id","url"}`: the Stripe
/// Checkout page to send the customer to.
pub async fn checkout(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let billing = configured(&s)?;
    let id = account(&c)?;
    require_json(&c)?;
    let req: CheckoutRequest = crate::error::parse_json(&c.body)?;
    let tier: Tier = req
        .tier
        .parse()
        .map_err(|e| Error::bad_request(format!("tier: {e}")))?;
    let session = billing
        .checkout(&s.defense.accounts, &id, tier, &c.request_id)
        .await?;
    Reply::ok(&session)
}

/// `POST /api/billing/portal` -> `{"id","url"}`: the Stripe Billing Portal for the account.
pub async fn portal(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let billing = configured(&s)?;
    let id = account(&c)?;
    let session = billing
        .portal(&s.defense.accounts, &id, &c.request_id)
        .await?;
    Reply::ok(&session)
}

/// `POST /api/billing/webhook`: public; the `Stripe-Signature` over the raw body is its
/// authentication. A client address that sends more than `defense.max_failed_auth_per_minute`
/// bad signatures in a minute gets 429 `too_many_failed_auth` (bad API keys count there too).
pub async fn webhook(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let billing = configured(&s)?;
    let now = crate::accounts::now_secs();
    let from = Subject::anonymous(c.identity.client_ip).to_string();
    let failed_auth = &s.defense.failed_auth;
    if let Some(secs) = failed_auth.check(&from, now as u64).await {
        return Err(Error::new(
            ErrorCode::TooManyFailedAuth,
            format!(
                "too many bad webhook signatures from this address: at most {} a minute",
                failed_auth.max()
            ),
        )
        .with_retry_after(secs));
    }
    let signature = c
        .headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let delivery = match billing
        .handle_webhook(&s.defense.accounts, signature, &c.body, now)
        .await
    {
        Err(e) if e.code == ErrorCode::InvalidSignature => {
            failed_auth.record(&from, now as u64).await;
            return Err(e);
        }
        other => other?,
    };
    let reason = match &delivery.outcome {
        Outcome::Skipped(r) => Some(r.as_str()),
        _ => None,
    };
    Reply::ok(&json!({
        "received": true,
        "event": delivery.event_id,
        "type": delivery.kind,
        "outcome": delivery.outcome.label(),
        "reason": reason,
    }))
}
