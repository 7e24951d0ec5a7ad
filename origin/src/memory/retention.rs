//! The retention sweeper: every `memory.sweep_interval_secs` it deletes each owner's rows
//! older than its tier's `memory.retention_days`. Where an owner's tier comes from is the
//! app's business (a function it hands in).

use super::config::PerTier;
use super::MemoryStore;
use heady_shared::{AccountId, Tier};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The tier an owner is on, or `None` when unknown (its rows are then kept).
pub type TierOf = Arc<dyn Fn(&AccountId) -> Option<Tier> + Send + Sync>;

/// Sweeps until `cancel` fires: first after one interval, then every interval.
pub async fn sweep_every(
    memory: Arc<MemoryStore>,
    retention: PerTier,
    every: Duration,
    tier_of: TierOf,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let (memory, tier_of) = (memory.clone(), tier_of.clone());
        let swept = tokio::task::spawn_blocking(move || {
            memory.sweep_blocking(now_ms(), &retention, &*tier_of)
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
