//! Vector memory: the seed's `conversation_vectors` table in DuckDB (the store of record) and
//! an in-process HNSW index derived from it for search.
//!
//! - `table`: the schema, rows in and out of DuckDB (through the shared [`Database`]);
//! - `pending`: acknowledged rows not yet in the graph, searched exactly meanwhile;
//! - `indexer`: the thread that moves pending rows into the graph;
//! - `index`: the HNSW graph (usearch) and the rules that keep searches off a changing graph;
//! - `search`: the served search, graph hits merged with the pending rows;
//! - `row_cache`: what a result shows of each row, so a search does not wait on DuckDB.
//!
//! Every method blocks: call them from blocking threads so the runtime never waits on DuckDB
//! or the index.

#![forbid(unsafe_code)]

pub mod config;
pub mod embedder;
pub mod embedder_config;
pub mod index;
mod indexer;
mod pending;
mod row_cache;
mod search;
mod table;

use crate::db::{CancelWatch, Database, DbError};
use config::MemoryConfig;
use index::HnswIndex;
use indexer::{Indexer, Progress};
use pending::{PendingChunk, PendingQueue};
use row_cache::{RowCache, RowView};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("{0}")]
    Index(#[from] index::IndexError),
    #[error("memory.dim is {configured} but the database at {path} stores {stored}-dimensional embeddings")]
    DimMismatch {
        configured: usize,
        stored: String,
        path: PathBuf,
    },
    #[error("could not start the indexer thread: {0}")]
    Thread(std::io::Error),
}

impl From<duckdb::Error> for MemoryError {
    fn from(e: duckdb::Error) -> Self {
        MemoryError::Db(DbError::Duck(e))
    }
}

/// One validated row, ready to store. Validation lives in the HTTP layer (`api::memory`).
#[derive(Debug, Clone)]
pub struct NewRow {
    pub key: u64,
    pub ts: i64,
    pub role: String,
    pub content: String,
    pub embedding: Vec<f32>,
    pub token_count: i32,
    pub session_id: Option<String>,
    /// Serialized JSON object, or None.
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub id: String,
    pub score: f32,
    pub content: String,
    pub role: String,
    pub ts: i64,
    pub session_id: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IndexStats {
    pub kind: &'static str,
    pub state: &'static str,
    pub size: usize,
    /// Stored rows waiting to enter the graph (searched by brute force meanwhile).
    pub pending: usize,
    pub memory_bytes: usize,
    pub build_progress: Option<[usize; 2]>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub total_vectors: u64,
    pub sessions: u64,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    pub dim: usize,
    pub index: IndexStats,
}

/// How a search was answered, for the response and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchPath {
    Hnsw,
    Exact,
}

pub fn id_of(key: u64) -> String {
    format!("{key:016x}")
}

pub fn key_of(id: &str) -> Option<u64> {
    if id.len() == 16 {
        u64::from_str_radix(id, 16).ok()
    } else {
        None
    }
}

pub fn new_key() -> u64 {
    // Never 0, so an id is always 16 non-trivial hex digits.
    rand::random::<u64>() | 1
}

pub struct MemoryStore {
    db: Database,
    dim: usize,
    index_path: PathBuf,
    index: Arc<HnswIndex>,
    pending: Arc<PendingQueue>,
    rows: Arc<RowCache>,
    progress: Arc<Progress>,
    count: AtomicU64,
    /// Stored rows that may wait for the indexer before inserts are slowed down.
    max_pending: usize,
    cancel: CancellationToken,
    /// Wakes the indexer and waiting inserters when `cancel` is cancelled.
    _cancel_watch: CancelWatch,
    indexer: Mutex<Option<JoinHandle<()>>>,
}

impl MemoryStore {
    /// Creates the table in `db` when missing (and checks its dimension). The HNSW index is
    /// loaded or built by the indexer thread (`start_indexer`); until it is ready, searches
    /// use an exact scan. The indexer stops when `cancel` is cancelled, at `close_blocking`,
    /// or when the store is dropped.
    pub fn open(
        db: Database,
        cfg: &MemoryConfig,
        cancel: CancellationToken,
    ) -> Result<MemoryStore, MemoryError> {
        // Our own child, so that closing the store stops only its own thread.
        let cancel = cancel.child_token();
        let dim = cfg.dim;
        let count = table::create(&db, dim)?;
        let index = HnswIndex::new(
            dim,
            cfg.hnsw_connectivity,
            cfg.hnsw_ef_construction,
            cfg.hnsw_ef_search,
            cfg.hnsw_quantization,
        )?;
        let pending = Arc::new(PendingQueue::default());
        let cancel_watch = {
            let pending = pending.clone();
            CancelWatch::new(&cancel, move || {
                pending.arrived.notify();
                pending.notify_drained();
            })
        };
        Ok(MemoryStore {
            index_path: db.dir().join("hnsw.usearch"),
            db,
            dim,
            index: Arc::new(index),
            pending,
            rows: Arc::new(RowCache::default()),
            progress: Arc::new(Progress::new(count as usize)),
            count: AtomicU64::new(count),
            max_pending: cfg.max_pending,
            cancel,
            _cancel_watch: cancel_watch,
            indexer: Mutex::new(None),
        })
    }

    /// Starts the indexer thread (see `indexer`). Once only; later calls do nothing.
    pub fn start_indexer(&self) -> Result<(), MemoryError> {
        let mut slot = self.indexer.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Ok(());
        }
        let indexer = Indexer {
            db: self.db.clone(),
            dim: self.dim,
            index: self.index.clone(),
            pending: self.pending.clone(),
            rows: self.rows.clone(),
            progress: self.progress.clone(),
            index_path: self.index_path.clone(),
            cancel: self.cancel.clone(),
        };
        *slot = Some(indexer.spawn().map_err(MemoryError::Thread)?);
        Ok(())
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The database file the rows are stored in.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn index_ready(&self) -> bool {
        self.progress.ready()
    }

    /// Rows stored but not yet in the HNSW graph.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Blocks until every stored row is in the HNSW graph (benchmarks, tests).
    pub fn wait_indexed(&self, timeout: Duration) -> bool {
        self.pending
            .wait_until(Some(timeout), Duration::from_millis(20), || {
                self.index_ready() && self.pending.is_empty()
            })
    }

    /// Stores rows atomically: all of them or none. Concurrent inserts share transactions
    /// (group commit, see `Database::append`). Once this returns the rows are durable and
    /// searchable.
    pub fn insert_blocking(&self, rows: &[NewRow]) -> Result<(), MemoryError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.db
            .append(table::TABLE, table::record_batch(rows, self.dim)?)?;
        self.count.fetch_add(rows.len() as u64, Ordering::Relaxed);
        self.rows.insert(rows.iter().map(|r| {
            (
                r.key,
                RowView {
                    content: r.content.clone(),
                    role: r.role.clone(),
                    ts: r.ts,
                    session_id: r.session_id.clone(),
                    metadata: r.metadata.clone(),
                },
            )
        }));
        // Durable now. Queue for the indexer; searchable at once through the exact pass.
        let mut chunk = PendingChunk::with_capacity(rows.len(), self.dim);
        for r in rows {
            chunk.push(r.key, &r.embedding);
        }
        self.pending.push(chunk);
        // Backpressure: a writer outrunning the indexer waits rather than growing the queue.
        if self.index_ready() && self.pending.len() > self.max_pending {
            self.pending
                .wait_until(None, Duration::from_millis(50), || {
                    self.pending.len() <= self.max_pending / 2 || self.cancel.is_cancelled()
                });
        }
        Ok(())
    }

    /// Deletes rows by id (compensation of a failed request).
    pub fn delete_blocking(&self, ids: &[String]) -> Result<usize, MemoryError> {
        let n = table::delete(&self.db, ids)?;
        for id in ids {
            if let Some(k) = key_of(id) {
                let _ = self.index.remove(k);
                self.rows.remove(k);
            }
        }
        self.count.fetch_sub(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    /// Cosine similarity search. HNSW (plus an exact pass over rows not yet in it) when the
    /// index is ready and no session filter is given; otherwise an exact scan in DuckDB.
    pub fn search_blocking(
        &self,
        query: &[f32],
        top_k: usize,
        session_id: Option<&str>,
    ) -> Result<(Vec<SearchHit>, SearchPath), MemoryError> {
        if session_id.is_none() && self.index_ready() {
            let mut hits = self.index.search(query, top_k)?;
            search::merge_queued(query, top_k, &self.pending.snapshot(), &mut hits);
            let results = match self.rows.results(&hits) {
                Some(r) => r,
                None => table::fetch(&self.db, &hits)?,
            };
            return Ok((results, SearchPath::Hnsw));
        }
        Ok((
            self.exact_search_blocking(query, top_k, session_id)?,
            SearchPath::Exact,
        ))
    }

    /// Exact cosine search in DuckDB (the ground truth).
    pub fn exact_search_blocking(
        &self,
        query: &[f32],
        top_k: usize,
        session_id: Option<&str>,
    ) -> Result<Vec<SearchHit>, MemoryError> {
        table::exact_search(&self.db, self.dim, query, top_k, session_id)
    }

    pub fn stats_blocking(&self) -> Result<Stats, MemoryError> {
        let (total, sessions, first_ts, last_ts) = table::summary(&self.db)?;
        Ok(Stats {
            total_vectors: total,
            sessions,
            first_ts,
            last_ts,
            dim: self.dim,
            index: self.index_stats(),
        })
    }

    pub fn index_stats(&self) -> IndexStats {
        let state = self.progress.state();
        let pending = self.pending.len();
        IndexStats {
            kind: if state == "ready" { "hnsw" } else { "exact" },
            state,
            size: self.index.len(),
            pending,
            memory_bytes: self.index.memory_bytes(),
            build_progress: (state == "building" || pending > 0).then(|| self.progress.counts()),
        }
    }

    /// Readiness: DuckDB answers a query.
    pub fn ping_blocking(&self) -> Result<(), MemoryError> {
        table::ping(&self.db)
    }

    pub fn set_ef_search(&self, ef: usize) {
        self.index.set_ef_search(ef);
    }

    /// Stops the indexer and persists the index. The database stays open (its owner closes
    /// it after every user).
    pub fn close_blocking(&self) -> Result<(), MemoryError> {
        self.stop_indexer();
        if self.index_ready() {
            self.index.save(&self.index_path)?;
        }
        Ok(())
    }

    fn stop_indexer(&self) {
        self.cancel.cancel();
        let handle = self
            .indexer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        self.stop_indexer();
    }
}
