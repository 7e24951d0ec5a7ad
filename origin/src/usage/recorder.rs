//! Recorded usage, added up in memory until the next flush: one entry per account, model and
//! day, and per Enterprise account and meter bucket. Recording takes a lock for a few hash-map
//! additions; only the flush talks to the store, once for the whole batch. A failed flush puts
//! its batch back, so nothing is lost while the store is down (it is retried on the next
//! flush, and the last one runs at shutdown).

use super::store::{Batch, DailyRow, MeterRow, UsageStore};
use super::{Counts, UsageError, Used};
use chrono::NaiveDate;
use heady_shared::AccountId;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
struct Pending {
    daily: HashMap<(AccountId, NaiveDate, String), Counts>,
    /// (account, bucket start in Unix seconds) -> tokens.
    meter: HashMap<(AccountId, i64), u64>,
}

pub struct Recorder {
    bucket_secs: i64,
    pending: Mutex<Pending>,
    /// One flush at a time, so a batch put back after a failure cannot race a newer one.
    flushing: tokio::sync::Mutex<()>,
}

/// The UTC day of a Unix time in milliseconds.
pub fn day_of(ms: u64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms.min(i64::MAX as u64) as i64)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// The start (Unix seconds) of the bucket of `bucket_secs` holding `ms`.
pub fn bucket_of(ms: u64, bucket_secs: i64) -> i64 {
    let secs = (ms / 1000) as i64;
    secs - secs.rem_euclid(bucket_secs)
}

impl Recorder {
    pub fn new(bucket_secs: i64) -> Recorder {
        Recorder {
            bucket_secs: bucket_secs.max(1),
            pending: Mutex::new(Pending::default()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds what `owner` used at `now_ms`; `metered`: also into its meter bucket (Enterprise).
    pub fn add(&self, owner: &AccountId, metered: bool, used: &[Used], now_ms: u64) {
        if used.is_empty() {
            return;
        }
        let day = day_of(now_ms);
        let bucket = bucket_of(now_ms, self.bucket_secs);
        let mut p = self.lock();
        for u in used {
            p.daily
                .entry((owner.clone(), day, u.model.clone()))
                .or_default()
                .add(&Counts::of(u));
            if metered && u.total() > 0 {
                *p.meter.entry((owner.clone(), bucket)).or_default() += u.total();
            }
        }
    }

    /// Requests recorded and not yet written.
    pub fn pending_requests(&self) -> u64 {
        self.lock().daily.values().map(|c| c.requests).sum()
    }

    fn take(&self) -> Batch {
        let p = std::mem::take(&mut *self.lock());
        Batch {
            daily: p
                .daily
                .into_iter()
                .map(|((owner, day, model), counts)| DailyRow {
                    owner,
                    day,
                    model,
                    counts,
                })
                .collect(),
            meter: p
                .meter
                .into_iter()
                .map(|((owner, bucket_start), tokens)| MeterRow {
                    owner,
                    bucket_start,
                    tokens,
                })
                .collect(),
        }
    }

    fn put_back(&self, batch: Batch) {
        let mut p = self.lock();
        for r in batch.daily {
            p.daily
                .entry((r.owner, r.day, r.model))
                .or_default()
                .add(&r.counts);
        }
        for r in batch.meter {
            *p.meter.entry((r.owner, r.bucket_start)).or_default() += r.tokens;
        }
    }

    /// Writes everything recorded so far in one transaction; on failure it stays pending.
    pub async fn flush(&self, store: &UsageStore) -> Result<(), UsageError> {
        let _one = self.flushing.lock().await;
        let batch = self.take();
        if batch.is_empty() {
            return Ok(());
        }
        match store.write(&batch).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.put_back(batch);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(model: &str, p: u64, c: u64, estimated: bool) -> Used {
        Used {
            model: model.into(),
            prompt_tokens: p,
            completion_tokens: c,
            estimated,
        }
    }

    #[test]
    fn adds_up_per_account_model_and_day_and_buckets_enterprise() {
        let r = Recorder::new(60);
        let a = AccountId::from_random([1; 15]);
        let b = AccountId::from_random([2; 15]);
        // 2026-12-07T10:00:30Z and a minute later.
        let t = 1_796_637_630_000;
        r.add(&a, true, &[used("m1", 10, 5, false)], t);
        r.add(
            &a,
            true,
            &[used("m1", 1, 1, true), used("m2", 3, 0, false)],
            t + 60_000,
        );
        r.add(&b, false, &[used("m1", 7, 7, false)], t);
        let batch = r.take();
        assert_eq!(batch.daily.len(), 3);
        let a_m1 = batch
            .daily
            .iter()
            .find(|d| d.owner == a && d.model == "m1")
            .unwrap();
        assert_eq!(
            a_m1.counts,
            Counts {
                requests: 2,
                prompt_tokens: 11,
                completion_tokens: 6,
                estimated_requests: 1
            }
        );
        assert_eq!(a_m1.day.to_string(), "2026-12-07");
        let mut meter: Vec<(i64, u64)> = batch
            .meter
            .iter()
            .map(|m| {
                assert_eq!(m.owner, a, "only the metered account has buckets");
                (m.bucket_start, m.tokens)
            })
            .collect();
        meter.sort();
        assert_eq!(meter, vec![(1_796_637_600, 15), (1_796_637_660, 5)]);
        r.put_back(batch);
        assert_eq!(r.pending_requests(), 4);
    }
}
