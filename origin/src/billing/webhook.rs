//! One webhook delivery: verify the signature over the raw body, read the event, find its
//! account, then record the event and apply its effect in one store transaction.
//!
//! Answers, as Stripe reads them: 2xx means "delivered, do not send again"; anything else is
//! retried by Stripe for days. So: a bad signature is 400 `invalid_signature` (nothing is
//! read or stored); an event id seen before, an event type billing does not act on, and an
//! event that names no known account are 200; a store failure is 500 and a Stripe API failure
//! (looking up a customer) 502, so that Stripe tries again.

use super::events::{self, Checkout, Event, Kind, Policy, SubscriptionSnapshot};
use super::signature::{self, TOLERANCE_SECS};
use super::Billing;
use crate::accounts::billing::{Applied, BillingEvent, Decide, InvoiceStatus};
use crate::accounts::{Account, AccountError, AccountStore};
use crate::error::{Error, ErrorCode};
use heady_shared::AccountId;

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded and applied to the account.
    Applied,
    /// This event id was processed before: nothing done.
    Duplicate,
    /// Recorded; nothing changed (stale, another subscription, no such account, ...).
    Skipped(String),
    /// A type billing does not act on: not recorded.
    Ignored,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Skipped(_) => "skipped",
            Outcome::Ignored => "ignored",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event_id: String,
    pub kind: String,
    pub outcome: Outcome,
}

/// A store failure while handling a webhook: 500, so Stripe retries (the detail is logged).
fn storage(e: AccountError) -> Error {
    tracing::error!(error = %e, "billing webhook: the account store failed; Stripe will retry");
    Error::internal(format!("account store: {e}"))
}

impl Billing {
    /// Handles a delivery: `signature` is the `Stripe-Signature` header, `body` the raw body,
    /// `now` the time (Unix s).
    pub async fn handle_webhook(
        &self,
        store: &AccountStore,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<Delivery, Error> {
        let secrets: Vec<&str> = self
            .config
            .webhook_secrets
            .iter()
            .map(|s| s.expose())
            .collect();
        if let Err(e) = signature::verify(body, signature, &secrets, now, TOLERANCE_SECS) {
            self.count("unknown", "invalid_signature");
            return Err(Error::new(ErrorCode::InvalidSignature, e.to_string()));
        }
        let event = events::parse(body).map_err(|m| {
            self.count("unknown", "invalid");
            Error::bad_request(format!("the webhook body is not a Stripe event: {m}"))
        })?;
        let kind = Kind::of(&event.kind);
        let result = match kind {
            Kind::Other => Ok(Outcome::Ignored),
            _ => self.apply(store, &event, kind, now).await,
        };
        match &result {
            Ok(outcome) => {
                self.count(kind.label(), outcome.label());
                tracing::info!(
                    event = %event.id,
                    kind = %event.kind,
                    outcome = outcome.label(),
                    reason = match outcome { Outcome::Skipped(r) => r.as_str(), _ => "" },
                    "billing webhook"
                );
            }
            Err(e) => self.count(
                kind.label(),
                if e.is_server_error() {
                    "failed"
                } else {
                    "invalid"
                },
            ),
        }
        Ok(Delivery {
            event_id: event.id,
            kind: event.kind,
            outcome: result?,
        })
    }

    async fn apply(
        &self,
        store: &AccountStore,
        event: &Event,
        kind: Kind,
        now: i64,
    ) -> Result<Outcome, Error> {
        if store.billing_event_seen(&event.id).await.map_err(storage)? {
            return Ok(Outcome::Duplicate);
        }
        let unreadable = |m: String| {
            Error::bad_request(format!(
                "event {} ({}): unexpected data.object: {m}",
                event.id, event.kind
            ))
        };
        let created = event.created;
        let (account, decide): (Option<AccountId>, Result<Decide, String>) = match kind {
            Kind::CheckoutCompleted => {
                let c = Checkout::read(&event.object).map_err(unreadable)?;
                match c.account() {
                    Ok(id) => (
                        Some(id),
                        Ok(Box::new(move |a: &Account| events::decide_checkout(a, &c)) as Decide),
                    ),
                    Err(reason) => (None, Err(reason)),
                }
            }
            Kind::SubscriptionCreated | Kind::SubscriptionUpdated | Kind::SubscriptionDeleted => {
                let s = SubscriptionSnapshot::read(&event.object).map_err(unreadable)?;
                let deleted = kind == Kind::SubscriptionDeleted;
                let prices = self.config.prices.clone();
                let grace_secs = self.config.past_due_grace_secs();
                let found = self.resolve(store, &s.customer).await?;
                match found {
                    Ok(id) => (
                        Some(id),
                        Ok(Box::new(move |a: &Account| {
                            let policy = Policy {
                                prices: &prices,
                                grace_secs,
                            };
                            events::decide_subscription(a, &s, deleted, created, policy, now)
                        }) as Decide),
                    ),
                    Err(reason) => (None, Err(reason)),
                }
            }
            Kind::InvoicePaid | Kind::InvoicePaymentFailed => {
                let customer = events::invoice_customer(&event.object).map_err(unreadable)?;
                let status = if kind == Kind::InvoicePaid {
                    InvoiceStatus::Paid
                } else {
                    InvoiceStatus::PaymentFailed
                };
                let found = self.resolve(store, &customer).await?;
                match found {
                    Ok(id) => (
                        Some(id),
                        Ok(Box::new(move |a: &Account| {
                            events::decide_invoice(a, &customer, status, created)
                        }) as Decide),
                    ),
                    Err(reason) => (None, Err(reason)),
                }
            }
            Kind::Other => return Ok(Outcome::Ignored),
        };
        let record = BillingEvent {
            id: event.id.clone(),
            kind: event.kind.clone(),
            created,
        };
        let applied = store
            .apply_billing_event(account.as_ref(), &record, now, decide)
            .await
            .map_err(storage)?;
        Ok(match applied {
            Applied::Duplicate => Outcome::Duplicate,
            Applied::Skipped(reason) => Outcome::Skipped(reason),
            Applied::Updated { before, after } => {
                if before.tier != after.tier {
                    tracing::info!(
                        account = %after.id,
                        from = %before.tier,
                        to = %after.tier,
                        event = %event.id,
                        "tier changed by billing"
                    );
                }
                Outcome::Applied
            }
        })
    }

    /// The account of a Stripe customer: the one that stores it, else the one its
    /// `metadata.heady_account` names (asked of Stripe). `Ok(Err(reason))`: none.
    async fn resolve(
        &self,
        store: &AccountStore,
        customer: &str,
    ) -> Result<Result<AccountId, String>, Error> {
        if let Some(a) = store.account_by_customer(customer).await.map_err(storage)? {
            return Ok(Ok(a.id));
        }
        let c = match self.stripe.retrieve_customer(customer).await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => {
                return Ok(Err(format!("ignored: Stripe has no customer {customer}")))
            }
            Err(e) => return Err(e.into_error()),
        };
        if c.deleted {
            return Ok(Err(format!("ignored: customer {customer} is deleted")));
        }
        let Some(named) = c.metadata.get("heady_account") else {
            return Ok(Err(format!(
                "ignored: customer {customer} has no heady_account metadata"
            )));
        };
        let Ok(id) = AccountId::parse(named) else {
            return Ok(Err(format!(
                "ignored: customer {customer}'s heady_account is not an account id"
            )));
        };
        match store.account(&id).await.map_err(storage)? {
            None => Ok(Err(format!(
                "ignored: customer {customer} names account {id}, which does not exist"
            ))),
            Some(a) => match a.stripe_customer_id {
                Some(other) if other != customer => Ok(Err(format!(
                    "ignored: customer {customer} names account {id}, whose customer is {other}"
                ))),
                _ => Ok(Ok(id)),
            },
        }
    }
}
