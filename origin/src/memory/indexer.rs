//! The indexer thread. It loads the persisted HNSW index (if any), queues every stored row
//! the index lacks, then keeps moving queued rows into the graph (`HnswIndex::add_missing`,
//! whose slices keep searches off a graph being changed). Until the load is done searches use
//! an exact scan in DuckDB; after it, HNSW plus an exact pass over the queue.
//!
//! It stops when its cancellation token is cancelled; `MemoryStore` owns and joins it.

use super::index::HnswIndex;
use super::pending::{PendingChunk, PendingQueue};
use super::row_cache::RowCache;
use super::{table, MemoryError, Owners};
use crate::db::Database;
use crate::sys;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const LOADING: u8 = 0;
const READY: u8 = 1;
const FAILED: u8 = 2;

/// Rows the indexer takes from the queue at a time.
const TAKE_ROWS: usize = 4096;
/// Persist what was learned once the queue is empty, at most this often.
const SAVE_EVERY: Duration = Duration::from_secs(10);

/// The index's state and build progress, as `/api/memory/stats` shows them.
pub struct Progress {
    state: AtomicU8,
    done: AtomicUsize,
    total: AtomicUsize,
}

impl Progress {
    pub fn new(total: usize) -> Self {
        Progress {
            state: AtomicU8::new(LOADING),
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(total),
        }
    }

    pub fn ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// The index could not be loaded or built: searches use exact scans for good.
    pub fn failed(&self) -> bool {
        self.state.load(Ordering::Acquire) == FAILED
    }

    /// "building", "ready" or "failed".
    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            READY => "ready",
            FAILED => "failed",
            _ => "building",
        }
    }

    /// [rows indexed, rows to index].
    pub fn counts(&self) -> [usize; 2] {
        [
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        ]
    }
}

/// What the thread works on, shared with the `MemoryStore` that owns it.
pub struct Indexer {
    pub db: Database,
    pub dim: usize,
    pub index: Arc<HnswIndex>,
    pub pending: Arc<PendingQueue>,
    pub rows: Arc<RowCache>,
    pub progress: Arc<Progress>,
    pub owners: Arc<Mutex<Owners>>,
    /// Set by inserts that queued nothing because the queue was full during the load.
    pub overflowed: Arc<AtomicBool>,
    pub index_path: PathBuf,
    pub cancel: CancellationToken,
}

impl Indexer {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("hnsw-indexer".into())
            .spawn(move || self.run())
    }

    fn run(&self) {
        let t = Instant::now();
        match self.load() {
            Ok((loaded, queued)) => {
                self.index.refresh_memory_bytes();
                self.progress.state.store(READY, Ordering::Release);
                tracing::info!(
                    loaded,
                    queued,
                    secs = t.elapsed().as_secs_f64(),
                    "hnsw index loaded; queued rows are searched by brute force until indexed"
                );
            }
            Err(e) => {
                self.progress.state.store(FAILED, Ordering::Release);
                // Nothing will take the queued rows into a graph, and exact scans read DuckDB,
                // which holds them all: drop them rather than let inserts grow the queue.
                self.pending.clear();
                tracing::error!(error = %e, "hnsw index unavailable; searches use exact scans");
                return;
            }
        }
        if self.overflowed.swap(false, Ordering::AcqRel) {
            match self.queue_missing() {
                Ok(n) => tracing::info!(
                    queued = n,
                    "rows stored while the index loaded (the queue was full) queued"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "could not queue the rows stored while the index loaded")
                }
            }
        }
        // Loading ran at normal priority (it holds the row cache's lock); building runs idle.
        sys::background_priority();
        let mut since_save = 0usize;
        let mut last_save = Instant::now();
        let mut last_measure = Instant::now();
        while !self.cancel.is_cancelled() {
            let chunks = sys::urgent(|| self.pending.front(TAKE_ROWS));
            if chunks.is_empty() {
                // usearch measures memory by walking the graph, which holds off adds: do it
                // when the queue empties, not after every chunk.
                sys::urgent(|| self.index.refresh_memory_bytes());
                if since_save > 0 && last_save.elapsed() > SAVE_EVERY {
                    if let Err(e) = sys::urgent(|| self.index.save(&self.index_path)) {
                        tracing::warn!(error = %e, "could not persist the hnsw index");
                    }
                    since_save = 0;
                    last_save = Instant::now();
                }
                // Until rows arrive, the token is cancelled (the store's watch wakes us) or a
                // save is due.
                loop {
                    let arrived = self.pending.arrived.wait(Duration::from_secs(1));
                    let save_due = since_save > 0 && last_save.elapsed() > SAVE_EVERY;
                    if arrived || save_due || self.cancel.is_cancelled() {
                        break;
                    }
                }
                continue;
            }
            let mut items: Vec<(u64, &[f32])> = chunks
                .iter()
                .flat_map(|c| {
                    c.keys
                        .iter()
                        .zip(c.vectors.chunks_exact(self.dim))
                        .map(|(k, v)| (*k, v))
                })
                .collect();
            // Rows deleted while queued stay out of the graph.
            sys::urgent(|| self.rows.retain_stored(&mut items));
            // Every core, in slices at background priority: inserts and searches come first.
            match self.index.add_missing(items.iter().copied()) {
                Ok(n) => {
                    since_save += n;
                    self.progress.done.fetch_add(items.len(), Ordering::Relaxed);
                }
                Err(e) => {
                    // Keep the rows queued (still searched by brute force) and try again.
                    tracing::error!(error = %e, "adding to the hnsw index failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
            sys::urgent(|| self.pending.pop_front(chunks.len()));
            if last_measure.elapsed() > Duration::from_secs(5) {
                sys::urgent(|| self.index.refresh_memory_bytes());
                last_measure = Instant::now();
            }
        }
    }

    /// Loads the persisted index, fills the row cache and queues the rows the index lacks.
    /// Returns (loaded, queued).
    fn load(&self) -> Result<(usize, usize), MemoryError> {
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
        let mut queued = 0;
        table::scan(&self.db, self.dim, |mut rows| {
            {
                let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
                for r in rows.iter_mut() {
                    r.view.owner = owners.intern(&r.owner);
                }
            }
            let mut chunk = PendingChunk::with_capacity(rows.len(), self.dim);
            for r in &rows {
                if let Some(v) = r.embedding {
                    if !self.index.contains(r.key) {
                        chunk.push(r.key, r.view.owner, v);
                    }
                }
            }
            queued += chunk.len();
            self.rows.insert(rows.into_iter().map(|r| (r.key, r.view)));
            self.pending.push(chunk);
        })?;
        self.progress.done.store(loaded, Ordering::Relaxed);
        self.progress
            .total
            .store(loaded + queued, Ordering::Relaxed);
        Ok((loaded, queued))
    }

    /// Queues every stored row (still in the row cache, so not deleted) that the graph and
    /// the queue lack. Returns how many.
    fn queue_missing(&self) -> Result<usize, MemoryError> {
        let queued: std::collections::HashSet<u64> = self
            .pending
            .snapshot()
            .iter()
            .flat_map(|c| c.keys.clone())
            .collect();
        let mut n = 0;
        table::scan(&self.db, self.dim, |rows| {
            let mut chunk = PendingChunk::with_capacity(rows.len(), self.dim);
            for r in &rows {
                let (Some(v), Some(owner)) = (r.embedding, self.rows.owner_of(r.key)) else {
                    continue;
                };
                if !queued.contains(&r.key) && !self.index.contains(r.key) {
                    chunk.push(r.key, owner, v);
                }
            }
            n += chunk.len();
            self.pending.push(chunk);
        })?;
        Ok(n)
    }
}
