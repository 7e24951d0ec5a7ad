//! The in-process HNSW index (usearch, the library under DuckDB's VSS extension) that serves
//! `/api/memory/search`. DuckDB's table stays the store of record: this index is derived from
//! it, persisted on shutdown and after a build, and reconciled with the table on start.
//!
//! # Concurrency
//!
//! usearch calls its `add` and `search` thread-safe, but `add` publishes a node before it is
//! whole and `search` reads the graph without the locks `add` takes:
//! - `add` bumps the node count before it stores the node's pointer and vector, so a search
//!   that starts on a graph whose first node is in flight follows a null node;
//! - the entry slot and the top level are two plain stores that a search reads unlocked, so it
//!   can pair the old entry node with a level that node does not have;
//! - the base layer's neighbour lists are rewritten in place by `add` while a search walks
//!   them without the node locks.
//!
//! So here a search never runs beside a mutation, by construction: the usearch index is owned
//! by [`Graph`], behind one `RwLock`. Operations that only read the graph (search, save, size,
//! the memory walk) take `&Graph`; every mutation (add, remove, reserve, load, efSearch) takes
//! `&mut Graph`, which only the write guard hands out. Adds still run in parallel with each
//! other, inside one write guard: that is usearch's own parallel-build path, in which every
//! shared field is read under its locks. Reserving, which renumbers usearch's per-thread search
//! contexts and cast buffers, needs `&mut` too, so no context is in use while it runs.
//!
//! Adds go in slices. Any caller that finds a slice running ends it once it has run 1 ms: each
//! adding thread stops after the vector it is on, so a search waits at most about 1 ms plus
//! one add, and indexing keeps a share of the graph under any search load. The adding threads run in
//! SCHED_IDLE (inserts and searches come first), and that caller raises them to normal
//! priority until the slice ends, so it never waits on an idle thread.

#![forbid(unsafe_code)]

pub use super::config::Quantization;
use crate::sys;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{
    Condvar, LockResult, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError,
};
use std::time::{Duration, Instant};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// Most concurrent searches; each needs one of usearch's per-thread contexts.
const CONTEXTS: usize = 64;
/// Longest one add slice holds the graph. A caller that waits for it ends it at once (each
/// adding thread finishes its current vector), so this only bounds the time between slices,
/// where the threads of a slice wait for each other (short slices cost build throughput).
const SLICE: Duration = Duration::from_millis(50);
/// How long a slice runs before waiting callers end it, so indexing keeps a share of the graph
/// under any search load (searches then wait up to this plus one add).
const MIN_SLICE: Duration = Duration::from_millis(1);

#[derive(Debug, thiserror::Error)]
#[error("hnsw index: {0}")]
pub struct IndexError(pub String);

fn err(e: impl std::fmt::Display) -> IndexError {
    IndexError(e.to_string())
}

/// The HNSW graph quantization (`memory.hnsw_quantization`).
fn scalar_kind(q: Quantization) -> ScalarKind {
    match q {
        Quantization::F32 => ScalarKind::F32,
        Quantization::F16 => ScalarKind::F16,
        Quantization::I8 => ScalarKind::I8,
    }
}

pub struct Hit {
    pub key: u64,
    pub distance: f32,
}

/// The usearch index. Reading methods take `&self`, mutating ones `&mut self`: the borrow
/// checker is what keeps a search from running beside a mutation (see the module docs).
struct Graph {
    index: Index,
}

impl Graph {
    fn len(&self) -> usize {
        self.index.size()
    }

    fn contains(&self, key: u64) -> bool {
        self.index.contains(key)
    }

    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, IndexError> {
        let m = self.index.search(query, k).map_err(err)?;
        Ok(m.keys
            .into_iter()
            .zip(m.distances)
            .map(|(key, distance)| Hit { key, distance })
            .collect())
    }

    /// The best `k` among the keys `keep` accepts. usearch calls `keep` across its C++ frames,
    /// so it must not panic.
    fn filtered_search(
        &self,
        query: &[f32],
        k: usize,
        keep: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<Hit>, IndexError> {
        let m = self.index.filtered_search(query, k, keep).map_err(err)?;
        Ok(m.keys
            .into_iter()
            .zip(m.distances)
            .map(|(key, distance)| Hit { key, distance })
            .collect())
    }

    /// usearch walks every node to measure its memory.
    fn memory_usage(&self) -> usize {
        self.index.memory_usage()
    }

    fn save(&self, path: &str) -> Result<(), IndexError> {
        self.index.save(path).map_err(err)
    }

    /// Room for `extra` more vectors; grows by doubling.
    fn reserve_for(&mut self, extra: usize) -> Result<(), IndexError> {
        let need = self.index.size() + extra;
        if need > self.index.capacity() {
            let cap = need.max(self.index.capacity() * 2).max(1024);
            self.index
                .reserve_capacity_and_threads(cap, CONTEXTS)
                .map_err(err)?;
        }
        Ok(())
    }

    fn load(&mut self, path: &str) -> Result<(), IndexError> {
        self.index.load(path).map_err(err)?;
        let cap = self.index.size().max(1024) * 2;
        self.index
            .reserve_capacity_and_threads(cap, CONTEXTS)
            .map_err(err)
    }

    fn remove(&mut self, key: u64) -> Result<(), IndexError> {
        self.index.remove(key).map(|_| ()).map_err(err)
    }

    fn set_ef_search(&mut self, ef: usize) {
        self.index.change_expansion_search(ef);
    }

    /// Adds the next vectors of each part, one thread per part, until a caller waits (after
    /// `MIN_SLICE`) or `SLICE` has passed. Parts hold disjoint keys, so no two threads add the
    /// same key.
    fn add_slice(
        &mut self,
        parts: &mut [Part<'_>],
        waiting: &AtomicUsize,
        adders: &Mutex<Vec<sys::Tid>>,
    ) -> Result<(), IndexError> {
        let remaining: usize = parts.iter().map(Part::remaining).sum();
        self.reserve_for(remaining)?;
        let slice = &SliceControl {
            started: Instant::now(),
            waiting,
            adders,
        };
        let index = &self.index;
        let results: Vec<Result<(), IndexError>> = std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .iter_mut()
                .filter(|p| p.remaining() > 0)
                .map(|part| s.spawn(move || slice.run(|| part.add_next(index))))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(IndexError("index thread panicked".into())))
                })
                .collect()
        });
        results.into_iter().collect()
    }
}

/// One adding thread's share of a batch, and how far it got.
struct Part<'a> {
    items: Vec<(u64, &'a [f32])>,
    next: usize,
    added: usize,
}

impl Part<'_> {
    fn remaining(&self) -> usize {
        self.items.len() - self.next
    }

    /// Adds the next vector unless the key is present. `Ok(false)` when the part is done.
    fn add_next(&mut self, index: &Index) -> Result<bool, IndexError> {
        let Some(&(key, v)) = self.items.get(self.next) else {
            return Ok(false);
        };
        if !index.contains(key) {
            index.add(key, v).map_err(err)?;
            self.added += 1;
        }
        self.next += 1;
        Ok(true)
    }
}

/// When an add slice ends: a caller is waiting, or the slice has run its time.
struct SliceControl<'a> {
    started: Instant,
    waiting: &'a AtomicUsize,
    adders: &'a Mutex<Vec<sys::Tid>>,
}

impl SliceControl<'_> {
    /// Runs one adding thread's slice, registered for boosting, in SCHED_IDLE unless a caller
    /// already waits. `step` adds one vector and says whether there was one.
    fn run(&self, mut step: impl FnMut() -> Result<bool, IndexError>) -> Result<(), IndexError> {
        let tid = sys::current_tid();
        lock(self.adders).push(tid);
        // Registered first, then checked: a search that raised its count after this check
        // finds this thread in the list and boosts it.
        if self.waiting.load(Ordering::SeqCst) == 0 {
            sys::background_priority();
        }
        let result = loop {
            match step() {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
            let elapsed = self.started.elapsed();
            let callers_wait = self.waiting.load(Ordering::SeqCst) > 0;
            if (callers_wait && elapsed >= MIN_SLICE) || elapsed >= SLICE {
                break Ok(());
            }
        };
        lock(self.adders).retain(|t| *t != tid);
        result
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A counting gate so no more than `CONTEXTS` searches use the index at once.
struct Gate {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Gate {
    fn enter(&self) -> GateGuard<'_> {
        let mut free = lock(&self.free);
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        GateGuard(self)
    }
}

struct GateGuard<'a>(&'a Gate);
impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.cv.notify_one();
    }
}

pub struct HnswIndex {
    graph: RwLock<Graph>,
    dim: usize,
    quantization: ScalarKind,
    searches: Gate,
    /// Readers waiting for an add slice to end; the adding threads stop at their next vector.
    waiting: AtomicUsize,
    /// Kernel ids of the threads adding right now, for a waiting reader to boost.
    adders: Mutex<Vec<sys::Tid>>,
    memory_bytes: AtomicUsize,
}

impl HnswIndex {
    pub fn new(
        dim: usize,
        connectivity: usize,
        ef_construction: usize,
        ef_search: usize,
        quantization: Quantization,
    ) -> Result<Self, IndexError> {
        let quantization = scalar_kind(quantization);
        let options = IndexOptions {
            dimensions: dim,
            metric: MetricKind::Cos,
            quantization,
            connectivity,
            expansion_add: ef_construction,
            expansion_search: ef_search,
            multi: false,
        };
        let index = Index::new(&options).map_err(err)?;
        index
            .reserve_capacity_and_threads(1024, CONTEXTS)
            .map_err(err)?;
        Ok(HnswIndex {
            graph: RwLock::new(Graph { index }),
            dim,
            quantization,
            searches: Gate {
                free: Mutex::new(CONTEXTS),
                cv: Condvar::new(),
            },
            waiting: AtomicUsize::new(0),
            adders: Mutex::new(Vec::new()),
            memory_bytes: AtomicUsize::new(0),
        })
    }

    /// The graph for reading (search, save, size, memory walk).
    fn read(&self) -> RwLockReadGuard<'_, Graph> {
        match self.graph.try_read() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => self.behind_adders(|| self.graph.read()),
        }
    }

    /// The graph for a mutation (add slice, remove, reserve, load, efSearch).
    fn write(&self) -> RwLockWriteGuard<'_, Graph> {
        match self.graph.try_write() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => self.behind_adders(|| self.graph.write()),
        }
    }

    /// Waits for the graph while an add slice may hold it: the adding threads are raised to
    /// normal priority and stop at their next vector, so no caller waits on an idle thread.
    fn behind_adders<G>(&self, acquire: impl FnOnce() -> LockResult<G>) -> G {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        for tid in lock(&self.adders).iter() {
            sys::boost(*tid);
        }
        let g = acquire().unwrap_or_else(|p| p.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        g
    }

    /// Loads a persisted index. Errors (missing file, other dimension) leave `self` empty.
    pub fn load(&self, path: &Path) -> Result<(), IndexError> {
        let path = path.to_str().ok_or_else(|| err("path is not UTF-8"))?;
        let meta = Index::metadata(path).map_err(err)?;
        if meta.dimensions as usize != self.dim {
            return Err(IndexError(format!(
                "persisted index has {} dimensions, expected {}",
                meta.dimensions, self.dim
            )));
        }
        if meta.quantization != self.quantization {
            return Err(IndexError(format!(
                "persisted index stores {:?}, configured {:?} (memory.hnsw_quantization): rebuilding",
                meta.quantization, self.quantization
            )));
        }
        self.write().load(path)
    }

    /// Writes the index to `path` so that a crash at any point leaves either the old file or
    /// the new one whole: a temporary file in the same directory, fsynced, renamed over `path`,
    /// then the directory fsynced so the rename itself is durable.
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        let tmp = path.with_extension("usearch.tmp");
        self.read()
            .save(tmp.to_str().ok_or_else(|| err("path is not UTF-8"))?)?;
        durable_rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            IndexError(format!("saving {}: {e}", path.display()))
        })
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory used, as of the last `refresh_memory_bytes` (cheap to read from any thread).
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    /// Walks the graph to measure its memory; off the hot path.
    pub fn refresh_memory_bytes(&self) {
        let bytes = self.read().memory_usage();
        self.memory_bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn contains(&self, key: u64) -> bool {
        self.read().contains(key)
    }

    /// Makes room for `extra` more vectors now (adds also make room for themselves).
    pub fn ensure_capacity(&self, extra: usize) -> Result<(), IndexError> {
        {
            let g = self.read();
            if g.len() + extra <= g.index.capacity() {
                return Ok(());
            }
        }
        self.write().reserve_for(extra)
    }

    /// Adds vectors whose keys are not yet present, on every core, in short slices between
    /// which waiting searches run. Returns how many were added. Call it from a background
    /// thread: the slices hold the graph at normal priority, the adding itself runs idle.
    pub fn add_missing<'a>(
        &self,
        items: impl ExactSizeIterator<Item = (u64, &'a [f32])>,
    ) -> Result<usize, IndexError> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        let per_part = items.len().div_ceil(threads);
        let mut parts: Vec<Part<'a>> = (0..threads)
            .map(|_| Part {
                items: Vec::with_capacity(per_part),
                next: 0,
                added: 0,
            })
            .collect();
        // By a hash of the key, so a key repeated in the batch always lands on the same thread
        // (the daemon's keys are all odd: `key % 2` would give one thread everything).
        for (key, v) in items {
            let share = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % threads as u64;
            parts[share as usize].items.push((key, v));
        }
        while parts.iter().any(|p| p.remaining() > 0) {
            // A slice that ended for waiting callers lets them in first: a writer may take the
            // lock ahead of readers it has just woken.
            while self.waiting.load(Ordering::SeqCst) > 0 {
                std::thread::yield_now();
            }
            sys::urgent(|| {
                self.write()
                    .add_slice(&mut parts, &self.waiting, &self.adders)
            })?;
        }
        Ok(parts.iter().map(|p| p.added).sum())
    }

    pub fn remove(&self, key: u64) -> Result<(), IndexError> {
        self.write().remove(key)
    }

    /// Removes the keys that are present, under one write guard; returns how many were.
    pub fn remove_many(&self, keys: &[u64]) -> usize {
        let mut g = self.write();
        keys.iter()
            .filter(|&&k| g.contains(k) && g.remove(k).is_ok())
            .count()
    }

    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, IndexError> {
        let _context = self.searches.enter();
        self.read().search(query, k)
    }

    /// The best `k` among the keys `keep` accepts (one owner's rows).
    pub fn filtered_search(
        &self,
        query: &[f32],
        k: usize,
        keep: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<Hit>, IndexError> {
        let _context = self.searches.enter();
        self.read().filtered_search(query, k, keep)
    }

    pub fn set_ef_search(&self, ef: usize) {
        self.write().set_ef_search(ef);
    }
}

/// fsyncs `tmp`, renames it over `path`, and fsyncs the directory that holds both.
fn durable_rename(tmp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::File::open(tmp)?.sync_all()?;
    std::fs::rename(tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}
