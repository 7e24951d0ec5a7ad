//! `heady-origin memory reembed`: re-computes every stored row's vector with another embedder,
//! with the daemon stopped (DuckDB has one writer).
//!
//! Rows are walked in id order, `batch` at a time. Each batch is one transaction that writes
//! the new vectors and advances `reembed_cursor` in `memory_meta`, so an interrupted run
//! resumes after the last batch it committed. At the end the new embedder is recorded, the
//! cursor removed, and the persisted HNSW index deleted (the daemon rebuilds it from the
//! table: the old graph holds the old vectors).

use super::embedder::Embedder;
use super::meta::{self, EmbedderRecord};
use super::{MemoryError, INDEX_FILE};
use crate::db::Database;
use duckdb::arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::params;
use std::sync::Arc;
use std::time::Instant;

/// Where a run is, after each batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    /// Rows this run has re-embedded per second.
    pub rows_per_sec: f64,
}

impl Progress {
    /// Seconds left at this run's rate.
    pub fn eta_secs(&self) -> Option<f64> {
        (self.rows_per_sec > 0.0)
            .then(|| self.total.saturating_sub(self.done) as f64 / self.rows_per_sec)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every row holds the target's vectors and the target is recorded.
    Done {
        rows: u64,
        /// Rows re-embedded by an earlier, interrupted run.
        resumed_at: u64,
    },
    /// Stopped after the batches asked for (`stop_after`); the next run resumes.
    Stopped { done: u64, total: u64 },
}

/// The run's parameters.
pub struct Plan<'a> {
    pub target: &'a dyn Embedder,
    /// Rows per batch (one transaction each).
    pub batch: usize,
    /// Stop after this many batches (tests of the resume).
    pub stop_after: Option<u64>,
}

/// Re-embeds every row of `db` with `plan.target`, whose futures run on `rt`; `progress` is
/// told after each batch. Blocking: call it outside the runtime.
pub fn run(
    db: &Database,
    plan: &Plan<'_>,
    rt: &tokio::runtime::Handle,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome, MemoryError> {
    let target = EmbedderRecord::of(plan.target);
    let dim = target.dim;
    let wanted = target.describe();
    let (cursor, total) = db.with_writer(|conn| -> Result<(String, u64), MemoryError> {
        match meta::get(conn, "reembed_target")? {
            Some(t) if t != wanted => {
                return Err(MemoryError::ReembedUnfinished {
                    target: t,
                    path: db.path().to_path_buf(),
                })
            }
            Some(_) => {}
            None => {
                meta::set(conn, "reembed_target", &wanted)?;
                meta::set(conn, "reembed_cursor", "")?;
            }
        }
        let cursor = meta::get(conn, "reembed_cursor")?.unwrap_or_default();
        let has_table: i64 = conn.query_row(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'conversation_vectors'",
            [],
            |r| r.get(0),
        )?;
        let total: i64 = if has_table > 0 {
            conn.query_row("SELECT count(*) FROM conversation_vectors", [], |r| {
                r.get(0)
            })?
        } else {
            0
        };
        Ok((cursor, total.max(0) as u64))
    })?;
    let resumed_at: u64 = if cursor.is_empty() {
        0
    } else {
        db.with_writer(|conn| -> Result<u64, MemoryError> {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM conversation_vectors WHERE id <= ?",
                params![cursor],
                |r| r.get(0),
            )?;
            Ok(n.max(0) as u64)
        })?
    };
    let mut cursor = cursor;
    let mut done = resumed_at;
    let mut batches = 0u64;
    let started = Instant::now();
    loop {
        if plan.stop_after.is_some_and(|n| batches >= n) {
            return Ok(Outcome::Stopped { done, total });
        }
        let rows: Vec<(String, String)> = db.with_writer(|conn| -> Result<_, MemoryError> {
            let mut stmt = conn.prepare(
                "SELECT id, content FROM conversation_vectors WHERE id > ? ORDER BY id LIMIT ?",
            )?;
            let rows = stmt
                .query_map(params![cursor, plan.batch as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        let Some(last) = rows.last().map(|r| r.0.clone()) else {
            break;
        };
        let texts: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
        let vectors = rt
            .block_on(plan.target.embed(&texts))
            .map_err(MemoryError::Reembed)?;
        if vectors.len() != rows.len() || vectors.iter().any(|v| v.len() != dim) {
            return Err(MemoryError::Reembed(
                super::embedder::EmbedError::Dimension {
                    provider: plan.target.name(),
                    got: vectors.first().map_or(0, Vec::len),
                    want: dim,
                },
            ));
        }
        let batch = new_vectors(&rows, &vectors, dim)?;
        db.with_writer(|conn| -> Result<(), MemoryError> {
            conn.execute_batch(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS reembed_batch (id VARCHAR, embedding FLOAT[{dim}]);
                 DELETE FROM reembed_batch;"
            ))?;
            let mut app = conn.appender("reembed_batch")?;
            app.append_record_batch(batch)?;
            app.flush()?;
            drop(app);
            meta::in_transaction(conn, || {
                conn.execute_batch(
                    "UPDATE conversation_vectors SET embedding = b.embedding
                     FROM reembed_batch b WHERE conversation_vectors.id = b.id",
                )?;
                meta::set(conn, "reembed_cursor", &last)
            })
        })?;
        cursor = last;
        done += rows.len() as u64;
        batches += 1;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        progress(Progress {
            done,
            total,
            rows_per_sec: (done - resumed_at) as f64 / secs,
        });
    }
    db.with_writer(|conn| {
        meta::in_transaction(conn, || {
            meta::write_record(conn, &target)?;
            meta::remove(conn, "reembed_target")?;
            meta::remove(conn, "reembed_cursor")?;
            Ok(conn.execute_batch("DROP TABLE IF EXISTS reembed_batch")?)
        })
    })?;
    let index = db.dir().join(INDEX_FILE);
    match std::fs::remove_file(&index) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(MemoryError::Index(super::index::IndexError(format!(
                "could not delete {} (delete it before starting the daemon): {e}",
                index.display()
            ))))
        }
    }
    Ok(Outcome::Done {
        rows: done,
        resumed_at,
    })
}

fn new_vectors(
    rows: &[(String, String)],
    vectors: &[Vec<f32>],
    dim: usize,
) -> Result<RecordBatch, MemoryError> {
    let arrow_err = |e: duckdb::arrow::error::ArrowError| {
        MemoryError::from(duckdb::Error::ToSqlConversionFailure(Box::new(e)))
    };
    let ids: StringArray = rows.iter().map(|r| Some(r.0.as_str())).collect();
    let flat = Float32Array::from_iter_values(vectors.iter().flatten().copied());
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let emb = FixedSizeListArray::try_new(item.clone(), dim as i32, Arc::new(flat), None)
        .map_err(arrow_err)?;
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(item, dim as i32),
            false,
        ),
    ]);
    let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(emb)];
    RecordBatch::try_new(Arc::new(schema), columns).map_err(arrow_err)
}
