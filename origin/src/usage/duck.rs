//! Usage in the daemon's DuckDB file (the embedded default): tables `usage_daily` and
//! `usage_meter`, created when missing. Blocking; the store calls it off the runtime.

use super::store::{Batch, DailyRow, MeterBucket};
use super::{Counts, UsageError};
use crate::db::Database;
use chrono::NaiveDate;
use duckdb::types::Value;
use duckdb::{params, params_from_iter};
use heady_shared::AccountId;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage_daily (
    account_id VARCHAR NOT NULL,
    day DATE NOT NULL,
    model VARCHAR NOT NULL,
    requests BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    estimated_requests BIGINT NOT NULL,
    PRIMARY KEY (account_id, day, model)
);
CREATE TABLE IF NOT EXISTS usage_meter (
    account_id VARCHAR NOT NULL,
    bucket_start BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    reported_tokens BIGINT NOT NULL DEFAULT 0,
    reports INTEGER NOT NULL DEFAULT 0,
    sealed_tokens BIGINT,
    PRIMARY KEY (account_id, bucket_start)
);";

/// Rows per upsert statement.
const CHUNK: usize = 500;

pub struct DuckUsage {
    db: Database,
}

fn damaged(what: &str, e: impl std::fmt::Display) -> UsageError {
    UsageError::Store(format!("stored {what} is damaged: {e}"))
}

/// Runs `f` in a transaction on `conn`: committed when it succeeds, rolled back otherwise.
fn in_transaction<T>(
    conn: &duckdb::Connection,
    f: impl FnOnce() -> Result<T, UsageError>,
) -> Result<T, UsageError> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    match f() {
        Ok(v) => {
            conn.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

impl DuckUsage {
    pub fn open(db: Database) -> Result<DuckUsage, UsageError> {
        db.with_writer(|conn| -> Result<(), UsageError> {
            conn.execute_batch(SCHEMA)?;
            Ok(())
        })?;
        Ok(DuckUsage { db })
    }

    /// One multi-row upsert per table (in chunks of [`CHUNK`] rows): DuckDB pays ~ms per
    /// statement, so a statement per row would make a flush of many accounts slow.
    pub fn write(&self, batch: &Batch) -> Result<(), UsageError> {
        self.db.with_writer(|conn| {
            in_transaction(conn, || {
                for rows in batch.daily.chunks(CHUNK) {
                    let values = vec!["(?, CAST(? AS DATE), ?, ?, ?, ?, ?)"; rows.len()].join(", ");
                    let mut params: Vec<Value> = Vec::with_capacity(rows.len() * 7);
                    for r in rows {
                        let c = &r.counts;
                        params.extend([
                            Value::Text(r.owner.as_str().to_string()),
                            Value::Text(r.day.to_string()),
                            Value::Text(r.model.clone()),
                            Value::BigInt(c.requests as i64),
                            Value::BigInt(c.prompt_tokens as i64),
                            Value::BigInt(c.completion_tokens as i64),
                            Value::BigInt(c.estimated_requests as i64),
                        ]);
                    }
                    conn.execute(
                        &format!(
                            "INSERT INTO usage_daily (account_id, day, model, requests, prompt_tokens,
                                completion_tokens, estimated_requests) VALUES {values}
                             ON CONFLICT (account_id, day, model) DO UPDATE SET
                                requests = requests + EXCLUDED.requests,
                                prompt_tokens = prompt_tokens + EXCLUDED.prompt_tokens,
                                completion_tokens = completion_tokens + EXCLUDED.completion_tokens,
                                estimated_requests = estimated_requests + EXCLUDED.estimated_requests"
                        ),
                        params_from_iter(params),
                    )?;
                }
                for rows in batch.meter.chunks(CHUNK) {
                    let values = vec!["(?, ?, ?)"; rows.len()].join(", ");
                    let mut params: Vec<Value> = Vec::with_capacity(rows.len() * 3);
                    for r in rows {
                        params.extend([
                            Value::Text(r.owner.as_str().to_string()),
                            Value::BigInt(r.bucket_start),
                            Value::BigInt(r.tokens as i64),
                        ]);
                    }
                    conn.execute(
                        &format!(
                            "INSERT INTO usage_meter (account_id, bucket_start, tokens) VALUES {values}
                             ON CONFLICT (account_id, bucket_start) DO UPDATE SET
                                tokens = tokens + EXCLUDED.tokens"
                        ),
                        params_from_iter(params),
                    )?;
                }
                Ok(())
            })
        })
    }

    pub fn daily(
        &self,
        owner: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyRow>, UsageError> {
        self.db.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT CAST(day AS VARCHAR), model, requests, prompt_tokens, completion_tokens,
                        estimated_requests
                 FROM usage_daily
                 WHERE account_id = ? AND day BETWEEN CAST(? AS DATE) AND CAST(? AS DATE)
                 ORDER BY day, model",
            )?;
            let rows = stmt.query_map(
                params![owner.as_str(), from.to_string(), to.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        [
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                        ],
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (day, model, n) = row?;
                let n = n.map(|v| v.max(0) as u64);
                out.push(DailyRow {
                    owner: owner.clone(),
                    day: day.parse().map_err(|e| damaged("usage day", e))?,
                    model,
                    counts: Counts {
                        requests: n[0],
                        prompt_tokens: n[1],
                        completion_tokens: n[2],
                        estimated_requests: n[3],
                    },
                });
            }
            Ok(out)
        })
    }

    pub fn pending_meter_buckets(
        &self,
        limit: usize,
        closed_before: i64,
        bucket_secs: i64,
    ) -> Result<Vec<MeterBucket>, UsageError> {
        self.db.with_writer(|conn| {
            conn.execute(
                "UPDATE usage_meter SET sealed_tokens = tokens - reported_tokens
                 WHERE sealed_tokens IS NULL AND tokens > reported_tokens AND bucket_start + ? <= ?",
                params![bucket_secs, closed_before],
            )?;
            let mut stmt = conn.prepare(
                "SELECT account_id, bucket_start, reports, sealed_tokens FROM usage_meter
                 WHERE sealed_tokens IS NOT NULL ORDER BY bucket_start, account_id LIMIT ?",
            )?;
            let rows = stmt.query_map(params![limit as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, bucket_start, seq, tokens) = row?;
                out.push(MeterBucket {
                    owner: AccountId::parse(&id).map_err(|e| damaged("meter account", e))?,
                    bucket_start,
                    seq,
                    tokens: tokens.max(0) as u64,
                });
            }
            Ok(out)
        })
    }

    pub fn mark_meter_reported(&self, sent: &[MeterBucket]) -> Result<usize, UsageError> {
        self.db.with_writer(|conn| {
            in_transaction(conn, || {
                let mut stmt = conn.prepare_cached(
                    "UPDATE usage_meter SET reported_tokens = reported_tokens + sealed_tokens,
                        reports = reports + 1, sealed_tokens = NULL
                     WHERE account_id = ? AND bucket_start = ? AND reports = ?
                       AND sealed_tokens IS NOT NULL",
                )?;
                let mut marked = 0;
                for b in sent {
                    marked += stmt.execute(params![b.owner.as_str(), b.bucket_start, b.seq])?;
                }
                Ok(marked)
            })
        })
    }

    pub fn meter_buckets(&self, owner: &AccountId) -> Result<Vec<(i64, u64, u64)>, UsageError> {
        self.db.with_reader(|conn| {
            let mut stmt = conn.prepare(
                "SELECT bucket_start, tokens, reported_tokens FROM usage_meter
                 WHERE account_id = ? ORDER BY bucket_start",
            )?;
            let rows = stmt.query_map(params![owner.as_str()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?.max(0) as u64,
                    r.get::<_, i64>(2)?.max(0) as u64,
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}
