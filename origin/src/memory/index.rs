//! The in-process HNSW index (usearch, the library under DuckDB's VSS extension) that serves
//! `/api/memory/search`. DuckDB's table stays the store of record: this index is derived from
//! it, persisted on shutdown and after a build, and reconciled with the table on start.

use std::path::Path;
use std::sync::{Condvar, Mutex, RwLock};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// Most concurrent callers into usearch; each needs one of its per-thread search contexts.
const CONTEXTS: usize = 64;
const KEY_SHARDS: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("hnsw index: {0}")]
pub struct IndexError(pub String);

fn err(e: impl std::fmt::Display) -> IndexError {
    IndexError(e.to_string())
}

/// A counting gate so no more than `CONTEXTS` threads use the index at once.
struct Gate {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Gate {
    fn enter(&self) -> GateGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
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
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

pub struct HnswIndex {
    index: RwLock<Index>,
    dim: usize,
    quantization: ScalarKind,
    gate: Gate,
    key_locks: Vec<Mutex<()>>,
    memory_bytes: std::sync::atomic::AtomicUsize,
}

pub struct Hit {
    pub key: u64,
    pub distance: f32,
}

impl HnswIndex {
    pub fn new(
        dim: usize,
        connectivity: usize,
        ef_construction: usize,
        ef_search: usize,
        quantization: &str,
    ) -> Result<Self, IndexError> {
        let quantization = match quantization {
            "f16" => ScalarKind::F16,
            "i8" => ScalarKind::I8,
            _ => ScalarKind::F32,
        };
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
            index: RwLock::new(index),
            dim,
            quantization,
            gate: Gate {
                free: Mutex::new(CONTEXTS),
                cv: Condvar::new(),
            },
            key_locks: (0..KEY_SHARDS).map(|_| Mutex::new(())).collect(),
            memory_bytes: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Loads a persisted index. Errors (missing file, other dimension) leave `self` empty.
    pub fn load(&self, path: &Path) -> Result<(), IndexError> {
        let meta =
            Index::metadata(path.to_str().ok_or_else(|| err("path is not UTF-8"))?).map_err(err)?;
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
        let index = self.index.write().unwrap_or_else(|p| p.into_inner());
        index.load(path.to_str().unwrap_or_default()).map_err(err)?;
        let cap = index.size().max(1024) * 2;
        index
            .reserve_capacity_and_threads(cap, CONTEXTS)
            .map_err(err)
    }

    /// Writes the index to `path` atomically (temp file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        let tmp = path.with_extension("usearch.tmp");
        let _g = self.gate.enter();
        {
            let index = self.index.read().unwrap_or_else(|p| p.into_inner());
            index
                .save(tmp.to_str().ok_or_else(|| err("path is not UTF-8"))?)
                .map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)
    }

    pub fn len(&self) -> usize {
        self.index.read().unwrap_or_else(|p| p.into_inner()).size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory used, as of the last `refresh_memory_bytes` (cheap to read from any thread).
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// usearch walks its nodes to measure memory, which is not safe beside a concurrent add
    /// (it crashed the daemon under load), so measure under the write lock, off the hot path.
    pub fn refresh_memory_bytes(&self) {
        let bytes = self
            .index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .memory_usage();
        self.memory_bytes
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn contains(&self, key: u64) -> bool {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    pub fn ensure_capacity(&self, extra: usize) -> Result<(), IndexError> {
        {
            let index = self.index.read().unwrap_or_else(|p| p.into_inner());
            if index.size() + extra <= index.capacity() {
                return Ok(());
            }
        }
        let index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let need = index.size() + extra;
        if need > index.capacity() {
            let cap = need.max(index.capacity() * 2).max(1024);
            index
                .reserve_capacity_and_threads(cap, CONTEXTS)
                .map_err(err)?;
        }
        Ok(())
    }

    /// Adds vectors whose keys are not yet present; returns how many were added.
    pub fn add_missing<'a>(
        &self,
        items: impl ExactSizeIterator<Item = (u64, &'a [f32])>,
    ) -> Result<usize, IndexError> {
        self.ensure_capacity(items.len())?;
        let _g = self.gate.enter();
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut added = 0;
        for (key, v) in items {
            let _k = self.key_locks[(key as usize) % KEY_SHARDS]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !index.contains(key) {
                index.add(key, v).map_err(err)?;
                added += 1;
            }
        }
        Ok(added)
    }

    pub fn remove(&self, key: u64) -> Result<(), IndexError> {
        let _g = self.gate.enter();
        // Rare (compensation); exclusive so it never races an add or a search.
        let index = self.index.write().unwrap_or_else(|p| p.into_inner());
        index.remove(key).map(|_| ()).map_err(err)
    }

    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, IndexError> {
        let _g = self.gate.enter();
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let m = index.search(query, k).map_err(err)?;
        Ok(m.keys
            .into_iter()
            .zip(m.distances)
            .map(|(key, distance)| Hit { key, distance })
            .collect())
    }

    pub fn set_ef_search(&self, ef: usize) {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .change_expansion_search(ef);
    }
}
