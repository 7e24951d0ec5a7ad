//! Stripe events, read and decided. Pure: an event (verified already) and the account as
//! stored go in, what to store comes out, with time as an argument.
//!
//! - `checkout.session.completed` links the Stripe customer and subscription to the account
//!   named by `client_reference_id`; the tier comes with the subscription's own events.
//! - `customer.subscription.created|updated|deleted`: the tier is the one whose price the
//!   subscription has (`billing.prices`). `active` and `trialing` grant it; `past_due` keeps it
//!   until `billing.past_due_grace_days` after the subscription became past_due; `canceled`,
//!   `unpaid`, `incomplete`, `incomplete_expired`, `paused` and deletion mean Free.
//! - `invoice.paid` / `invoice.payment_failed` are recorded on the account.
//!
//! Order: an event whose `created` is older than the last one applied to the same
//! subscription changes nothing. Events of one second are ordered by the lifecycle (a
//! subscription is created incomplete, becomes active, then past_due, unpaid, canceled), so a
//! later state is never undone by an earlier one delivered late. An event of another
//! subscription than the account's is applied only when it is live (active, trialing,
//! past_due) and the account's own is not: a second subscription bought by mistake neither
//! cancels nor overrides the first.

use crate::accounts::billing::{BillingDecision, InvoiceStatus, SubscriptionStatus};
use crate::accounts::{Account, Subscription};
use crate::billing::config::Prices;
use heady_shared::{AccountId, Tier};
use serde_json::Value;

/// A verified event: the fields billing uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub created: i64,
    /// `data.object`.
    pub object: Value,
}

/// The event types billing acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    CheckoutCompleted,
    SubscriptionCreated,
    SubscriptionUpdated,
    SubscriptionDeleted,
    InvoicePaid,
    InvoicePaymentFailed,
    /// Anything else: answered 200 and ignored.
    Other,
}

impl Kind {
    pub fn of(kind: &str) -> Kind {
        match kind {
            "checkout.session.completed" => Kind::CheckoutCompleted,
            "customer.subscription.created" => Kind::SubscriptionCreated,
            "customer.subscription.updated" => Kind::SubscriptionUpdated,
            "customer.subscription.deleted" => Kind::SubscriptionDeleted,
            "invoice.paid" => Kind::InvoicePaid,
            "invoice.payment_failed" => Kind::InvoicePaymentFailed,
            _ => Kind::Other,
        }
    }

    /// The metrics label: the type for the ones billing knows, `other` for the rest.
    pub fn label(self) -> &'static str {
        match self {
            Kind::CheckoutCompleted => "checkout.session.completed",
            Kind::SubscriptionCreated => "customer.subscription.created",
            Kind::SubscriptionUpdated => "customer.subscription.updated",
            Kind::SubscriptionDeleted => "customer.subscription.deleted",
            Kind::InvoicePaid => "invoice.paid",
            Kind::InvoicePaymentFailed => "invoice.payment_failed",
            Kind::Other => "other",
        }
    }
}

fn excerpt(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A Stripe object id: letters, digits and `_`.
fn stripe_id(v: &Value, field: &str) -> Result<String, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{field} is not a string"))?;
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("{field} {:?} is not a Stripe id", excerpt(s)));
    }
    Ok(s.to_string())
}

/// An id given as a string, or as an expanded object with an `id`; `None` when null/absent.
fn id_or_object(v: Option<&Value>, field: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => o.get("id").map(|id| stripe_id(id, field)).transpose(),
        Some(other) => stripe_id(other, field).map(Some),
    }
}

/// Reads a webhook body: `{"id":"evt_...","object":"event","type":..,"created":..,
/// "data":{"object":{..}}}`.
pub fn parse(body: &[u8]) -> Result<Event, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("object").and_then(Value::as_str) != Some("event") {
        return Err("not a Stripe event (its \"object\" is not \"event\")".into());
    }
    let id = stripe_id(v.get("id").unwrap_or(&Value::Null), "id")?;
    if !id.starts_with("evt_") {
        return Err(format!(
            "id {:?} is not an event id (evt_...)",
            excerpt(&id)
        ));
    }
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.len() <= 100)
        .ok_or("type is missing")?
        .to_string();
    let created = v
        .get("created")
        .and_then(Value::as_i64)
        .ok_or("created is not a number")?;
    let object = v
        .get("data")
        .and_then(|d| d.get("object"))
        .filter(|o| o.is_object())
        .cloned()
        .ok_or("data.object is missing")?;
    Ok(Event {
        id,
        kind,
        created,
        object,
    })
}

/// What `checkout.session.completed` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// `client_reference_id` as sent (checked when used).
    pub reference: Option<String>,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub mode: String,
}

impl Checkout {
    pub fn read(o: &Value) -> Result<Checkout, String> {
        Ok(Checkout {
            reference: o
                .get("client_reference_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            customer: id_or_object(o.get("customer"), "customer")?,
            subscription: id_or_object(o.get("subscription"), "subscription")?,
            mode: o
                .get("mode")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
    }

    /// The account it was made for.
    pub fn account(&self) -> Result<AccountId, String> {
        let r = self
            .reference
            .as_deref()
            .ok_or("ignored: the session has no client_reference_id")?;
        AccountId::parse(r).map_err(|_| {
            format!(
                "ignored: client_reference_id {:?} is not an account id",
                excerpt(r)
            )
        })
    }
}

/// A subscription object, as far as tiers go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSnapshot {
    pub id: String,
    pub customer: String,
    pub status: SubscriptionStatus,
    /// The prices of its items.
    pub prices: Vec<String>,
    /// `current_period_end` of the subscription (API versions before 2025-03-31) or the
    /// latest of its items' (later versions).
    pub current_period_end: Option<i64>,
}

impl SubscriptionSnapshot {
    pub fn read(o: &Value) -> Result<SubscriptionSnapshot, String> {
        let id = stripe_id(o.get("id").unwrap_or(&Value::Null), "id")?;
        let customer = id_or_object(o.get("customer"), "customer")?
            .ok_or("the subscription has no customer")?;
        let status = o
            .get("status")
            .and_then(Value::as_str)
            .ok_or("status is missing")?
            .parse()?;
        let items: &[Value] = o
            .get("items")
            .and_then(|i| i.get("data"))
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let mut prices = Vec::new();
        for item in items {
            let price = item
                .get("price")
                .or_else(|| item.get("plan"))
                .and_then(|p| p.get("id"));
            if let Some(p) = price {
                prices.push(stripe_id(p, "items.data[].price.id")?);
            }
        }
        let current_period_end =
            o.get("current_period_end")
                .and_then(Value::as_i64)
                .or_else(|| {
                    items
                        .iter()
                        .filter_map(|i| i.get("current_period_end").and_then(Value::as_i64))
                        .max()
                });
        Ok(SubscriptionSnapshot {
            id,
            customer,
            status,
            prices,
            current_period_end,
        })
    }
}

/// The customer an invoice belongs to.
pub fn invoice_customer(o: &Value) -> Result<String, String> {
    id_or_object(o.get("customer"), "customer")?.ok_or_else(|| "the invoice has no customer".into())
}

/// The rules a subscription event is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub prices: &'a Prices,
    pub grace_secs: i64,
}

/// Where a status stands in a subscription's life, for events of the same second.
fn stage(status: SubscriptionStatus) -> u8 {
    use SubscriptionStatus::*;
    match status {
        Incomplete => 0,
        Trialing | Active => 1,
        PastDue => 2,
        Unpaid | Paused => 3,
        Canceled | IncompleteExpired => 4,
    }
}

/// `checkout.session.completed`: link the customer, and the subscription unless the account
/// has a live one already.
pub fn decide_checkout(a: &Account, c: &Checkout) -> BillingDecision {
    if c.mode != "subscription" {
        return BillingDecision::Skip(format!(
            "ignored: a {:?} checkout, not a subscription",
            excerpt(&c.mode)
        ));
    }
    if let (Some(mine), Some(theirs)) = (&a.stripe_customer_id, &c.customer) {
        if mine != theirs {
            return BillingDecision::Skip(format!(
                "ignored: the session's customer {theirs} is not the account's ({mine})"
            ));
        }
    }
    let mut after = a.clone();
    if after.stripe_customer_id.is_none() {
        after.stripe_customer_id = c.customer.clone();
    }
    let current_live = a
        .subscription
        .status
        .is_some_and(SubscriptionStatus::is_live);
    if c.subscription.is_some() && (a.stripe_subscription_id.is_none() || !current_live) {
        if after.stripe_subscription_id != c.subscription {
            // The status and price belong to the subscription they were read from.
            after.subscription = Subscription {
                invoice_status: a.subscription.invoice_status,
                invoice_at: a.subscription.invoice_at,
                ..Subscription::default()
            };
        }
        after.stripe_subscription_id = c.subscription.clone();
    }
    if after == *a {
        BillingDecision::Skip("unchanged: already linked".into())
    } else {
        BillingDecision::Apply(Box::new(after))
    }
}

/// `customer.subscription.*`: the account's subscription state and tier after the event.
pub fn decide_subscription(
    a: &Account,
    s: &SubscriptionSnapshot,
    deleted: bool,
    created: i64,
    policy: Policy<'_>,
    now: i64,
) -> BillingDecision {
    let status = if deleted {
        SubscriptionStatus::Canceled
    } else {
        s.status
    };
    let same = a.stripe_subscription_id.as_deref() == Some(s.id.as_str());
    if let Some(current) = a.stripe_subscription_id.as_deref().filter(|_| !same) {
        if !status.is_live() {
            return BillingDecision::Skip(format!(
                "ignored: subscription {} ended, the account's is {current}",
                s.id
            ));
        }
        if a.subscription
            .status
            .is_some_and(SubscriptionStatus::is_live)
        {
            return BillingDecision::Skip(format!(
                "ignored: subscription {} while the account's {current} is live",
                s.id
            ));
        }
    }
    if same {
        if let Some(last) = a.subscription.event_at {
            let older = created < last;
            let earlier_stage = created == last
                && a.subscription
                    .status
                    .is_some_and(|was| stage(status) < stage(was));
            if older || earlier_stage {
                return BillingDecision::Skip(format!(
                    "stale: created {created}, the subscription's last applied event is of {last}"
                ));
            }
        }
    }
    let paid = s
        .prices
        .iter()
        .filter_map(|p| policy.prices.tier_of(p))
        .max();
    if status.is_live() && paid.is_none() {
        return BillingDecision::Skip(format!(
            "ignored: the subscription's prices ({}) are not billing.prices",
            s.prices.join(", ")
        ));
    }
    let past_due_since = (status == SubscriptionStatus::PastDue).then_some(
        match (same, a.subscription.status, a.subscription.past_due_since) {
            (true, Some(SubscriptionStatus::PastDue), Some(since)) => since,
            _ => created,
        },
    );
    let tier = match status {
        SubscriptionStatus::Active | SubscriptionStatus::Trialing => paid,
        SubscriptionStatus::PastDue => paid.filter(|_| {
            past_due_since.is_some_and(|since| now < since.saturating_add(policy.grace_secs))
        }),
        _ => None,
    }
    .unwrap_or(Tier::Free);
    let price = s
        .prices
        .iter()
        .find(|p| policy.prices.tier_of(p).is_some())
        .or(s.prices.first())
        .cloned();
    let mut after = a.clone();
    after.tier = tier;
    after.stripe_subscription_id = Some(s.id.clone());
    if after.stripe_customer_id.is_none() {
        after.stripe_customer_id = Some(s.customer.clone());
    }
    after.subscription = Subscription {
        status: Some(status),
        price,
        current_period_end: s.current_period_end,
        past_due_since,
        event_at: Some(created),
        invoice_status: a.subscription.invoice_status,
        invoice_at: a.subscription.invoice_at,
    };
    BillingDecision::Apply(Box::new(after))
}

/// `invoice.paid` / `invoice.payment_failed`: the last invoice's outcome, newest wins.
pub fn decide_invoice(
    a: &Account,
    customer: &str,
    status: InvoiceStatus,
    created: i64,
) -> BillingDecision {
    if let Some(at) = a.subscription.invoice_at.filter(|at| created < *at) {
        return BillingDecision::Skip(format!(
            "stale: created {created}, the last invoice event is of {at}"
        ));
    }
    let mut after = a.clone();
    if after.stripe_customer_id.is_none() {
        after.stripe_customer_id = Some(customer.to_string());
    }
    after.subscription.invoice_status = Some(status);
    after.subscription.invoice_at = Some(created);
    BillingDecision::Apply(Box::new(after))
}

/// Accounts past_due since this time or earlier have used up their grace at `now`.
pub fn grace_cutoff(now: i64, grace_secs: i64) -> i64 {
    now.saturating_sub(grace_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use heady_shared::Classification;
    use serde_json::json;
    use SubscriptionStatus::*;

    const DAY: i64 = 86_400;

    fn prices() -> Prices {
        Prices {
            pro: Some("price_pro".into()),
            enterprise: Some("price_ent".into()),
        }
    }

    fn policy(p: &Prices) -> Policy<'_> {
        Policy {
            prices: p,
            grace_secs: 7 * DAY,
        }
    }

    fn account() -> Account {
        Account::new("ann", Tier::Free, Classification::Internal, 0)
    }

    fn sub(id: &str, status: SubscriptionStatus, price: &str) -> SubscriptionSnapshot {
        SubscriptionSnapshot {
            id: id.into(),
            customer: "cus_1".into(),
            status,
            prices: vec![price.into()],
            current_period_end: Some(2_000_000),
        }
    }

    fn apply(d: BillingDecision) -> Account {
        match d {
            BillingDecision::Apply(a) => *a,
            BillingDecision::Skip(r) => panic!("skipped: {r}"),
        }
    }

    fn skipped(d: BillingDecision) -> String {
        match d {
            BillingDecision::Skip(r) => r,
            BillingDecision::Apply(a) => panic!("applied: {a:?}"),
        }
    }

    #[test]
    fn events_are_read_from_stripes_json() {
        let body = json!({
            "id": "evt_1N", "object": "event", "api_version": "2024-06-20", "created": 1_700_000_000,
            "type": "customer.subscription.updated", "livemode": false, "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "data": {"object": {
                "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "past_due",
                "items": {"object": "list", "data": [
                    {"id": "si_1", "object": "subscription_item", "price": {"id": "price_pro", "object": "price"}, "current_period_end": 1_702_000_000}
                ]}
            }, "previous_attributes": {"status": "active"}}
        });
        let e = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!((e.id.as_str(), e.created), ("evt_1N", 1_700_000_000));
        assert_eq!(Kind::of(&e.kind), Kind::SubscriptionUpdated);
        let s = SubscriptionSnapshot::read(&e.object).unwrap();
        assert_eq!(
            s,
            SubscriptionSnapshot {
                id: "sub_1".into(),
                customer: "cus_1".into(),
                status: PastDue,
                prices: vec!["price_pro".into()],
                current_period_end: Some(1_702_000_000),
            }
        );
        // Older API versions put the period on the subscription, and may expand the customer.
        let s = SubscriptionSnapshot::read(&json!({"id": "sub_2", "customer": {"id": "cus_9", "object": "customer"},
            "status": "active", "current_period_end": 5, "items": {"data": [{"plan": {"id": "price_ent"}}]}}))
        .unwrap();
        assert_eq!(
            (
                s.customer.as_str(),
                s.current_period_end,
                s.prices[0].as_str()
            ),
            ("cus_9", Some(5), "price_ent")
        );
        for bad in [
            json!({"object": "event", "id": "evt_1", "type": "x", "created": 1}),
            json!({"object": "list", "id": "evt_1", "type": "x", "created": 1, "data": {"object": {}}}),
            json!({"object": "event", "id": "cus_1", "type": "x", "created": 1, "data": {"object": {}}}),
            json!({"object": "event", "id": "evt_1", "type": "x", "created": "soon", "data": {"object": {}}}),
            json!({"object": "event", "id": "evt_1/..", "type": "x", "created": 1, "data": {"object": {}}}),
        ] {
            assert!(parse(bad.to_string().as_bytes()).is_err(), "{bad}");
        }
        assert!(parse(b"{").is_err());
        assert!(SubscriptionSnapshot::read(
            &json!({"id": "sub_1", "customer": "cus_1", "status": "weird"})
        )
        .is_err());
        assert_eq!(Kind::of("payment_intent.succeeded"), Kind::Other);
    }

    #[test]
    fn active_and_trialing_grant_the_prices_tier() {
        let p = prices();
        let a = apply(decide_subscription(
            &account(),
            &sub("sub_1", Active, "price_pro"),
            false,
            100,
            policy(&p),
            100,
        ));
        assert_eq!(a.tier, Tier::Pro);
        assert_eq!(a.stripe_subscription_id.as_deref(), Some("sub_1"));
        assert_eq!(a.stripe_customer_id.as_deref(), Some("cus_1"));
        assert_eq!(a.subscription.status, Some(Active));
        assert_eq!(a.subscription.current_period_end, Some(2_000_000));
        let a = apply(decide_subscription(
            &a,
            &sub("sub_1", Trialing, "price_ent"),
            false,
            101,
            policy(&p),
            101,
        ));
        assert_eq!(
            (a.tier, a.subscription.price.as_deref()),
            (Tier::Enterprise, Some("price_ent"))
        );
        // A price that is not ours grants nothing.
        assert!(skipped(decide_subscription(
            &account(),
            &sub("sub_1", Active, "price_x"),
            false,
            1,
            policy(&p),
            1
        ))
        .starts_with("ignored"));
    }

    #[test]
    fn past_due_keeps_the_tier_for_the_grace_period() {
        let p = prices();
        let a = apply(decide_subscription(
            &account(),
            &sub("sub_1", Active, "price_pro"),
            false,
            100,
            policy(&p),
            100,
        ));
        let a = apply(decide_subscription(
            &a,
            &sub("sub_1", PastDue, "price_pro"),
            false,
            200,
            policy(&p),
            200,
        ));
        assert_eq!(
            (a.tier, a.subscription.past_due_since),
            (Tier::Pro, Some(200))
        );
        // Another past_due update keeps the start of the grace.
        let a = apply(decide_subscription(
            &a,
            &sub("sub_1", PastDue, "price_pro"),
            false,
            300,
            policy(&p),
            200 + 7 * DAY,
        ));
        assert_eq!(
            (a.tier, a.subscription.past_due_since),
            (Tier::Free, Some(200))
        );
        assert_eq!(grace_cutoff(200 + 7 * DAY, 7 * DAY), 200);
        // Paid again: the tier is back and the grace forgotten.
        let a = apply(decide_subscription(
            &a,
            &sub("sub_1", Active, "price_pro"),
            false,
            400,
            policy(&p),
            400,
        ));
        assert_eq!((a.tier, a.subscription.past_due_since), (Tier::Pro, None));
        // No grace at all: Free at once.
        let none = Policy {
            prices: &p,
            grace_secs: 0,
        };
        let b = apply(decide_subscription(
            &a,
            &sub("sub_1", PastDue, "price_pro"),
            false,
            500,
            none,
            500,
        ));
        assert_eq!(b.tier, Tier::Free);
    }

    #[test]
    fn canceled_unpaid_and_deleted_return_to_free() {
        let p = prices();
        let live = apply(decide_subscription(
            &account(),
            &sub("sub_1", Active, "price_ent"),
            false,
            100,
            policy(&p),
            100,
        ));
        for (status, deleted) in [
            (Canceled, false),
            (Unpaid, false),
            (IncompleteExpired, false),
            (Paused, false),
            (Active, true),
        ] {
            let a = apply(decide_subscription(
                &live,
                &sub("sub_1", status, "price_ent"),
                deleted,
                200,
                policy(&p),
                200,
            ));
            assert_eq!(a.tier, Tier::Free, "{status} deleted={deleted}");
            if deleted {
                assert_eq!(a.subscription.status, Some(Canceled));
            }
        }
    }

    #[test]
    fn older_events_never_overwrite_newer_ones() {
        let p = prices();
        let canceled = apply(decide_subscription(
            &account(),
            &sub("sub_1", Canceled, "price_pro"),
            false,
            300,
            policy(&p),
            300,
        ));
        // The earlier "active" arrives late: nothing changes.
        let r = skipped(decide_subscription(
            &canceled,
            &sub("sub_1", Active, "price_pro"),
            false,
            200,
            policy(&p),
            301,
        ));
        assert!(r.starts_with("stale"), "{r}");
        // In the same second, an earlier stage of life is stale too, a later one is not.
        let r = skipped(decide_subscription(
            &canceled,
            &sub("sub_1", Active, "price_pro"),
            false,
            300,
            policy(&p),
            301,
        ));
        assert!(r.starts_with("stale"), "{r}");
        let incomplete = apply(decide_subscription(
            &account(),
            &sub("sub_1", Incomplete, "price_pro"),
            false,
            300,
            policy(&p),
            300,
        ));
        assert_eq!(incomplete.tier, Tier::Free);
        let active = apply(decide_subscription(
            &incomplete,
            &sub("sub_1", Active, "price_pro"),
            false,
            300,
            policy(&p),
            300,
        ));
        assert_eq!(active.tier, Tier::Pro);
        assert!(skipped(decide_subscription(
            &active,
            &sub("sub_1", Incomplete, "price_pro"),
            false,
            300,
            policy(&p),
            300
        ))
        .starts_with("stale"));
    }

    #[test]
    fn another_subscription_neither_cancels_nor_overrides_the_accounts() {
        let p = prices();
        let live = apply(decide_subscription(
            &account(),
            &sub("sub_1", Active, "price_pro"),
            false,
            100,
            policy(&p),
            100,
        ));
        let r = skipped(decide_subscription(
            &live,
            &sub("sub_2", Canceled, "price_pro"),
            false,
            200,
            policy(&p),
            200,
        ));
        assert!(r.contains("sub_2"), "{r}");
        let r = skipped(decide_subscription(
            &live,
            &sub("sub_2", Active, "price_ent"),
            false,
            200,
            policy(&p),
            200,
        ));
        assert!(r.contains("live"), "{r}");
        // Once the account's own has ended, a new live one takes over, even if its events are
        // older than the old one's last.
        let ended = apply(decide_subscription(
            &live,
            &sub("sub_1", Canceled, "price_pro"),
            false,
            500,
            policy(&p),
            500,
        ));
        let next = apply(decide_subscription(
            &ended,
            &sub("sub_2", Active, "price_ent"),
            false,
            400,
            policy(&p),
            501,
        ));
        assert_eq!(
            (next.tier, next.stripe_subscription_id.as_deref()),
            (Tier::Enterprise, Some("sub_2"))
        );
    }

    #[test]
    fn checkout_links_the_customer_and_subscription() {
        let a = account();
        let c = Checkout {
            reference: Some(a.id.to_string()),
            customer: Some("cus_1".into()),
            subscription: Some("sub_1".into()),
            mode: "subscription".into(),
        };
        let linked = apply(decide_checkout(&a, &c));
        assert_eq!(linked.stripe_customer_id.as_deref(), Some("cus_1"));
        assert_eq!(linked.stripe_subscription_id.as_deref(), Some("sub_1"));
        assert_eq!(
            linked.tier,
            Tier::Free,
            "the tier comes with the subscription's events"
        );
        assert!(skipped(decide_checkout(&linked, &c)).starts_with("unchanged"));
        let other = Checkout {
            customer: Some("cus_2".into()),
            ..c.clone()
        };
        assert!(skipped(decide_checkout(&linked, &other)).contains("cus_2"));
        let payment = Checkout {
            mode: "payment".into(),
            ..c.clone()
        };
        assert!(skipped(decide_checkout(&a, &payment)).starts_with("ignored"));
        assert!(Checkout {
            reference: Some("x".into()),
            ..c.clone()
        }
        .account()
        .is_err());
        assert_eq!(c.account().unwrap(), a.id);
    }

    #[test]
    fn invoices_are_recorded_newest_first() {
        let a = apply(decide_invoice(
            &account(),
            "cus_1",
            InvoiceStatus::PaymentFailed,
            100,
        ));
        assert_eq!(
            (a.subscription.invoice_status, a.subscription.invoice_at),
            (Some(InvoiceStatus::PaymentFailed), Some(100))
        );
        assert_eq!(a.tier, Tier::Free, "invoices do not change the tier");
        let b = apply(decide_invoice(&a, "cus_1", InvoiceStatus::Paid, 200));
        assert_eq!(b.subscription.invoice_status, Some(InvoiceStatus::Paid));
        assert!(skipped(decide_invoice(
            &b,
            "cus_1",
            InvoiceStatus::PaymentFailed,
            150
        ))
        .starts_with("stale"));
    }
}
