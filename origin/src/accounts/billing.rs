//! What the account store keeps about an account's Stripe subscription, and the processed
//! webhook events (idempotency by event id). The decisions about them are `crate::billing`'s;
//! the store only keeps them, writing an event's effect and its record in one transaction.

use super::Account;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Stripe's subscription statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Incomplete,
    IncompleteExpired,
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Paused,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 8] = [
        SubscriptionStatus::Incomplete,
        SubscriptionStatus::IncompleteExpired,
        SubscriptionStatus::Trialing,
        SubscriptionStatus::Active,
        SubscriptionStatus::PastDue,
        SubscriptionStatus::Canceled,
        SubscriptionStatus::Unpaid,
        SubscriptionStatus::Paused,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Incomplete => "incomplete",
            SubscriptionStatus::IncompleteExpired => "incomplete_expired",
            SubscriptionStatus::Trialing => "trialing",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Canceled => "canceled",
            SubscriptionStatus::Unpaid => "unpaid",
            SubscriptionStatus::Paused => "paused",
        }
    }

    /// Statuses under which the subscription still pays for its tier (`past_due` only for the
    /// grace period).
    pub const fn is_live(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Active | SubscriptionStatus::Trialing | SubscriptionStatus::PastDue
        )
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriptionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<SubscriptionStatus, String> {
        SubscriptionStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown subscription status {:?}",
                    s.chars().take(64).collect::<String>()
                )
            })
    }
}

/// An account's subscription as the last applied webhook event left it; all `None` until
/// billing has seen one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub status: Option<SubscriptionStatus>,
    /// The subscription's price (one of `billing.prices`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<i64>,
    /// Since when (Unix s) the subscription is `past_due`: the grace period counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub past_due_since: Option<i64>,
    /// `created` of the last subscription event applied: an older one never overwrites it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_at: Option<i64>,
    /// The last invoice event: paid or payment_failed, and its `created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_status: Option<InvoiceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_at: Option<i64>,
}

impl Subscription {
    pub fn is_empty(&self) -> bool {
        *self == Subscription::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Paid,
    PaymentFailed,
}

impl InvoiceStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::PaymentFailed => "payment_failed",
        }
    }
}

impl FromStr for InvoiceStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<InvoiceStatus, String> {
        match s {
            "paid" => Ok(InvoiceStatus::Paid),
            "payment_failed" => Ok(InvoiceStatus::PaymentFailed),
            other => Err(format!(
                "unknown invoice status {:?}",
                other.chars().take(64).collect::<String>()
            )),
        }
    }
}

/// A verified webhook event, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingEvent {
    /// Stripe's `evt_...` id: an event is applied at most once.
    pub id: String,
    /// Stripe's `type`, e.g. `customer.subscription.updated`.
    pub kind: String,
    /// Stripe's `created` (Unix s).
    pub created: i64,
}

/// A processed event as stored, with what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingEventRecord {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub received_at: i64,
    /// `applied`, or why nothing changed (`stale: ...`, `ignored: ...`).
    pub outcome: String,
}

/// What an event does to its account, decided on the account as stored (inside the
/// transaction that records the event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillingDecision {
    /// Store the tier and the billing fields of this account (the others are not written).
    Apply(Box<Account>),
    /// Record the event and change nothing; the reason is stored as its outcome.
    Skip(String),
}

/// What became of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Its id was processed before: nothing was done.
    Duplicate,
    /// Recorded, nothing changed.
    Skipped(String),
    /// Recorded and written.
    Updated {
        before: Box<Account>,
        after: Box<Account>,
    },
}

/// A decision the store runs on the account it has locked.
pub type Decide = Box<dyn FnOnce(&Account) -> BillingDecision + Send + 'static>;

/// Columns both backends store the subscription in, in this order after the account's own.
pub(crate) const SUBSCRIPTION_COLS: &str = "subscription_status, subscription_price, current_period_end, past_due_since, billing_event_at, invoice_status, invoice_at";

/// The subscription columns as stored, checked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn subscription_of(
    id: &str,
    status: Option<String>,
    price: Option<String>,
    current_period_end: Option<i64>,
    past_due_since: Option<i64>,
    event_at: Option<i64>,
    invoice_status: Option<String>,
    invoice_at: Option<i64>,
) -> Result<Subscription, super::AccountError> {
    let damaged = |problem: String| super::AccountError::Damaged {
        what: "account",
        id: id.to_string(),
        problem,
    };
    Ok(Subscription {
        status: status
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(damaged)?,
        price,
        current_period_end,
        past_due_since,
        event_at,
        invoice_status: invoice_status
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(damaged)?,
        invoice_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_stripes_spellings() {
        for s in SubscriptionStatus::ALL {
            assert_eq!(s.as_str().parse::<SubscriptionStatus>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert!("gold".parse::<SubscriptionStatus>().is_err());
        assert!(SubscriptionStatus::PastDue.is_live());
        assert!(!SubscriptionStatus::Unpaid.is_live());
        assert_eq!("payment_failed".parse(), Ok(InvoiceStatus::PaymentFailed));
        assert!(Subscription::default().is_empty());
    }
}
