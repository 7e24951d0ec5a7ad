//! Usage in PostgreSQL (`database_url`), next to the accounts.
//!
//! Its schema has its own numbered migrations ([`MIGRATIONS`]), recorded in
//! `usage_schema_migrations` (a namespace apart from the accounts' `schema_migrations`, so the
//! two lists grow independently), each run once in its own transaction under an advisory
//! lock, as the accounts' are.

use super::store::{Batch, DailyRow, MeterBucket};
use super::{Counts, UsageError};
use crate::pg::PgTarget;
use chrono::NaiveDate;
use deadpool_postgres::Pool;
use heady_shared::AccountId;
use std::time::Duration;

/// Advisory lock id held while migrating usage ("usage" in ASCII).
const MIGRATION_LOCK: i64 = 0x75_73_61_67_65;

/// (version, SQL). Append only: a released migration never changes.
pub const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE usage_daily (
        account_id TEXT NOT NULL,
        day DATE NOT NULL,
        model TEXT NOT NULL,
        requests BIGINT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        estimated_requests BIGINT NOT NULL,
        PRIMARY KEY (account_id, day, model)
    );
    CREATE TABLE usage_meter (
        account_id TEXT NOT NULL,
        bucket_start BIGINT NOT NULL,
        tokens BIGINT NOT NULL,
        reported_tokens BIGINT NOT NULL DEFAULT 0,
        reports INTEGER NOT NULL DEFAULT 0,
        sealed_tokens BIGINT,
        PRIMARY KEY (account_id, bucket_start)
    );
    CREATE INDEX usage_meter_unreported ON usage_meter (bucket_start)
        WHERE sealed_tokens IS NOT NULL OR tokens > reported_tokens;",
)];

pub struct PgUsage {
    pool: Pool,
}

fn store_err(e: impl std::fmt::Display) -> UsageError {
    UsageError::Store(e.to_string())
}

fn damaged(what: &str, e: impl std::fmt::Display) -> UsageError {
    UsageError::Store(format!("stored {what} is damaged: {e}"))
}

impl PgUsage {
    pub async fn open(
        target: &PgTarget,
        pool_size: usize,
        timeout: Duration,
    ) -> Result<PgUsage, UsageError> {
        let pool = target.pool(pool_size, timeout).map_err(store_err)?;
        let store = PgUsage { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, UsageError> {
        self.pool.get().await.map_err(|e| {
            UsageError::Store(format!(
                "connecting to PostgreSQL: {}",
                crate::pg::with_causes(&e)
            ))
        })
    }

    /// Applies the usage migrations not yet recorded; answers the versions applied.
    pub async fn migrate(&self) -> Result<Vec<i32>, UsageError> {
        let mut c = self.client().await?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(store_err)?;
        let result = async {
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS usage_schema_migrations (
                    version INTEGER PRIMARY KEY,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )",
            )
            .await
            .map_err(store_err)?;
            let mut applied = Vec::new();
            for (version, sql) in MIGRATIONS {
                let tx = c.transaction().await.map_err(store_err)?;
                let done = tx
                    .query_opt(
                        "SELECT 1 FROM usage_schema_migrations WHERE version = $1",
                        &[version],
                    )
                    .await
                    .map_err(store_err)?
                    .is_some();
                if done {
                    continue;
                }
                tx.batch_execute(sql)
                    .await
                    .map_err(|e| UsageError::Store(format!("usage migration {version}: {e}")))?;
                tx.execute(
                    "INSERT INTO usage_schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await
                .map_err(store_err)?;
                tx.commit().await.map_err(store_err)?;
                tracing::info!(version, "PostgreSQL usage schema migration applied");
                applied.push(*version);
            }
            Ok::<_, UsageError>(applied)
        }
        .await;
        let unlock = c
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        let applied = result?;
        unlock.map_err(store_err)?;
        Ok(applied)
    }

    pub async fn write(&self, batch: &Batch) -> Result<(), UsageError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(store_err)?;
        if !batch.daily.is_empty() {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO usage_daily (account_id, day, model, requests, prompt_tokens,
                        completion_tokens, estimated_requests)
                     VALUES ($1, $2::TEXT::DATE, $3, $4, $5, $6, $7)
                     ON CONFLICT (account_id, day, model) DO UPDATE SET
                        requests = usage_daily.requests + EXCLUDED.requests,
                        prompt_tokens = usage_daily.prompt_tokens + EXCLUDED.prompt_tokens,
                        completion_tokens = usage_daily.completion_tokens + EXCLUDED.completion_tokens,
                        estimated_requests = usage_daily.estimated_requests + EXCLUDED.estimated_requests",
                )
                .await
                .map_err(store_err)?;
            for r in &batch.daily {
                let c = &r.counts;
                tx.execute(
                    &stmt,
                    &[
                        &r.owner.as_str(),
                        &r.day.to_string(),
                        &r.model,
                        &(c.requests as i64),
                        &(c.prompt_tokens as i64),
                        &(c.completion_tokens as i64),
                        &(c.estimated_requests as i64),
                    ],
                )
                .await
                .map_err(store_err)?;
            }
        }
        if !batch.meter.is_empty() {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO usage_meter (account_id, bucket_start, tokens) VALUES ($1, $2, $3)
                     ON CONFLICT (account_id, bucket_start) DO UPDATE SET
                        tokens = usage_meter.tokens + EXCLUDED.tokens",
                )
                .await
                .map_err(store_err)?;
            for r in &batch.meter {
                tx.execute(
                    &stmt,
                    &[&r.owner.as_str(), &r.bucket_start, &(r.tokens as i64)],
                )
                .await
                .map_err(store_err)?;
            }
        }
        tx.commit().await.map_err(store_err)
    }

    pub async fn daily(
        &self,
        owner: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyRow>, UsageError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT day::TEXT, model, requests, prompt_tokens, completion_tokens, estimated_requests
                 FROM usage_daily
                 WHERE account_id = $1 AND day BETWEEN $2::TEXT::DATE AND $3::TEXT::DATE
                 ORDER BY day, model",
                &[&owner.as_str(), &from.to_string(), &to.to_string()],
            )
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|r| {
                let day: String = r.try_get(0).map_err(store_err)?;
                let n = |i: usize| -> Result<u64, UsageError> {
                    Ok(r.try_get::<_, i64>(i).map_err(store_err)?.max(0) as u64)
                };
                Ok(DailyRow {
                    owner: owner.clone(),
                    day: day.parse().map_err(|e| damaged("usage day", e))?,
                    model: r.try_get(1).map_err(store_err)?,
                    counts: Counts {
                        requests: n(2)?,
                        prompt_tokens: n(3)?,
                        completion_tokens: n(4)?,
                        estimated_requests: n(5)?,
                    },
                })
            })
            .collect()
    }

    pub async fn pending_meter_buckets(
        &self,
        limit: usize,
        closed_before: i64,
        bucket_secs: i64,
    ) -> Result<Vec<MeterBucket>, UsageError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE usage_meter SET sealed_tokens = tokens - reported_tokens
             WHERE sealed_tokens IS NULL AND tokens > reported_tokens AND bucket_start + $2 <= $1",
            &[&closed_before, &bucket_secs],
        )
        .await
        .map_err(store_err)?;
        let rows = c
            .query(
                "SELECT account_id, bucket_start, reports, sealed_tokens FROM usage_meter
                 WHERE sealed_tokens IS NOT NULL ORDER BY bucket_start, account_id LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(store_err)?;
                Ok(MeterBucket {
                    owner: AccountId::parse(&id).map_err(|e| damaged("meter account", e))?,
                    bucket_start: r.try_get(1).map_err(store_err)?,
                    seq: i64::from(r.try_get::<_, i32>(2).map_err(store_err)?),
                    tokens: r.try_get::<_, i64>(3).map_err(store_err)?.max(0) as u64,
                })
            })
            .collect()
    }

    pub async fn mark_meter_reported(&self, sent: &[MeterBucket]) -> Result<usize, UsageError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(store_err)?;
        let stmt = tx
            .prepare_cached(
                "UPDATE usage_meter SET reported_tokens = reported_tokens + sealed_tokens,
                    reports = reports + 1, sealed_tokens = NULL
                 WHERE account_id = $1 AND bucket_start = $2 AND reports = $3
                   AND sealed_tokens IS NOT NULL",
            )
            .await
            .map_err(store_err)?;
        let mut marked = 0;
        for b in sent {
            let seq = i32::try_from(b.seq).unwrap_or(i32::MAX);
            marked += tx
                .execute(&stmt, &[&b.owner.as_str(), &b.bucket_start, &seq])
                .await
                .map_err(store_err)? as usize;
        }
        tx.commit().await.map_err(store_err)?;
        Ok(marked)
    }

    pub async fn meter_buckets(
        &self,
        owner: &AccountId,
    ) -> Result<Vec<(i64, u64, u64)>, UsageError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT bucket_start, tokens, reported_tokens FROM usage_meter
                 WHERE account_id = $1 ORDER BY bucket_start",
                &[&owner.as_str()],
            )
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(store_err)?,
                    r.try_get::<_, i64>(1).map_err(store_err)?.max(0) as u64,
                    r.try_get::<_, i64>(2).map_err(store_err)?.max(0) as u64,
                ))
            })
            .collect()
    }

    pub async fn ping(&self) -> Result<(), UsageError> {
        let c = self.client().await?;
        c.simple_query("SELECT 1").await.map_err(store_err)?;
        Ok(())
    }
}
