//! `memory_meta`: facts about the stored vectors, key by key: which embedder and model made
//! them (`embedder`, `model`, `model_sha256`, `dim`), and an unfinished `memory reembed`'s
//! target and cursor (`reembed_target`, `reembed_cursor`).

use super::embedder::Embedder;
use super::MemoryError;
use crate::db::Database;
use duckdb::{params, Connection, OptionalExt};

const CREATE: &str =
    "CREATE TABLE IF NOT EXISTS memory_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)";

/// Which embedder made a database's vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedderRecord {
    /// `local`, `lexical`, `openai`, `workers-ai`.
    pub embedder: String,
    pub model: String,
    /// The model file's sha256 (local), else empty.
    pub fingerprint: String,
    pub dim: usize,
}

impl EmbedderRecord {
    pub fn of(e: &dyn Embedder) -> EmbedderRecord {
        EmbedderRecord {
            embedder: e.name().to_string(),
            model: e.model().to_string(),
            fingerprint: e.fingerprint().unwrap_or_default().to_string(),
            dim: e.dim(),
        }
    }

    /// Same space: same embedder, model and dimension, and the same weights when both know them.
    pub fn same(&self, other: &EmbedderRecord) -> bool {
        self.embedder == other.embedder
            && self.model == other.model
            && self.dim == other.dim
            && (self.fingerprint.is_empty()
                || other.fingerprint.is_empty()
                || self.fingerprint == other.fingerprint)
    }

    /// For messages: `local (all-MiniLM-L6-v2, 384 dimensions, sha256 53aa5117…)`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} ({}, {} dimensions", self.embedder, self.model, self.dim);
        if !self.fingerprint.is_empty() {
            let short: String = self.fingerprint.chars().take(12).collect();
            s.push_str(&format!(", sha256 {short}"));
        }
        s.push(')');
        s
    }
}

pub(crate) fn get(conn: &Connection, key: &str) -> Result<Option<String>, MemoryError> {
    conn.execute_batch(CREATE)?;
    Ok(conn
        .query_row(
            "SELECT value FROM memory_meta WHERE key = ?",
            params![key],
            |r| r.get(0),
        )
        .optional()?)
}

pub(crate) fn set(conn: &Connection, key: &str, value: &str) -> Result<(), MemoryError> {
    conn.execute_batch(CREATE)?;
    conn.execute(
        "INSERT OR REPLACE INTO memory_meta (key, value) VALUES (?, ?)",
        params![key, value],
    )?;
    Ok(())
}

pub(crate) fn remove(conn: &Connection, key: &str) -> Result<(), MemoryError> {
    conn.execute_batch(CREATE)?;
    conn.execute("DELETE FROM memory_meta WHERE key = ?", params![key])?;
    Ok(())
}

/// The recorded embedder, if any.
pub fn recorded(db: &Database) -> Result<Option<EmbedderRecord>, MemoryError> {
    db.with_writer(|conn| {
        let Some(embedder) = get(conn, "embedder")? else {
            return Ok(None);
        };
        Ok(Some(EmbedderRecord {
            embedder,
            model: get(conn, "model")?.unwrap_or_default(),
            fingerprint: get(conn, "model_sha256")?.unwrap_or_default(),
            dim: get(conn, "dim")?.and_then(|d| d.parse().ok()).unwrap_or(0),
        }))
    })
}

pub(crate) fn write_record(conn: &Connection, r: &EmbedderRecord) -> Result<(), MemoryError> {
    set(conn, "embedder", &r.embedder)?;
    set(conn, "model", &r.model)?;
    set(conn, "model_sha256", &r.fingerprint)?;
    set(conn, "dim", &r.dim.to_string())
}

/// Runs `f` in one transaction on `conn`: committed when it succeeds, rolled back otherwise.
pub(crate) fn in_transaction(
    conn: &Connection,
    f: impl FnOnce() -> Result<(), MemoryError>,
) -> Result<(), MemoryError> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    match f() {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Records `r` as the embedder of the stored vectors.
pub fn record(db: &Database, r: &EmbedderRecord) -> Result<(), MemoryError> {
    db.with_writer(|conn| in_transaction(conn, || write_record(conn, r)))
}

/// The target of a `memory reembed` that has not finished, as [`EmbedderRecord::describe`]
/// gives it.
pub fn unfinished_reembed(db: &Database) -> Result<Option<String>, MemoryError> {
    db.with_writer(|conn| get(conn, "reembed_target"))
}
