//! Where usage is kept: the accounts' store. PostgreSQL when `database_url` is set (shared by
//! every origin; its tables have their own versioned migrations, recorded in
//! `usage_schema_migrations`), else the daemon's DuckDB file.
//!
//! Tables: `usage_daily` (account, UTC day, model: requests, prompt and completion tokens,
//! estimated requests) and `usage_meter`, the meter outbox (Enterprise account, bucket start:
//! tokens recorded, tokens reported, reports sent, and the value of the report under way).
//!
//! The outbox reports a bucket in numbered reports. Sealing a report fixes its value (the
//! bucket's unreported tokens) before it is sent; its identifier is
//! `heady-<account>-<bucket start>-<report number>`. Every origin that sends a sealed report
//! sends the same identifier with the same value, and marking it reported moves the number on
//! only once, so a retry or a second reporter never counts tokens twice; tokens recorded into
//! a bucket after its report was sealed go into the next report.

use super::duck::DuckUsage;
use super::pg::PgUsage;
use super::{Counts, UsageError};
use crate::db::Database;
use crate::pg::PgTarget;
use chrono::NaiveDate;
use heady_shared::AccountId;
use std::sync::Arc;
use std::time::Duration;

/// PostgreSQL connections each origin keeps for usage (the flusher, reads, the reporter).
const PG_POOL: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyRow {
    pub owner: AccountId,
    pub day: NaiveDate,
    pub model: String,
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterRow {
    pub owner: AccountId,
    /// Unix seconds.
    pub bucket_start: i64,
    pub tokens: u64,
}

/// One flush: added to the stored totals in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub daily: Vec<DailyRow>,
    pub meter: Vec<MeterRow>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.daily.is_empty() && self.meter.is_empty()
    }
}

/// A sealed report of one meter bucket, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterBucket {
    pub owner: AccountId,
    pub bucket_start: i64,
    /// The report's number within its bucket (0 for the first).
    pub seq: i64,
    /// Tokens this report carries.
    pub tokens: u64,
}

impl MeterBucket {
    /// Stable across retries and origins: the meter event's idempotency identifier.
    pub fn identifier(&self) -> String {
        format!("heady-{}-{}-{}", self.owner, self.bucket_start, self.seq)
    }
}

enum Backend {
    Duck(Arc<DuckUsage>),
    Pg(PgUsage),
}

pub struct UsageStore {
    backend: Backend,
}

macro_rules! duck {
    ($d:expr, |$s:ident| $body:expr) => {{
        let $s = $d.clone();
        crate::rt::blocking(move || $body)
            .await
            .map_err(|e| UsageError::Store(e.message))?
    }};
}

impl UsageStore {
    /// PostgreSQL when `pg` is given (connects and migrates), else the DuckDB file `db`.
    pub async fn connect(
        pg: Option<&PgTarget>,
        db: Option<Database>,
        timeout: Duration,
    ) -> Result<UsageStore, UsageError> {
        let backend = match pg {
            Some(pg) => Backend::Pg(
                PgUsage::open(pg, PG_POOL, timeout)
                    .await
                    .map_err(|e| UsageError::Store(format!("database_url {}: {e}", pg.shown())))?,
            ),
            None => {
                let db = db.ok_or_else(|| {
                    UsageError::Store(
                        "no usage store: neither database_url nor a DuckDB file".into(),
                    )
                })?;
                Backend::Duck(Arc::new(DuckUsage::open(db)?))
            }
        };
        Ok(UsageStore { backend })
    }

    /// [`UsageStore::connect`] for blocking callers (start-up): PostgreSQL needs a tokio
    /// runtime, and must not be opened on one of its worker threads.
    pub fn open(
        pg: Option<&PgTarget>,
        db: Option<Database>,
        timeout: Duration,
    ) -> Result<UsageStore, UsageError> {
        match pg {
            None => Ok(UsageStore {
                backend: Backend::Duck(Arc::new(DuckUsage::open(db.ok_or_else(|| {
                    UsageError::Store(
                        "no usage store: neither database_url nor a DuckDB file".into(),
                    )
                })?)?)),
            }),
            Some(_) => {
                let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                    UsageError::Store("the PostgreSQL backend needs a tokio runtime".into())
                })?;
                handle.block_on(Self::connect(pg, db, timeout))
            }
        }
    }

    /// `"postgres"` or `"duckdb"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Duck(_) => "duckdb",
            Backend::Pg(_) => "postgres",
        }
    }

    /// Adds a batch to the stored totals, all or nothing.
    pub async fn write(&self, batch: &Batch) -> Result<(), UsageError> {
        match &self.backend {
            Backend::Duck(d) => {
                let b = Batch {
                    daily: batch.daily.clone(),
                    meter: batch.meter.clone(),
                };
                duck!(d, |d| d.write(&b))
            }
            Backend::Pg(p) => p.write(batch).await,
        }
    }

    /// `owner`'s usage from `from` to `to` (inclusive), by day then model.
    pub async fn daily(
        &self,
        owner: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyRow>, UsageError> {
        match &self.backend {
            Backend::Duck(d) => {
                let o = owner.clone();
                duck!(d, |d| d.daily(&o, from, to))
            }
            Backend::Pg(p) => p.daily(owner, from, to).await,
        }
    }

    /// Seals a report for every bucket that closed before `closed_before` (Unix seconds) with
    /// unreported tokens, and answers up to `limit` sealed reports, oldest first. Reports
    /// sealed earlier and not yet marked come back again (their values unchanged).
    pub async fn pending_meter_buckets(
        &self,
        limit: usize,
        closed_before: i64,
        bucket_secs: i64,
    ) -> Result<Vec<MeterBucket>, UsageError> {
        match &self.backend {
            Backend::Duck(d) => {
                duck!(d, |d| d.pending_meter_buckets(
                    limit,
                    closed_before,
                    bucket_secs
                ))
            }
            Backend::Pg(p) => {
                p.pending_meter_buckets(limit, closed_before, bucket_secs)
                    .await
            }
        }
    }

    /// Marks sealed reports as sent. A report already marked (by a retry or another origin)
    /// is left as it is. Answers how many were marked now.
    pub async fn mark_meter_reported(&self, sent: &[MeterBucket]) -> Result<usize, UsageError> {
        match &self.backend {
            Backend::Duck(d) => {
                let s = sent.to_vec();
                duck!(d, |d| d.mark_meter_reported(&s))
            }
            Backend::Pg(p) => p.mark_meter_reported(sent).await,
        }
    }

    /// `owner`'s meter buckets: (bucket start, tokens recorded, tokens reported).
    pub async fn meter_buckets(
        &self,
        owner: &AccountId,
    ) -> Result<Vec<(i64, u64, u64)>, UsageError> {
        match &self.backend {
            Backend::Duck(d) => {
                let o = owner.clone();
                duck!(d, |d| d.meter_buckets(&o))
            }
            Backend::Pg(p) => p.meter_buckets(owner).await,
        }
    }

    /// Can the store answer? (`/ready`.)
    pub async fn ping(&self) -> Result<(), UsageError> {
        match &self.backend {
            Backend::Duck(_) => Ok(()),
            Backend::Pg(p) => p.ping().await,
        }
    }
}
