//! The retention sweeper: every `memory.sweep_interval_secs` it deletes each owner's rows
//! older than its tier's `memory.retention_days`. Where the owners' tiers come from is the
//! app's business (a function it hands in: the account store).

use super::config::PerTier;
use super::MemoryStore;
use heady_shared::{AccountId, Tier};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Every owner's tier, read before each sweep; `None` skips the sweep.
pub type Tiers = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Option<HashMap<AccountId, Tier>>> + Send>>
        + Send
        + Sync,
>;

/// Sweeps until `cancel` fires: first after one interval, then every interval.
pub async fn sweep_every(
    memory: Arc<MemoryStore>,
    retention: PerTier,
    every: Duration,
    tiers: Tiers,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(tiers) = tiers().await else {
            continue;
        };
        let memory = memory.clone();
        let swept = tokio::task::spawn_blocking(move || {
            memory.sweep_blocking(now_ms(), &retention, &|owner: &AccountId| {
                tiers.get(owner).copied()
            })
        })
        .await;
        match swept {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(rows = n, "retention sweep deleted expired memory rows"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "retention sweep failed; retrying next interval")
            }
            Err(e) => tracing::warn!(error = %e, "retention sweep task failed"),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
