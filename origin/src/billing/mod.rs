//! Billing with Stripe: Checkout sells a tier, the Billing Portal manages it, and verified
//! webhooks set the account's tier in the shared account store, from where it reaches every
//! origin at once (the store's invalidation broadcast) and the edge within its session TTL.
//!
//! - [`config`]: `[billing]`; without a Stripe key billing is off (routes: 503).
//! - [`stripe`]: the API client (form-encoded, idempotent, Stripe's errors).
//! - [`signature`]: `Stripe-Signature` verification, pure.
//! - [`events`]: reading events and deciding what they do to an account, pure.
//! - [`webhook`]: a delivery: verify, read, find the account, apply once, in order.
//! - [`grace`]: the sweeper that ends a `past_due` account's grace.
//! - [`meter`]: Stripe's meter events API as the sink of the usage meter (Enterprise tokens).

pub mod config;
pub mod events;
pub mod grace;
pub mod meter;
pub mod signature;
pub mod stripe;
pub mod webhook;

use crate::accounts::{AccountError, AccountStore};
use crate::error::{Error, ErrorCode};
use crate::metrics::{Metrics, WebhookLabels};
use config::BillingConfig;
use heady_shared::{AccountId, Tier};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::Arc;
use std::time::Duration;
use stripe::{CheckoutRequest, StripeClient};

/// Billing, when `[billing]` is configured.
pub struct Billing {
    pub config: BillingConfig,
    pub stripe: StripeClient,
    webhooks: Family<WebhookLabels, Counter>,
    grace_expired: Counter,
}

/// A Stripe-hosted page to send the customer to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Session {
    pub id: String,
    pub url: String,
}

/// An account store failure on a billing route: logged, answered 503 without its text.
fn unavailable(e: AccountError) -> Error {
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

impl Billing {
    /// `None` when billing is not configured.
    pub fn new(config: &BillingConfig, metrics: &Metrics) -> anyhow::Result<Option<Arc<Billing>>> {
        let Some(key) = &config.stripe_secret_key else {
            return Ok(None);
        };
        let stripe = StripeClient::new(
            &config.api_base,
            key.clone(),
            Duration::from_millis(config.timeout_ms),
            metrics.stripe_calls.clone(),
        )?;
        Ok(Some(Arc::new(Billing {
            config: config.clone(),
            stripe,
            webhooks: metrics.webhooks.clone(),
            grace_expired: metrics.grace_expired.clone(),
        })))
    }

    /// A Checkout Session in subscription mode selling `tier` to the account: the account's
    /// Stripe customer is made once (its metadata names the account), the session names the
    /// account as `client_reference_id`. An account with a live subscription is sent to the
    /// portal instead (409), so nobody pays twice.
    pub async fn checkout(
        &self,
        store: &AccountStore,
        id: &AccountId,
        tier: Tier,
        request_id: &str,
    ) -> Result<Session, Error> {
        if tier == Tier::Free {
            return Err(Error::bad_request(
                "tier: free needs no checkout; give \"pro\" or \"enterprise\"",
            ));
        }
        let price = self.config.prices.price_of(tier).ok_or_else(|| {
            Error::bad_request(format!(
                "tier: {tier} is not sold here (billing.prices.{tier} is not set)"
            ))
        })?;
        let account = store.require_account(id).await.map_err(unavailable)?;
        if let (Some(status), Some(sub)) = (
            account.subscription.status.filter(|s| s.is_live()),
            &account.stripe_subscription_id,
        ) {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                format!(
                    "the account already has a subscription ({sub}, {status}, tier {}): change or cancel it in the billing portal (POST /api/billing/portal)",
                    account.tier
                ),
            )
            .with_status(409));
        }
        let customer = match &account.stripe_customer_id {
            Some(c) => c.clone(),
            None => {
                let made = self
                    .stripe
                    .create_customer(
                        id,
                        &format!("Heady account {}", account.name),
                        &format!("heady-customer-{id}"),
                    )
                    .await
                    .map_err(stripe::StripeError::into_error)?;
                let stored = store
                    .attach_customer(id, &made.id)
                    .await
                    .map_err(unavailable)?;
                stored.stripe_customer_id.unwrap_or(made.id)
            }
        };
        let session = self
            .stripe
            .create_checkout_session(
                &CheckoutRequest {
                    customer: &customer,
                    price,
                    account: id,
                    success_url: self.config.success_url.as_deref().unwrap_or_default(),
                    cancel_url: self.config.cancel_url.as_deref().unwrap_or_default(),
                },
                &format!("heady-checkout-{id}-{tier}-{request_id}"),
            )
            .await
            .map_err(stripe::StripeError::into_error)?;
        let url = session.url.ok_or_else(|| {
            Error::new(
                ErrorCode::StripeFailed,
                format!("Stripe made Checkout Session {} without a url", session.id),
            )
        })?;
        tracing::info!(account = %id, %tier, session = %session.id, "checkout session created");
        Ok(Session {
            id: session.id,
            url,
        })
    }

    /// A Billing Portal session for the account's Stripe customer (409 before it has one).
    pub async fn portal(
        &self,
        store: &AccountStore,
        id: &AccountId,
        request_id: &str,
    ) -> Result<Session, Error> {
        let account = store.require_account(id).await.map_err(unavailable)?;
        let Some(customer) = account.stripe_customer_id else {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                "the account has no Stripe customer yet: subscribe first (POST /api/billing/checkout)",
            )
            .with_status(409));
        };
        let session = self
            .stripe
            .create_portal_session(
                &customer,
                self.config.portal_return_url().unwrap_or_default(),
                &format!("heady-portal-{id}-{request_id}"),
            )
            .await
            .map_err(stripe::StripeError::into_error)?;
        Ok(Session {
            id: session.id,
            url: session.url,
        })
    }

    fn count(&self, event: &'static str, outcome: &'static str) {
        self.webhooks
            .get_or_create(&WebhookLabels { event, outcome })
            .inc();
    }
}
