//! The DuckDB database: one file in the data directory, shared by every component that keeps
//! a table there (vector memory, API keys, learned paths), since one process holds the file.
//!
//! [`Database`] is a cheap handle (an `Arc` inside) that each of them is given. Writes go
//! through one writer connection, appends with group commit ([`Database::append`]); reads take
//! a connection from a pool. A checkpointer thread folds the WAL into the file when writes
//! pause; it stops on the cancellation token passed to [`Database::open`], and
//! [`Database::close`] (or dropping the last handle) joins it.

#![forbid(unsafe_code)]

mod checkpoint;
mod readers;
mod wakeup;
mod writer;

pub(crate) use wakeup::{CancelWatch, Wakeup};

use crate::sys;
use checkpoint::Checkpointer;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use readers::ReadPool;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use writer::Writer;

/// The database file's name inside the data directory.
pub const FILE_NAME: &str = "heady.duckdb";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Duck(#[from] duckdb::Error),
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        source: duckdb::Error,
    },
    /// An append DuckDB refused (e.g. a duplicate primary key); nothing of it was stored.
    #[error("append refused: {0}")]
    Append(String),
    #[error("data_dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not start the checkpointer thread: {0}")]
    Thread(std::io::Error),
}

/// The database's settings; in the config file they are keys of `[memory]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbConfig {
    /// Read connections kept open for concurrent reads (`memory.read_connections`).
    pub read_connections: usize,
    /// WAL size (MiB) at which a commit checkpoints (`memory.wal_limit_mb`).
    pub wal_limit_mb: u64,
    /// WAL size (MiB) past which the checkpointer runs once writes pause for 2 s
    /// (`memory.idle_checkpoint_mb`).
    pub idle_checkpoint_mb: u64,
}

/// A handle on the database; clones share it.
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    path: PathBuf,
    wal_path: PathBuf,
    writer: Arc<Writer>,
    readers: ReadPool,
    checkpointer: Checkpointer,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The thread holds the writer, not `Shared`, so this never runs on it.
        self.checkpointer.stop();
    }
}

impl Database {
    /// Opens (or creates) `heady.duckdb` in `data_dir` and starts the checkpointer, which runs
    /// until `cancel` is cancelled or the database is closed.
    pub fn open(
        data_dir: &Path,
        cfg: &DbConfig,
        cancel: CancellationToken,
    ) -> Result<Database, DbError> {
        std::fs::create_dir_all(data_dir).map_err(|source| DbError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        sys::tune_allocator();
        let path = data_dir.join(FILE_NAME);
        let conn = Connection::open(&path).map_err(|source| DbError::Open {
            path: path.clone(),
            source,
        })?;
        // See `checkpoint`: the checkpointer, not a commit, folds the WAL in during a load.
        conn.execute_batch(&format!(
            "SET checkpoint_threshold = '{}MiB'",
            cfg.wal_limit_mb
        ))?;
        let writer = Arc::new(Writer::new(conn.try_clone()?));
        let wal_path = data_dir.join(format!("{FILE_NAME}.wal"));
        let checkpointer = Checkpointer::spawn(
            writer.clone(),
            wal_path.clone(),
            cfg.idle_checkpoint_mb * 1024 * 1024,
            // Our own child, so that closing the database stops only its own thread.
            cancel.child_token(),
        )
        .map_err(DbError::Thread)?;
        Ok(Database {
            shared: Arc::new(Shared {
                dir: data_dir.to_path_buf(),
                path,
                wal_path,
                writer,
                readers: ReadPool::new(conn, cfg.read_connections),
                checkpointer,
            }),
        })
    }

    /// The data directory, where components keep files that belong with the database.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Appends `batch` to `table` atomically (all rows or none). Concurrent appends to one
    /// table share transactions (group commit). Blocking.
    pub fn append(&self, table: &'static str, batch: RecordBatch) -> Result<(), DbError> {
        self.shared.writer.append(table, batch)
    }

    /// Runs `f` on the writer connection: statements other than appends. Blocking.
    pub fn with_writer<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        f(&self.shared.writer.lock())
    }

    /// Runs `f` on a pooled read connection. Blocking.
    pub fn with_reader<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let conn = self.shared.readers.take()?;
        let result = f(&conn);
        self.shared.readers.put(conn);
        result
    }

    /// Bytes in DuckDB's write-ahead log (0 when there is none).
    pub fn wal_bytes(&self) -> u64 {
        checkpoint::wal_bytes(&self.shared.wal_path)
    }

    /// Checkpoints the checkpointer thread has run since open.
    pub fn checkpoints(&self) -> u64 {
        self.shared.checkpointer.count()
    }

    /// Transactions appends have committed since open (fewer than appends under load).
    pub fn append_commits(&self) -> u64 {
        self.shared.writer.commits()
    }

    /// Stops the checkpointer and folds the WAL into the file. Call it once every component
    /// that writes has finished; a later write still lands in the WAL (durable, replayed on
    /// the next open). Blocking.
    pub fn close(&self) -> Result<(), DbError> {
        self.shared.checkpointer.stop();
        self.shared.writer.lock().execute_batch("CHECKPOINT")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DbConfig {
        DbConfig {
            read_connections: 2,
            wal_limit_mb: 1024,
            idle_checkpoint_mb: 64,
        }
    }

    #[test]
    fn writes_are_read_back_through_the_pool_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), &cfg(), CancellationToken::new()).unwrap();
        db.with_writer(|c| -> Result<_, DbError> {
            Ok(c.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);")?)
        })
        .unwrap();
        let n: i64 = db
            .with_reader(|c| -> Result<_, DbError> {
                Ok(c.query_row("SELECT sum(x) FROM t", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(n, 3);
        assert!(db.wal_bytes() > 0, "the write is in the WAL");
        db.close().unwrap();
        assert_eq!(db.wal_bytes(), 0, "close folds the WAL into the file");
        drop(db);
        let db = Database::open(dir.path(), &cfg(), CancellationToken::new()).unwrap();
        let n: i64 = db
            .with_reader(|c| -> Result<_, DbError> {
                Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn dropping_the_last_handle_releases_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), &cfg(), CancellationToken::new()).unwrap();
        let other = db.clone();
        drop(db);
        other
            .with_writer(|c| -> Result<_, DbError> {
                Ok(c.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")?)
            })
            .unwrap();
        let wal = dir.path().join(format!("{FILE_NAME}.wal"));
        assert!(checkpoint::wal_bytes(&wal) > 0);
        drop(other);
        // DuckDB checkpoints when its last connection closes: the checkpointer thread, which
        // holds the writer, is gone too.
        assert_eq!(checkpoint::wal_bytes(&wal), 0);
    }

    #[test]
    fn a_cancelled_token_stops_the_checkpointer_and_close_joins_it() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let db = Database::open(dir.path(), &cfg(), cancel.child_token()).unwrap();
        cancel.cancel();
        let t = std::time::Instant::now();
        db.close().unwrap();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "close waited {:?}",
            t.elapsed()
        );
    }
}
