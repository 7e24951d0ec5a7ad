//! The end of a `past_due` grace. A webhook event decides the tier when it arrives; when the
//! grace runs out later with no event (Stripe still retrying the card), this sweeper moves
//! the account to Free: every `billing.grace_sweep_secs` it changes, in the store, the accounts
//! past_due since before `now - past_due_grace_days` that still have a paid tier, and drops
//! them from every origin's cache. So an account's paid tier ends at most
//! `grace_sweep_secs` after its grace. (A sweeper rather than a check at each lookup: the
//! stored tier stays the one truth that the edge, the limiter and retention all read.)
//! Several origins may sweep at once; the change is conditional, so each account moves once.

use super::events::grace_cutoff;
use super::Billing;
use crate::accounts::AccountStore;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One sweep at `now` (Unix s): how many accounts moved to Free.
pub async fn sweep(billing: &Billing, store: &AccountStore, now: i64) -> usize {
    let cutoff = grace_cutoff(now, billing.config.past_due_grace_secs());
    match store.expire_past_due(cutoff).await {
        Ok(changed) => {
            for a in &changed {
                billing.grace_expired.inc();
                tracing::info!(
                    account = %a.id,
                    past_due_since = a.subscription.past_due_since.unwrap_or_default(),
                    "past_due grace is over: the account is Free"
                );
            }
            changed.len()
        }
        Err(e) => {
            tracing::warn!(error = %e, "past_due sweep failed; trying again next round");
            0
        }
    }
}

/// Sweeps now and every `billing.grace_sweep_secs` until `token` fires.
pub async fn sweep_every(
    billing: Arc<Billing>,
    store: Arc<AccountStore>,
    token: CancellationToken,
) {
    let every = Duration::from_secs(billing.config.grace_sweep_secs);
    loop {
        sweep(&billing, &store, crate::accounts::now_secs()).await;
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
