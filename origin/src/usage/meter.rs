//! The meter reporter: Enterprise usage, kept in per-account buckets of
//! `usage.meter_bucket_secs` (the outbox in [`super::store`]), sent as meter events through a
//! [`MeterSink`] (Stripe's meter events API is one: `POST /v1/billing/meter_events`).
//!
//! Each event carries the bucket report's identifier (`heady-<account>-<bucket>-<n>`), which
//! the sink passes on as the event's idempotency identifier: a report whose answer was lost is
//! sent again with the same identifier and value, and the receiver counts it once. A failed
//! send stops the round (what was sent is marked); the next round, `usage.report_interval_secs`
//! later, retries from there. A report the sink refuses for good is logged, counted and marked
//! done, so it cannot hold back the buckets after it.

use super::store::MeterBucket;
use super::{OutcomeLabels, Usage, UsageError};
use crate::accounts::AccountStore;
use heady_shared::AccountId;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Reports sealed per round at most.
const BATCH: usize = 100;

/// One meter event: what the sink sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEvent {
    /// The meter's event name (`usage.meter_event_name`).
    pub event_name: String,
    pub account: AccountId,
    /// The account's Stripe customer (`stripe_customer_id`).
    pub customer: String,
    /// Tokens.
    pub value: u64,
    /// Stable across retries: the receiver counts an identifier once.
    pub identifier: String,
    /// The bucket's start, Unix seconds.
    pub timestamp: i64,
}

/// A send that did not go through. `permanent`: the receiver refused this event for good (for
/// Stripe, a 4xx other than 401, 403, 409 and 429: a timestamp past its 35-day window, a
/// malformed value); sending it again cannot succeed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MeterSinkError {
    pub message: String,
    pub permanent: bool,
}

impl MeterSinkError {
    /// Worth retrying: the receiver was unreachable, overloaded or failed.
    pub fn transient(message: impl Into<String>) -> MeterSinkError {
        MeterSinkError {
            message: message.into(),
            permanent: false,
        }
    }

    /// Refused for good.
    pub fn permanent(message: impl Into<String>) -> MeterSinkError {
        MeterSinkError {
            message: message.into(),
            permanent: true,
        }
    }
}

pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), MeterSinkError>> + Send + 'a>>;

/// Where meter events go (Stripe's meter events API; a test's recorder).
pub trait MeterSink: Send + Sync {
    fn send<'a>(&'a self, event: &'a MeterEvent) -> SinkFuture<'a>;
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub sent: usize,
    /// Buckets of accounts without a Stripe customer: kept for when they have one.
    pub no_customer: usize,
    /// Reports the sink refused for good: logged with their identifier and value, counted
    /// (`outcome="rejected"`) and marked done, so that they never hold back later buckets.
    pub rejected: usize,
    pub failed: bool,
}

/// One round: seal the closed buckets, send their reports, mark what was sent. `now_secs` is
/// the clock (buckets closed `usage.meter_settle_secs` before it are reported).
pub async fn report_once(
    usage: &Usage,
    accounts: &AccountStore,
    sink: &dyn MeterSink,
    now_secs: i64,
) -> Result<Round, UsageError> {
    let cfg = &usage.config;
    let closed_before = now_secs - cfg.meter_settle_secs as i64;
    let pending = usage
        .store
        .pending_meter_buckets(BATCH, closed_before, cfg.meter_bucket_secs as i64)
        .await?;
    let mut round = Round::default();
    let mut sent: Vec<MeterBucket> = Vec::new();
    let mut customers: Vec<(AccountId, Option<String>)> = Vec::new();
    let count = |outcome: &'static str| {
        usage
            .metrics
            .meter_events
            .get_or_create(&OutcomeLabels { outcome })
            .inc()
    };
    for b in pending {
        let customer = match customers.iter().find(|(a, _)| *a == b.owner) {
            Some((_, c)) => c.clone(),
            None => {
                let c = match accounts.account(&b.owner).await {
                    Ok(a) => a.and_then(|a| a.stripe_customer_id),
                    Err(e) => {
                        tracing::warn!(error = %e, "meter reporter: account store not answering");
                        round.failed = true;
                        break;
                    }
                };
                customers.push((b.owner.clone(), c.clone()));
                c
            }
        };
        let Some(customer) = customer else {
            round.no_customer += 1;
            count("no_customer");
            continue;
        };
        let event = MeterEvent {
            event_name: cfg.meter_event_name.clone(),
            account: b.owner.clone(),
            customer,
            value: b.tokens,
            identifier: b.identifier(),
            timestamp: b.bucket_start,
        };
        match sink.send(&event).await {
            Ok(()) => {
                count("reported");
                sent.push(b);
            }
            Err(e) if e.permanent => {
                count("rejected");
                tracing::error!(
                    identifier = %event.identifier,
                    account = %event.account,
                    tokens = event.value,
                    bucket_start = event.timestamp,
                    error = %e,
                    "meter event refused for good; not sent again (the usage API still has these tokens)"
                );
                round.rejected += 1;
                sent.push(b);
            }
            Err(e) => {
                count("failed");
                tracing::warn!(identifier = %event.identifier, error = %e, "meter event not sent; retried next round");
                round.failed = true;
                break;
            }
        }
    }
    if !sent.is_empty() {
        usage.store.mark_meter_reported(&sent).await?;
    }
    round.sent = sent.len();
    Ok(round)
}

/// Reports every `usage.report_interval_secs` until cancelled. Wiring a sink is one line:
/// `usage::meter::spawn_reporter(&app.usage, app.defense.accounts.clone(), sink, &app.background)`.
pub fn spawn_reporter(
    usage: &Arc<Usage>,
    accounts: Arc<AccountStore>,
    sink: Arc<dyn MeterSink>,
    background: &crate::lifecycle::Background,
) {
    let usage = usage.clone();
    let every = Duration::from_secs(usage.config.report_interval_secs);
    background.spawn("meter reporter", async move {
        loop {
            tokio::time::sleep(every).await;
            let now = crate::accounts::now_secs();
            // Recorded usage reaches the outbox at a flush; report what is there.
            if let Err(e) = report_once(&usage, &accounts, sink.as_ref(), now).await {
                tracing::warn!(error = %e, "meter reporter: usage store not answering");
            }
        }
    });
}
