//! The seed's `conversation_vectors` table: its schema, and rows in and out of DuckDB.
//!
//! The embedding column is `FLOAT[dim]`, not the seed's `DOUBLE[]`: DuckDB's vector functions
//! and HNSW need a fixed-size float array.

use super::row_cache::RowView;
use super::{id_of, key_of, MemoryError, NewRow, SearchHit};
use crate::db::Database;
use duckdb::arrow::array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int32Array, Int64Array, StringArray,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::params;
use std::collections::HashMap;
use std::sync::Arc;

pub const TABLE: &str = "conversation_vectors";

/// Creates the table when missing and checks that it stores `dim`-dimensional embeddings.
/// Returns the number of stored rows.
pub fn create(db: &Database, dim: usize) -> Result<u64, MemoryError> {
    db.with_writer(|conn| {
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS conversation_vectors (
                id VARCHAR PRIMARY KEY,
                ts BIGINT NOT NULL,
                role VARCHAR NOT NULL DEFAULT 'user',
                content TEXT NOT NULL,
                embedding FLOAT[{dim}],
                token_count INTEGER DEFAULT 0,
                session_id VARCHAR,
                metadata JSON
            );
            CREATE INDEX IF NOT EXISTS idx_conversation_vectors_ts ON conversation_vectors (ts);"
        ))?;
        let stored: String = conn.query_row(
            "SELECT data_type FROM information_schema.columns
             WHERE table_name = 'conversation_vectors' AND column_name = 'embedding'",
            [],
            |r| r.get(0),
        )?;
        if stored != format!("FLOAT[{dim}]") {
            return Err(MemoryError::DimMismatch {
                configured: dim,
                stored,
                path: db.path().to_path_buf(),
            });
        }
        let count: i64 = conn.query_row("SELECT count(*) FROM conversation_vectors", [], |r| {
            r.get(0)
        })?;
        Ok(count.max(0) as u64)
    })
}

/// The rows as one Arrow batch in the table's column order, for `Database::append`.
pub fn record_batch(rows: &[NewRow], dim: usize) -> Result<RecordBatch, MemoryError> {
    let arrow_err = |e: duckdb::arrow::error::ArrowError| {
        MemoryError::from(duckdb::Error::ToSqlConversionFailure(Box::new(e)))
    };
    let ids: StringArray = rows.iter().map(|r| Some(id_of(r.key))).collect();
    let ts = Int64Array::from_iter_values(rows.iter().map(|r| r.ts));
    let roles: StringArray = rows.iter().map(|r| Some(r.role.as_str())).collect();
    let contents: StringArray = rows.iter().map(|r| Some(r.content.as_str())).collect();
    let flat =
        Float32Array::from_iter_values(rows.iter().flat_map(|r| r.embedding.iter().copied()));
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let emb = FixedSizeListArray::try_new(item.clone(), dim as i32, Arc::new(flat), None)
        .map_err(arrow_err)?;
    let tokens = Int32Array::from_iter_values(rows.iter().map(|r| r.token_count));
    let sessions: StringArray = rows.iter().map(|r| r.session_id.as_deref()).collect();
    let metas: StringArray = rows.iter().map(|r| r.metadata.as_deref()).collect();
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(item, dim as i32),
            false,
        ),
        Field::new("token_count", DataType::Int32, false),
        Field::new("session_id", DataType::Utf8, true),
        Field::new("metadata", DataType::Utf8, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(ts),
        Arc::new(roles),
        Arc::new(contents),
        Arc::new(emb),
        Arc::new(tokens),
        Arc::new(sessions),
        Arc::new(metas),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).map_err(arrow_err)
}

/// A stored row as the index load reads it.
pub struct StoredRow<'a> {
    pub key: u64,
    pub view: RowView,
    pub embedding: Option<&'a [f32]>,
}

/// Reads every stored row, one Arrow batch at a time. Rows whose id is not one of ours are
/// skipped.
pub fn scan(
    db: &Database,
    dim: usize,
    mut each_batch: impl FnMut(Vec<StoredRow<'_>>),
) -> Result<(), MemoryError> {
    db.with_reader(|conn| {
        let mut stmt = conn.prepare(
            "SELECT id, embedding, content, role, ts, session_id, CAST(metadata AS VARCHAR) FROM conversation_vectors",
        )?;
        for batch in stmt.query_arrow([])? {
            let text = |c: usize| batch.column(c).as_any().downcast_ref::<StringArray>();
            let lists = batch
                .column(1)
                .as_any()
                .downcast_ref::<FixedSizeListArray>();
            let ts = batch.column(4).as_any().downcast_ref::<Int64Array>();
            let (Some(ids), Some(lists), Some(ts)) = (text(0), lists, ts) else {
                continue;
            };
            let (Some(contents), Some(roles), Some(sessions), Some(metas)) =
                (text(2), text(3), text(5), text(6))
            else {
                continue;
            };
            let Some(values) = lists.values().as_any().downcast_ref::<Float32Array>() else {
                continue;
            };
            let flat = values.values();
            let rows = (0..ids.len())
                .filter_map(|i| {
                    let key = key_of(ids.value(i))?;
                    let opt = |a: &StringArray| (!a.is_null(i)).then(|| a.value(i).to_string());
                    let start = (lists.offset() + i) * dim;
                    Some(StoredRow {
                        key,
                        view: RowView {
                            content: contents.value(i).to_string(),
                            role: roles.value(i).to_string(),
                            ts: ts.value(i),
                            session_id: opt(sessions),
                            metadata: opt(metas),
                        },
                        embedding: (!lists.is_null(i)).then(|| &flat[start..start + dim]),
                    })
                })
                .collect();
            each_batch(rows);
        }
        Ok(())
    })
}

/// `[0.1,0.2]` — a literal DuckDB casts to FLOAT[n] (the Rust driver cannot bind arrays).
fn vector_literal(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 12 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

fn hit_from_row(r: &duckdb::Row<'_>, score: f32) -> duckdb::Result<SearchHit> {
    let meta: Option<String> = r.get(5)?;
    Ok(SearchHit {
        id: r.get(0)?,
        score,
        content: r.get(1)?,
        role: r.get(2)?,
        ts: r.get(3)?,
        session_id: r.get(4)?,
        metadata: meta.and_then(|m| serde_json::from_str(&m).ok()),
    })
}

/// Exact cosine top k in DuckDB (`array_cosine_distance`), optionally within one session.
pub fn exact_search(
    db: &Database,
    dim: usize,
    query: &[f32],
    top_k: usize,
    session_id: Option<&str>,
) -> Result<Vec<SearchHit>, MemoryError> {
    db.with_reader(|conn| {
        let filter = if session_id.is_some() {
            "WHERE session_id = ?"
        } else {
            ""
        };
        // The query vector is cast once in a one-row CTE; a bare CAST(? ...) in the select
        // list would parse the literal again for every row.
        // Rank on (id, distance) alone, then read the other columns of the top k only.
        let sql = format!(
            "WITH q AS MATERIALIZED (SELECT CAST(? AS FLOAT[{dim}]) AS v),
             top AS (SELECT id, array_cosine_distance(embedding, q.v) AS d
                     FROM conversation_vectors, q {filter} ORDER BY d ASC, id LIMIT ?)
             SELECT c.id, c.content, c.role, c.ts, c.session_id, CAST(c.metadata AS VARCHAR), top.d
             FROM top JOIN conversation_vectors c ON c.id = top.id ORDER BY top.d ASC, c.id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let lit = vector_literal(query);
        let map = |r: &duckdb::Row<'_>| -> duckdb::Result<SearchHit> {
            let d: Option<f32> = r.get(6)?;
            hit_from_row(r, 1.0 - d.unwrap_or(1.0))
        };
        let rows: Vec<SearchHit> = match session_id {
            Some(s) => stmt
                .query_map(params![lit, s, top_k as i64], map)?
                .collect::<Result<_, _>>()?,
            None => stmt
                .query_map(params![lit, top_k as i64], map)?
                .collect::<Result<_, _>>()?,
        };
        Ok(rows)
    })
}

/// The rows of `hits` as results, in the order of `hits`, scored `1 - distance`. Keys no
/// longer stored are left out.
pub fn fetch(db: &Database, hits: &[super::index::Hit]) -> Result<Vec<SearchHit>, MemoryError> {
    if hits.is_empty() {
        return Ok(Vec::new());
    }
    db.with_reader(|conn| {
        // Ids come from u64 keys we format ourselves: hex digits only, safe to inline.
        let list: Vec<String> = hits.iter().map(|h| format!("'{}'", id_of(h.key))).collect();
        let sql = format!(
            "SELECT id, content, role, ts, session_id, CAST(metadata AS VARCHAR)
             FROM conversation_vectors WHERE id IN ({})",
            list.join(",")
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut found: HashMap<String, SearchHit> = stmt
            .query_map([], |r| hit_from_row(r, 0.0))?
            .map(|h| h.map(|h| (h.id.clone(), h)))
            .collect::<Result<_, _>>()?;
        Ok(hits
            .iter()
            .filter_map(|h| {
                found.remove(&id_of(h.key)).map(|mut row| {
                    row.score = 1.0 - h.distance;
                    row
                })
            })
            .collect())
    })
}

/// Deletes rows by id; returns how many there were.
pub fn delete(db: &Database, ids: &[String]) -> Result<usize, MemoryError> {
    db.with_writer(|conn| {
        let mut n = 0;
        for id in ids {
            n += conn.execute("DELETE FROM conversation_vectors WHERE id = ?", params![id])?;
        }
        Ok(n)
    })
}

/// Rows, distinct sessions, first and last `ts`.
pub fn summary(db: &Database) -> Result<(u64, u64, Option<i64>, Option<i64>), MemoryError> {
    db.with_reader(|conn| {
        let (total, sessions, first, last) = conn.query_row(
            "SELECT count(*), count(DISTINCT session_id), min(ts), max(ts) FROM conversation_vectors",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, Option<i64>>(3)?)),
        )?;
        Ok((total as u64, sessions as u64, first, last))
    })
}

/// DuckDB answers a query.
pub fn ping(db: &Database) -> Result<(), MemoryError> {
    db.with_reader(|conn| {
        conn.query_row("SELECT 1", [], |r| r.get::<_, i32>(0))?;
        Ok(())
    })
}
