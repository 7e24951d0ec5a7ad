//! The seed's `conversation_vectors` table: its schema, and rows in and out of DuckDB.
//!
//! The embedding column is `FLOAT[dim]`, not the seed's `DOUBLE[]`: DuckDB's vector functions
//! and HNSW need a fixed-size float array. `owner` (an account id) is the table's last column:
//! a database made before rows had owners gets it by `ALTER TABLE`, so new tables put it last
//! too and the appender's column order is the same for both.
//!
//! Every query that reads or deletes rows takes the owner (or, for an operator, the explicit
//! [`Scope::AllOwners`]): there is no unscoped variant.

use super::row_cache::RowView;
use super::{id_of, key_of, MemoryError, NewRow, Scope, SearchHit, SessionInfo};
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

/// What opening the table found.
pub struct Opened {
    /// Rows per owner.
    pub counts: Vec<(String, u64)>,
    /// Rows that had no owner and were given to the legacy account.
    pub migrated: u64,
}

/// Rows that have no owner yet: all of a table made before the `owner` column existed, the
/// rows with a NULL owner otherwise, none when there is no table.
pub fn unowned(db: &Database) -> Result<u64, MemoryError> {
    db.with_reader(|conn| {
        let columns: i64 = conn.query_row(
            "SELECT count(*) FILTER (WHERE column_name = 'owner'), count(*)
             FROM information_schema.columns WHERE table_name = 'conversation_vectors'",
            [],
            |r| {
                Ok(if r.get::<_, i64>(1)? == 0 {
                    -1
                } else {
                    r.get(0)?
                })
            },
        )?;
        let sql = match columns {
            -1 => return Ok(0),
            0 => "SELECT count(*) FROM conversation_vectors",
            _ => "SELECT count(*) FROM conversation_vectors WHERE owner IS NULL",
        };
        let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    })
}

/// Creates the table when missing, checks that it stores `dim`-dimensional embeddings, adds
/// the `owner` column to a table made before it existed and gives every row without an owner
/// to `legacy`.
pub fn create(db: &Database, dim: usize, legacy: Option<&str>) -> Result<Opened, MemoryError> {
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
                metadata JSON,
                owner VARCHAR
            );
            CREATE INDEX IF NOT EXISTS idx_conversation_vectors_ts ON conversation_vectors (ts);"
        ))?;
        let has_owner: i64 = conn.query_row(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = 'conversation_vectors' AND column_name = 'owner'",
            [],
            |r| r.get(0),
        )?;
        if has_owner == 0 {
            conn.execute_batch("ALTER TABLE conversation_vectors ADD COLUMN owner VARCHAR")?;
        }
        let migrated = match legacy {
            Some(legacy) => conn.execute(
                "UPDATE conversation_vectors SET owner = ? WHERE owner IS NULL",
                params![legacy],
            )? as u64,
            None => {
                let unowned: i64 = conn.query_row(
                    "SELECT count(*) FROM conversation_vectors WHERE owner IS NULL",
                    [],
                    |r| r.get(0),
                )?;
                if unowned > 0 {
                    return Err(MemoryError::Unowned(unowned as u64));
                }
                0
            }
        };
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
        let mut stmt =
            conn.prepare("SELECT owner, count(*) FROM conversation_vectors GROUP BY owner")?;
        let counts = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?
            .collect::<Result<_, _>>()?;
        Ok(Opened { counts, migrated })
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
    let owners: StringArray = rows.iter().map(|r| Some(r.owner.as_str())).collect();
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
        Field::new("owner", DataType::Utf8, true),
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
        Arc::new(owners),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).map_err(arrow_err)
}

/// A stored row as the index load reads it.
pub struct StoredRow<'a> {
    pub key: u64,
    pub owner: String,
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
            "SELECT id, embedding, content, role, ts, session_id, CAST(metadata AS VARCHAR), owner FROM conversation_vectors",
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
            let (Some(contents), Some(roles), Some(sessions), Some(metas), Some(owners)) =
                (text(2), text(3), text(5), text(6), text(7))
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
                        owner: owners.value(i).to_string(),
                        view: RowView {
                            owner: 0,
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
        owner: None,
    })
}

/// Exact cosine top k in DuckDB (`array_cosine_distance`) within `scope`, optionally within
/// one session.
pub fn exact_search(
    db: &Database,
    dim: usize,
    query: &[f32],
    top_k: usize,
    scope: &Scope,
    session_id: Option<&str>,
) -> Result<Vec<SearchHit>, MemoryError> {
    db.with_reader(|conn| {
        let mut conds = Vec::new();
        let mut args: Vec<String> = Vec::new();
        if let Scope::Owner(o) = scope {
            conds.push("owner = ?");
            args.push(o.as_str().to_string());
        }
        if let Some(s) = session_id {
            conds.push("session_id = ?");
            args.push(s.to_string());
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        // The query vector is cast once in a one-row CTE; a bare CAST(? ...) in the select
        // list would parse the literal again for every row.
        // Rank on (id, distance) alone, then read the other columns of the top k only.
        let sql = format!(
            "WITH q AS MATERIALIZED (SELECT CAST(? AS FLOAT[{dim}]) AS v),
             top AS (SELECT id, array_cosine_distance(embedding, q.v) AS d
                     FROM conversation_vectors, q {filter} ORDER BY d ASC, id LIMIT ?)
             SELECT c.id, c.content, c.role, c.ts, c.session_id, CAST(c.metadata AS VARCHAR), top.d, c.owner
             FROM top JOIN conversation_vectors c ON c.id = top.id ORDER BY top.d ASC, c.id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let lit = vector_literal(query);
        let all = matches!(scope, Scope::AllOwners);
        let map = |r: &duckdb::Row<'_>| -> duckdb::Result<SearchHit> {
            let d: Option<f32> = r.get(6)?;
            let mut hit = hit_from_row(r, 1.0 - d.unwrap_or(1.0))?;
            if all {
                hit.owner = r.get(7)?;
            }
            Ok(hit)
        };
        let mut params: Vec<&dyn duckdb::ToSql> = vec![&lit];
        for a in &args {
            params.push(a);
        }
        let k = top_k as i64;
        params.push(&k);
        let rows: Vec<SearchHit> = stmt
            .query_map(params.as_slice(), map)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    })
}

/// The rows of `hits` as results, in the order of `hits`, scored `1 - distance`. Keys no
/// longer stored are left out. (The keys come from a search already scoped to the caller.)
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

/// Which of an owner's rows a delete removes.
pub enum Doomed<'a> {
    /// These ids (rows of other owners are left alone).
    Ids(&'a [String]),
    /// Every row of one session.
    Session(&'a str),
    /// Rows older than this `ts` (milliseconds).
    Before(i64),
    /// Every row.
    All,
}

/// Deletes `owner`'s rows that `which` names in one statement; returns the keys deleted.
pub fn delete(db: &Database, owner: &str, which: Doomed<'_>) -> Result<Vec<u64>, MemoryError> {
    fn collect(
        rows: impl Iterator<Item = duckdb::Result<String>>,
    ) -> Result<Vec<u64>, MemoryError> {
        let ids: Vec<String> = rows.collect::<Result<_, duckdb::Error>>()?;
        Ok(ids.iter().filter_map(|id| key_of(id)).collect())
    }
    db.with_writer(|conn| {
        let get = |r: &duckdb::Row<'_>| r.get::<_, String>(0);
        match which {
            Doomed::Ids(ids) => {
                let mut keys = Vec::new();
                let mut stmt = conn.prepare(
                    "DELETE FROM conversation_vectors WHERE owner = ? AND id = ? RETURNING id",
                )?;
                for id in ids {
                    keys.extend(collect(stmt.query_map(params![owner, id], get)?)?);
                }
                Ok(keys)
            }
            Doomed::Session(s) => {
                let mut stmt = conn.prepare(
                    "DELETE FROM conversation_vectors WHERE owner = ? AND session_id = ? RETURNING id",
                )?;
                let keys = collect(stmt.query_map(params![owner, s], get)?)?;
                Ok(keys)
            }
            Doomed::Before(ts) => {
                let mut stmt = conn.prepare(
                    "DELETE FROM conversation_vectors WHERE owner = ? AND ts < ? RETURNING id",
                )?;
                let keys = collect(stmt.query_map(params![owner, ts], get)?)?;
                Ok(keys)
            }
            Doomed::All => {
                let mut stmt = conn
                    .prepare("DELETE FROM conversation_vectors WHERE owner = ? RETURNING id")?;
                let keys = collect(stmt.query_map(params![owner], get)?)?;
                Ok(keys)
            }
        }
    })
}

/// An owner's rows, distinct sessions, first and last `ts`.
pub fn summary(
    db: &Database,
    owner: &str,
) -> Result<(u64, u64, Option<i64>, Option<i64>), MemoryError> {
    db.with_reader(|conn| {
        let (total, sessions, first, last) = conn.query_row(
            "SELECT count(*), count(DISTINCT session_id), min(ts), max(ts) FROM conversation_vectors WHERE owner = ?",
            params![owner],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, Option<i64>>(3)?)),
        )?;
        Ok((total as u64, sessions as u64, first, last))
    })
}

/// An owner's sessions with their row counts and first and last `ts`, latest first.
pub fn sessions(db: &Database, owner: &str) -> Result<Vec<SessionInfo>, MemoryError> {
    db.with_reader(|conn| {
        let mut stmt = conn.prepare(
            "SELECT session_id, count(*), min(ts), max(ts) FROM conversation_vectors
             WHERE owner = ? AND session_id IS NOT NULL
             GROUP BY session_id ORDER BY max(ts) DESC, session_id",
        )?;
        let rows = stmt
            .query_map(params![owner], |r| {
                Ok(SessionInfo {
                    session_id: r.get(0)?,
                    rows: r.get::<_, i64>(1)?.max(0) as u64,
                    first_ts: r.get(2)?,
                    last_ts: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    })
}

/// DuckDB answers a query.
pub fn ping(db: &Database) -> Result<(), MemoryError> {
    db.with_reader(|conn| {
        conn.query_row("SELECT 1", [], |r| r.get::<_, i32>(0))?;
        Ok(())
    })
}
