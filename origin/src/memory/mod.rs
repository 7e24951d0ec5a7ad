//! Vector memory: the seed's `conversation_vectors` table in DuckDB (the store of record) and
//! an in-process HNSW index derived from it for search.
//!
//! Writes go through one writer connection; searches use a pool of read connections; all of
//! it runs on blocking threads so the async runtime never waits on DuckDB or the index.

pub mod config;
pub mod embedder;
pub mod embedder_config;
pub mod index;

use crate::sys;
use config::MemoryConfig;
use duckdb::arrow::array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int32Array, Int64Array, StringArray,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{params, Connection};
use index::HnswIndex;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("database: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{0}")]
    Index(#[from] index::IndexError),
    #[error("database write: {0}")]
    Write(String),
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("memory.dim is {configured} but the database at {path} stores {stored}-dimensional embeddings")]
    DimMismatch {
        configured: usize,
        stored: String,
        path: PathBuf,
    },
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

const STATE_LOADING: u8 = 0;
const STATE_READY: u8 = 1;
const STATE_FAILED: u8 = 2;

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

pub struct MemoryStore {
    dim: usize,
    path: PathBuf,
    index_path: PathBuf,
    template: Mutex<Connection>,
    writer: Mutex<Connection>,
    /// Inserts waiting for the writer (group commit).
    write_queue: Mutex<std::collections::VecDeque<Arc<WriteJob>>>,
    readers: Mutex<Vec<Connection>>,
    max_readers: usize,
    index: HnswIndex,
    index_state: AtomicU8,
    build_done: AtomicUsize,
    build_total: AtomicUsize,
    count: AtomicU64,
    /// Rows stored but not yet in the HNSW graph; searched by brute force until the indexer
    /// thread has added them, so an acknowledged insert is searchable at once.
    pending: RwLock<Pending>,
    wake: Mutex<bool>,
    wake_cv: Condvar,
    drained_cv: Condvar,
    max_pending: usize,
    shutdown: AtomicBool,
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
    wal_path: PathBuf,
    /// WAL bytes past which the checkpointer folds the WAL into the file once writes pause.
    idle_checkpoint_bytes: u64,
    checkpoints: AtomicU64,
    /// When the last insert finished; the checkpointer waits for writes to pause.
    last_insert: Mutex<Option<Instant>>,
    /// What a search result shows of each row, so the served path never waits on DuckDB for
    /// it (costs about the size of the stored content in RAM). DuckDB stays the record.
    rows: RwLock<HashMap<u64, Arc<RowView>>>,
}

/// The columns a search result returns.
#[derive(Debug)]
struct RowView {
    content: String,
    role: String,
    ts: i64,
    session_id: Option<String>,
    metadata: Option<String>,
}

/// Most rows one group commit appends (a single larger insert still goes alone).
const GROUP_ROWS: usize = 8192;

/// An insert waiting for the writer; see `MemoryStore::insert_blocking`.
struct WriteJob {
    batch: RecordBatch,
    rows: usize,
    result: Mutex<Option<Result<(), String>>>,
}

/// One insert's rows, queued for the indexer as a unit: the queue only ever grows at the back
/// and shrinks at the front, so no step under its lock costs more than O(1) (a flat buffer
/// had to shift every queued vector each time the indexer took some).
struct PendingChunk {
    keys: Vec<u64>,
    inv_norms: Vec<f32>,
    vectors: Vec<f32>,
}

impl PendingChunk {
    fn with_capacity(rows: usize, dim: usize) -> Self {
        PendingChunk {
            keys: Vec::with_capacity(rows),
            inv_norms: Vec::with_capacity(rows),
            vectors: Vec::with_capacity(rows * dim),
        }
    }
    fn push(&mut self, key: u64, v: &[f32]) {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        self.keys.push(key);
        self.inv_norms.push(if n > 0.0 { 1.0 / n } else { 0.0 });
        self.vectors.extend_from_slice(v);
    }
    fn len(&self) -> usize {
        self.keys.len()
    }
}

#[derive(Default)]
struct Pending {
    chunks: std::collections::VecDeque<Arc<PendingChunk>>,
    rows: usize,
}

impl Pending {
    fn len(&self) -> usize {
        self.rows
    }
    fn push(&mut self, chunk: PendingChunk) {
        if chunk.len() > 0 {
            self.rows += chunk.len();
            self.chunks.push_back(Arc::new(chunk));
        }
    }
    /// The oldest chunks, at least one, up to about `max_rows` rows.
    fn front(&self, max_rows: usize) -> Vec<Arc<PendingChunk>> {
        let mut out = Vec::new();
        let mut rows = 0;
        for c in &self.chunks {
            if !out.is_empty() && rows + c.len() > max_rows {
                break;
            }
            rows += c.len();
            out.push(Arc::clone(c));
        }
        out
    }
    fn pop_front(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(c) = self.chunks.pop_front() {
                self.rows -= c.len();
            }
        }
    }
    fn snapshot(&self) -> Vec<Arc<PendingChunk>> {
        self.chunks.iter().cloned().collect()
    }
}

impl MemoryStore {
    /// Opens (or creates) the database under `data_dir`. The HNSW index is loaded or built by
    /// `start_index`; until it is ready, searches use an exact scan.
    pub fn open(data_dir: &Path, cfg: &MemoryConfig) -> Result<Arc<MemoryStore>, MemoryError> {
        std::fs::create_dir_all(data_dir).map_err(|source| MemoryError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        sys::tune_allocator();
        let path = data_dir.join("heady.duckdb");
        let conn = Connection::open(&path)?;
        // DuckDB checkpoints inside a commit once the WAL passes checkpoint_threshold, and a
        // checkpoint rewrites the table's last, partly filled row group whole. At the 16 MiB
        // default a 100,000-row bulk load rewrote that row group ten times and slowed from
        // 25,000 to 5,000 rows/s; so the limit is large and the checkpointer thread folds the
        // WAL in when writes pause (see `start_index`).
        conn.execute_batch(&format!(
            "SET checkpoint_threshold = '{}MiB'",
            cfg.wal_limit_mb
        ))?;
        let dim = cfg.dim;
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
                path,
            });
        }
        let writer = conn.try_clone()?;
        let count: i64 = conn.query_row("SELECT count(*) FROM conversation_vectors", [], |r| {
            r.get(0)
        })?;
        let index = HnswIndex::new(
            dim,
            cfg.hnsw_connectivity,
            cfg.hnsw_ef_construction,
            cfg.hnsw_ef_search,
            cfg.hnsw_quantization,
        )?;
        Ok(Arc::new(MemoryStore {
            dim,
            index_path: data_dir.join("hnsw.usearch"),
            wal_path: data_dir.join("heady.duckdb.wal"),
            idle_checkpoint_bytes: cfg.idle_checkpoint_mb * 1024 * 1024,
            checkpoints: AtomicU64::new(0),
            checkpointer: Mutex::new(None),
            path,
            template: Mutex::new(conn),
            writer: Mutex::new(writer),
            write_queue: Mutex::new(std::collections::VecDeque::new()),
            readers: Mutex::new(Vec::new()),
            max_readers: cfg.read_connections,
            index,
            index_state: AtomicU8::new(STATE_LOADING),
            build_done: AtomicUsize::new(0),
            build_total: AtomicUsize::new(count as usize),
            count: AtomicU64::new(count as u64),
            pending: RwLock::new(Pending::default()),
            wake: Mutex::new(false),
            wake_cv: Condvar::new(),
            drained_cv: Condvar::new(),
            max_pending: cfg.max_pending,
            shutdown: AtomicBool::new(false),
            indexer: Mutex::new(None),
            rows: RwLock::new(HashMap::new()),
            last_insert: Mutex::new(None),
        }))
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn index_ready(&self) -> bool {
        self.index_state.load(Ordering::Acquire) == STATE_READY
    }

    /// Starts the indexer thread: it loads the persisted index (if any), queues every row the
    /// index lacks, then keeps adding queued rows to the HNSW graph. Until the load is done
    /// searches use an exact scan in DuckDB; after it, HNSW plus a brute-force pass over the queue.
    ///
    /// Also starts the checkpointer thread, which checkpoints DuckDB once the WAL holds more
    /// than `memory.idle_checkpoint_mb` and no insert has come for 2 s.
    pub fn start_index(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("hnsw-indexer".into())
            .spawn(move || me.indexer_main())
            .expect("spawn the indexer thread");
        *self.indexer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        let me = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("duckdb-checkpoint".into())
            .spawn(move || me.checkpointer_main())
            .expect("spawn the checkpointer thread");
        *self.checkpointer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }

    /// Bytes in DuckDB's write-ahead log (0 when there is none).
    pub fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal_path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Checkpoints run by the checkpointer thread since start.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    fn checkpointer_main(&self) {
        const QUIET: Duration = Duration::from_secs(2);
        loop {
            std::thread::sleep(Duration::from_millis(250));
            if self.shutdown.load(Ordering::Acquire) {
                return;
            }
            let quiet = self
                .last_insert
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none_or(|t| t.elapsed() >= QUIET);
            let wal = self.wal_bytes();
            if !quiet || wal < self.idle_checkpoint_bytes {
                continue;
            }
            let t = Instant::now();
            let result = {
                let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                conn.execute_batch("CHECKPOINT")
            };
            match result {
                Ok(()) => {
                    self.checkpoints.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        wal_bytes = wal,
                        secs = t.elapsed().as_secs_f64(),
                        "duckdb checkpoint (writes paused)"
                    );
                }
                // Another write transaction was open: try again on the next pause.
                Err(e) => tracing::debug!(error = %e, "duckdb checkpoint skipped"),
            }
        }
    }

    fn indexer_main(&self) {
        let t = Instant::now();
        match self.load_index() {
            Ok((loaded, queued)) => {
                self.index.refresh_memory_bytes();
                self.index_state.store(STATE_READY, Ordering::Release);
                tracing::info!(
                    loaded,
                    queued,
                    secs = t.elapsed().as_secs_f64(),
                    "hnsw index loaded; queued rows are searched by brute force until indexed"
                );
            }
            Err(e) => {
                self.index_state.store(STATE_FAILED, Ordering::Release);
                tracing::error!(error = %e, "hnsw index unavailable; searches use exact scans");
                return;
            }
        }
        // Loading ran at normal priority (it holds the row map's lock); building runs idle.
        sys::background_priority();
        let mut since_save = 0usize;
        let mut last_save = Instant::now();
        let mut last_measure = Instant::now();
        loop {
            let chunks = sys::urgent(|| {
                self.pending
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .front(4096)
            });
            if chunks.is_empty() {
                // usearch measures memory by walking the graph, which holds off adds: do it
                // when the queue empties, not after every chunk.
                sys::urgent(|| self.index.refresh_memory_bytes());
                // Persist what was learned once the queue is empty, at most every 10 s.
                if since_save > 0 && last_save.elapsed() > Duration::from_secs(10) {
                    if let Err(e) = sys::urgent(|| self.index.save(&self.index_path)) {
                        tracing::warn!(error = %e, "could not persist the hnsw index");
                    }
                    since_save = 0;
                    last_save = Instant::now();
                }
                let mut woken = self.wake.lock().unwrap_or_else(|p| p.into_inner());
                while !*woken && !self.shutdown.load(Ordering::Acquire) {
                    let (w, _) = self
                        .wake_cv
                        .wait_timeout(woken, Duration::from_secs(1))
                        .unwrap_or_else(|p| p.into_inner());
                    woken = w;
                    if since_save > 0 && last_save.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
                *woken = false;
                if self.shutdown.load(Ordering::Acquire) {
                    return;
                }
                continue;
            }
            let items: Vec<(u64, &[f32])> = chunks
                .iter()
                .flat_map(|c| {
                    c.keys
                        .iter()
                        .zip(c.vectors.chunks_exact(self.dim))
                        .map(|(k, v)| (*k, v))
                })
                .collect();
            // Every core, in slices at background priority: inserts and searches come first.
            match self.index.add_missing(items.iter().copied()) {
                Ok(n) => {
                    since_save += n;
                    self.build_done.fetch_add(items.len(), Ordering::Relaxed);
                }
                Err(e) => {
                    // Keep the rows queued (still searched by brute force) and try again.
                    tracing::error!(error = %e, "adding to the hnsw index failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
            sys::urgent(|| {
                self.pending
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front(chunks.len())
            });
            if last_measure.elapsed() > Duration::from_secs(5) {
                sys::urgent(|| self.index.refresh_memory_bytes());
                last_measure = Instant::now();
            }
            self.drained_cv.notify_all();
            if self.shutdown.load(Ordering::Acquire) {
                return;
            }
        }
    }

    /// Loads the persisted index and queues the rows it lacks. Returns (loaded, queued).
    fn load_index(&self) -> Result<(usize, usize), MemoryError> {
        let loaded = if self.index_path.exists() {
            match self.index.load(&self.index_path) {
                Ok(()) => self.index.len(),
                Err(e) => {
                    tracing::warn!(error = %e, "persisted hnsw index not used; rebuilding");
                    0
                }
            }
        } else {
            0
        };
        let conn = self.reader()?;
        let mut queued = 0;
        let result = (|| -> Result<(), MemoryError> {
            let mut stmt = conn.prepare(
                "SELECT id, embedding, content, role, ts, session_id, CAST(metadata AS VARCHAR) FROM conversation_vectors",
            )?;
            for batch in stmt.query_arrow([])? {
                let text = |c: usize| {
                    batch
                        .column(c)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .cloned()
                };
                let ids = text(0);
                let lists = batch
                    .column(1)
                    .as_any()
                    .downcast_ref::<FixedSizeListArray>()
                    .cloned();
                let (Some(ids), Some(lists)) = (ids, lists) else {
                    continue;
                };
                let (Some(contents), Some(roles), Some(sessions), Some(metas)) =
                    (text(2), text(3), text(5), text(6))
                else {
                    continue;
                };
                let Some(ts) = batch
                    .column(4)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .cloned()
                else {
                    continue;
                };
                let values = lists
                    .values()
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .cloned();
                let Some(values) = values else { continue };
                let flat = values.values();
                {
                    let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
                    for i in 0..ids.len() {
                        let Some(key) = key_of(ids.value(i)) else {
                            continue;
                        };
                        let opt = |a: &StringArray| (!a.is_null(i)).then(|| a.value(i).to_string());
                        rows.insert(
                            key,
                            Arc::new(RowView {
                                content: contents.value(i).to_string(),
                                role: roles.value(i).to_string(),
                                ts: ts.value(i),
                                session_id: opt(&sessions),
                                metadata: opt(&metas),
                            }),
                        );
                    }
                }
                let mut chunk = PendingChunk::with_capacity(ids.len(), self.dim);
                for i in 0..ids.len() {
                    if lists.is_null(i) {
                        continue;
                    }
                    let Some(key) = key_of(ids.value(i)) else {
                        continue;
                    };
                    if self.index.contains(key) {
                        continue;
                    }
                    let start = (lists.offset() + i) * self.dim;
                    chunk.push(key, &flat[start..start + self.dim]);
                    queued += 1;
                }
                self.pending
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(chunk);
            }
            Ok(())
        })();
        self.put_reader(conn);
        result?;
        self.build_done.store(loaded, Ordering::Relaxed);
        self.build_total.store(loaded + queued, Ordering::Relaxed);
        self.notify_indexer();
        Ok((loaded, queued))
    }

    fn notify_indexer(&self) {
        *self.wake.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake_cv.notify_one();
    }

    /// Rows stored but not yet in the HNSW graph.
    pub fn pending_len(&self) -> usize {
        self.pending.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Blocks until every stored row is in the HNSW graph (benchmarks, tests).
    pub fn wait_indexed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.index_ready() && self.pending_len() == 0 {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            let (g, _) = self
                .drained_cv
                .wait_timeout(guard, Duration::from_millis(20))
                .unwrap_or_else(|p| p.into_inner());
            guard = g;
        }
    }

    /// Another connection to the same database, for tables that live beside the memory
    /// (API keys): one process may hold the file, so everything shares this instance.
    pub fn connection(&self) -> Result<Connection, MemoryError> {
        Ok(self
            .template
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_clone()?)
    }

    fn reader(&self) -> Result<Connection, MemoryError> {
        if let Some(c) = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        let c = self
            .template
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_clone()?;
        c.set_prepared_statement_cache_capacity(64);
        Ok(c)
    }

    fn put_reader(&self, c: Connection) {
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < self.max_readers {
            pool.push(c);
        }
    }

    /// Stores rows atomically: all of them or none. Blocking; call from a blocking thread.
    ///
    /// Group commit: concurrent inserts queue up while the writer is busy, and whoever takes
    /// the writer next appends everything queued in one transaction. A transaction has a fixed
    /// cost (appender, plan, commit, WAL sync) that 120-row batches paid ~800 times per 100,000
    /// rows. If a group fails, its inserts are retried one by one, so each request still gets
    /// its own all-or-nothing outcome.
    pub fn insert_blocking(&self, rows: &[NewRow]) -> Result<(), MemoryError> {
        if rows.is_empty() {
            return Ok(());
        }
        let job = Arc::new(WriteJob {
            batch: self.record_batch(rows)?,
            rows: rows.len(),
            result: Mutex::new(None),
        });
        self.write_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(Arc::clone(&job));
        {
            let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            // Jobs leave the queue only under the writer lock and get their result before it
            // is released: while ours has none, it is still queued.
            while job
                .result
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
            {
                let group = self.take_group();
                self.write_group(&conn, &group);
            }
        }
        let outcome = job
            .result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| Err("write lost".into()));
        outcome.map_err(MemoryError::Write)?;
        self.count.fetch_add(rows.len() as u64, Ordering::Relaxed);
        *self.last_insert.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        {
            let mut views = self.rows.write().unwrap_or_else(|p| p.into_inner());
            for r in rows {
                views.insert(
                    r.key,
                    Arc::new(RowView {
                        content: r.content.clone(),
                        role: r.role.clone(),
                        ts: r.ts,
                        session_id: r.session_id.clone(),
                        metadata: r.metadata.clone(),
                    }),
                );
            }
        }
        // Durable now. Queue for the indexer; searchable at once through the brute-force pass.
        {
            let mut chunk = PendingChunk::with_capacity(rows.len(), self.dim);
            for r in rows {
                chunk.push(r.key, &r.embedding);
            }
            self.pending
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .push(chunk);
        }
        self.notify_indexer();
        // Backpressure: a writer outrunning the indexer waits rather than growing the queue.
        if self.index_ready() && self.pending_len() > self.max_pending {
            let mut guard = self.wake.lock().unwrap_or_else(|p| p.into_inner());
            while self.pending_len() > self.max_pending / 2
                && !self.shutdown.load(Ordering::Acquire)
            {
                let (g, _) = self
                    .drained_cv
                    .wait_timeout(guard, Duration::from_millis(50))
                    .unwrap_or_else(|p| p.into_inner());
                guard = g;
            }
        }
        Ok(())
    }

    /// The queued inserts from the front, at least one, up to `GROUP_ROWS` rows.
    fn take_group(&self) -> Vec<Arc<WriteJob>> {
        let mut queue = self.write_queue.lock().unwrap_or_else(|p| p.into_inner());
        let mut group = Vec::new();
        let mut rows = 0;
        while let Some(j) = queue.front() {
            if !group.is_empty() && rows + j.rows > GROUP_ROWS {
                break;
            }
            rows += j.rows;
            group.extend(queue.pop_front());
        }
        group
    }

    /// Appends a group in one transaction; on failure, each job alone. Sets every result.
    fn write_group(&self, conn: &Connection, group: &[Arc<WriteJob>]) {
        let append = |jobs: &[Arc<WriteJob>]| -> Result<(), String> {
            // One appender flush is one transaction: DuckDB rolls it back whole on error
            // (e.g. a duplicate id). GROUP_ROWS and memory.max_batch keep it below the
            // appender's auto-flush size.
            (|| -> duckdb::Result<()> {
                let mut app = conn.appender("conversation_vectors")?;
                for j in jobs {
                    app.append_record_batch(j.batch.clone())?;
                }
                app.flush()
            })()
            .map_err(|e| e.to_string())
        };
        let set = |j: &WriteJob, r: Result<(), String>| {
            *j.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        };
        match append(group) {
            Ok(()) => group.iter().for_each(|j| set(j, Ok(()))),
            Err(e) if group.len() == 1 => set(&group[0], Err(e)),
            Err(_) => {
                for j in group {
                    set(j, append(std::slice::from_ref(j)));
                }
            }
        }
    }

    fn record_batch(&self, rows: &[NewRow]) -> Result<RecordBatch, MemoryError> {
        let ids: StringArray = rows.iter().map(|r| Some(id_of(r.key))).collect();
        let ts = Int64Array::from_iter_values(rows.iter().map(|r| r.ts));
        let roles: StringArray = rows.iter().map(|r| Some(r.role.as_str())).collect();
        let contents: StringArray = rows.iter().map(|r| Some(r.content.as_str())).collect();
        let flat =
            Float32Array::from_iter_values(rows.iter().flat_map(|r| r.embedding.iter().copied()));
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let emb = FixedSizeListArray::try_new(item.clone(), self.dim as i32, Arc::new(flat), None)
            .map_err(|e| MemoryError::Db(duckdb::Error::ToSqlConversionFailure(Box::new(e))))?;
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
                DataType::FixedSizeList(item, self.dim as i32),
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
        RecordBatch::try_new(Arc::new(schema), columns)
            .map_err(|e| MemoryError::Db(duckdb::Error::ToSqlConversionFailure(Box::new(e))))
    }

    /// Runs `f` on the writer connection, so other components can keep small tables in the
    /// same database without a second handle on the file. Blocking.
    pub fn with_writer<T>(
        &self,
        f: impl FnOnce(&Connection) -> duckdb::Result<T>,
    ) -> Result<T, MemoryError> {
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Deletes rows by id (compensation of a failed request). Blocking.
    pub fn delete_blocking(&self, ids: &[String]) -> Result<usize, MemoryError> {
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for id in ids {
            n += conn.execute("DELETE FROM conversation_vectors WHERE id = ?", params![id])?;
            if let Some(k) = key_of(id) {
                let _ = self.index.remove(k);
                self.rows
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&k);
            }
        }
        self.count.fetch_sub(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    /// Cosine similarity search. HNSW when the index is ready and no session filter is given;
    /// otherwise an exact scan in DuckDB (`array_cosine_distance`). Blocking.
    pub fn search_blocking(
        &self,
        query: &[f32],
        top_k: usize,
        session_id: Option<&str>,
    ) -> Result<(Vec<SearchHit>, SearchPath), MemoryError> {
        if session_id.is_none() && self.index_ready() {
            let mut hits = self.index.search(query, top_k)?;
            self.scan_pending(query, top_k, &mut hits);
            return Ok((self.fetch_rows(&hits)?, SearchPath::Hnsw));
        }
        Ok((
            self.exact_search_blocking(query, top_k, session_id)?,
            SearchPath::Exact,
        ))
    }

    /// Merges the queue's best matches (exact cosine) into `hits`, keeping the best `top_k`.
    fn scan_pending(&self, query: &[f32], top_k: usize, hits: &mut Vec<index::Hit>) {
        // Scan a snapshot, so an insert never waits for a scan to finish.
        let chunks = self
            .pending
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot();
        if chunks.is_empty() {
            return;
        }
        let qn = query.iter().map(|x| x * x).sum::<f32>().sqrt();
        let q_inv = if qn > 0.0 { 1.0 / qn } else { 0.0 };
        let mut seen: std::collections::HashSet<u64> = hits.iter().map(|h| h.key).collect();
        for c in &chunks {
            for ((key, v), inv_norm) in c
                .keys
                .iter()
                .zip(c.vectors.chunks_exact(self.dim))
                .zip(&c.inv_norms)
            {
                let distance = 1.0 - dot(v, query) * q_inv * inv_norm;
                if hits.len() < top_k || distance < hits[hits.len() - 1].distance {
                    if !seen.insert(*key) {
                        continue;
                    }
                    let pos = hits.partition_point(|h| h.distance <= distance);
                    hits.insert(
                        pos,
                        index::Hit {
                            key: *key,
                            distance,
                        },
                    );
                    if hits.len() > top_k {
                        if let Some(dropped) = hits.pop() {
                            seen.remove(&dropped.key);
                        }
                    }
                }
            }
        }
    }

    pub fn exact_search_blocking(
        &self,
        query: &[f32],
        top_k: usize,
        session_id: Option<&str>,
    ) -> Result<Vec<SearchHit>, MemoryError> {
        let conn = self.reader()?;
        let result = (|| {
            let dim = self.dim;
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
        })();
        self.put_reader(conn);
        result
    }

    fn fetch_rows(&self, hits: &[index::Hit]) -> Result<Vec<SearchHit>, MemoryError> {
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        {
            let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
            let views: Option<Vec<(&index::Hit, Arc<RowView>)>> = hits
                .iter()
                .map(|h| rows.get(&h.key).map(|v| (h, Arc::clone(v))))
                .collect();
            if let Some(views) = views {
                drop(rows);
                return Ok(views
                    .into_iter()
                    .map(|(h, v)| SearchHit {
                        id: id_of(h.key),
                        score: 1.0 - h.distance,
                        content: v.content.clone(),
                        role: v.role.clone(),
                        ts: v.ts,
                        session_id: v.session_id.clone(),
                        metadata: v
                            .metadata
                            .as_deref()
                            .and_then(|m| serde_json::from_str(m).ok()),
                    })
                    .collect());
            }
        }
        let conn = self.reader()?;
        let result = (|| {
            // Ids come from u64 keys we format ourselves: hex digits only, safe to inline.
            let list: Vec<String> = hits.iter().map(|h| format!("'{}'", id_of(h.key))).collect();
            let sql = format!(
                "SELECT id, content, role, ts, session_id, CAST(metadata AS VARCHAR)
                 FROM conversation_vectors WHERE id IN ({})",
                list.join(",")
            );
            let mut stmt = conn.prepare(&sql)?;
            let mut found: std::collections::HashMap<String, SearchHit> = stmt
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
        })();
        self.put_reader(conn);
        result
    }

    pub fn stats_blocking(&self) -> Result<Stats, MemoryError> {
        let conn = self.reader()?;
        let result = conn.query_row(
            "SELECT count(*), count(DISTINCT session_id), min(ts), max(ts) FROM conversation_vectors",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, Option<i64>>(3)?)),
        );
        self.put_reader(conn);
        let (total, sessions, first_ts, last_ts) = result?;
        Ok(Stats {
            total_vectors: total as u64,
            sessions: sessions as u64,
            first_ts,
            last_ts,
            dim: self.dim,
            index: self.index_stats(),
        })
    }

    pub fn index_stats(&self) -> IndexStats {
        let state = match self.index_state.load(Ordering::Acquire) {
            STATE_READY => "ready",
            STATE_FAILED => "failed",
            _ => "building",
        };
        IndexStats {
            kind: if state == "ready" { "hnsw" } else { "exact" },
            state,
            size: self.index.len(),
            pending: self.pending_len(),
            memory_bytes: self.index.memory_bytes(),
            build_progress: (state == "building" || self.pending_len() > 0).then(|| {
                [
                    self.build_done.load(Ordering::Relaxed),
                    self.build_total.load(Ordering::Relaxed),
                ]
            }),
        }
    }

    /// Readiness: DuckDB answers a query.
    pub fn ping_blocking(&self) -> Result<(), MemoryError> {
        let conn = self.reader()?;
        let r = conn.query_row("SELECT 1", [], |r| r.get::<_, i32>(0));
        self.put_reader(conn);
        r.map(|_| ()).map_err(MemoryError::from)
    }

    /// Graceful shutdown: checkpoint DuckDB (WAL folded into the file) and persist the index.
    pub fn close_blocking(&self) -> Result<(), MemoryError> {
        self.shutdown.store(true, Ordering::Release);
        self.notify_indexer();
        if let Some(h) = self
            .indexer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
        if let Some(h) = self
            .checkpointer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
        {
            let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            conn.execute_batch("CHECKPOINT")?;
        }
        if self.index_ready() {
            self.index.save(&self.index_path)?;
        }
        Ok(())
    }

    pub fn set_ef_search(&self, ef: usize) {
        self.index.set_ef_search(ef);
    }
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

/// Dot product with eight independent sums, which the compiler turns into SIMD (a single
/// running sum cannot be reordered, so it stays scalar).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}
