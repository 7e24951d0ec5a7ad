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
//! Every row belongs to an owner (an account id). Every operation that reads, counts or
//! deletes rows takes the owner ([`Scope`] for searches, where an operator may name
//! `AllOwners` explicitly): two owners' rows, sessions and counts never meet. An owner with
//! fewer than `memory.exact_below` rows is searched by an exact scan of its rows in DuckDB; a
//! larger one by the HNSW graph filtered to its rows (usearch's filtered search), merged with
//! its queued rows.
//!
//! Every method blocks: call them from blocking threads so the runtime never waits on DuckDB
//! or the index.

#![forbid(unsafe_code)]

pub mod config;
pub mod embedder;
pub mod embedder_config;
pub mod index;
mod indexer;
pub mod local;
pub mod meta;
mod pending;
pub mod reembed;
pub mod retention;
mod row_cache;
mod search;
mod table;

use crate::db::{CancelWatch, Database, DbError};
use config::{MemoryConfig, PerTier};
use heady_shared::{AccountId, Tier};
use index::{Hit, HnswIndex};
use indexer::{Indexer, Progress};
use pending::{PendingChunk, PendingQueue};
use row_cache::{RowCache, RowView};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    #[error("the database at {path} holds vectors made by {stored}, but the configured embedder is {configured}: set embedder.kind to match, or re-embed every row with the daemon stopped: heady-origin memory reembed --to <local|lexical>")]
    EmbedderMismatch {
        stored: String,
        configured: String,
        path: PathBuf,
    },
    #[error("a re-embed of the database at {path} to {target} has not finished: run heady-origin memory reembed again (it resumes) before starting the daemon")]
    ReembedUnfinished { target: String, path: PathBuf },
    #[error("re-embedding: {0}")]
    Reembed(embedder::EmbedError),
    #[error("{0} memory rows have no owner and no legacy account was given for them")]
    Unowned(u64),
    #[error("could not start the indexer thread: {0}")]
    Thread(std::io::Error),
    /// The insert would take the owner past its tier's row quota; nothing was stored.
    #[error("the account keeps {have} memory rows; storing {adding} more would pass its quota of {limit} rows (memory.max_rows)")]
    Quota { have: u64, adding: u64, limit: u64 },
}

pub use table::Doomed;

/// The persisted HNSW index, in the data directory.
pub const INDEX_FILE: &str = "hnsw.usearch";

/// Whose rows a search reads.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// One owner's rows: every caller's search.
    Owner(&'a AccountId),
    /// Every owner's rows: only an operator, asking for it explicitly.
    AllOwners,
}

impl From<duckdb::Error> for MemoryError {
    fn from(e: duckdb::Error) -> Self {
        MemoryError::Db(DbError::Duck(e))
    }
}

/// One validated row, ready to store. Validation lives in the HTTP layer (`api::memory`).
#[derive(Debug, Clone)]
pub struct NewRow {
    /// The account the row belongs to.
    pub owner: AccountId,
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
    /// The row's owner, shown only in an operator's search across owners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// One of an owner's sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub rows: u64,
    pub first_ts: i64,
    pub last_ts: i64,
}

/// The owners seen, interned to small numbers (the row cache and the pending queue store
/// those), with each one's row count (the quota check and the search path read it, so
/// neither costs a query).
#[derive(Default)]
struct Owners {
    ids: HashMap<String, u32>,
    names: Vec<String>,
    rows: Vec<u64>,
}

impl Owners {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.ids.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.ids.insert(name.to_string(), i);
        self.names.push(name.to_string());
        self.rows.push(0);
        i
    }

    fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }
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
    owners: Arc<Mutex<Owners>>,
    count: AtomicU64,
    /// Stored rows that may wait for the indexer before inserts are slowed down.
    max_pending: usize,
    /// Owners with fewer rows are searched exactly (`memory.exact_below`).
    exact_below: AtomicU64,
    /// The graph's efSearch (`memory.hnsw_ef_search`): a filtered walk widens it by the
    /// owner's share of the graph.
    ef_search: AtomicUsize,
    /// Inserts that found the queue full while the index was loading queued nothing: the
    /// indexer queues the rows the graph lacks once the load is done.
    overflowed: Arc<AtomicBool>,
    cancel: CancellationToken,
    /// Wakes the indexer and waiting inserters when `cancel` is cancelled.
    _cancel_watch: CancelWatch,
    indexer: Mutex<Option<JoinHandle<()>>>,
}

impl MemoryStore {
    /// Creates the table in `db` when missing (and checks its dimension); in a database made
    /// before rows had owners, gives every row to `legacy`. The HNSW index is loaded or built
    /// by the indexer thread (`start_indexer`); until it is ready, searches use an exact scan.
    /// The indexer stops when `cancel` is cancelled, at `close_blocking`, or when the store is
    /// dropped.
    pub fn open(
        db: Database,
        cfg: &MemoryConfig,
        legacy: Option<&AccountId>,
        cancel: CancellationToken,
    ) -> Result<MemoryStore, MemoryError> {
        // Our own child, so that closing the store stops only its own thread.
        let cancel = cancel.child_token();
        let dim = cfg.dim;
        let opened = table::create(&db, dim, legacy.map(AccountId::as_str))?;
        if let (true, Some(legacy)) = (opened.migrated > 0, legacy) {
            tracing::info!(rows = opened.migrated, owner = %legacy, "memory rows without an owner given to the legacy account");
        }
        let mut owners = Owners::default();
        let mut count = 0;
        for (name, n) in &opened.counts {
            let i = owners.intern(name);
            owners.rows[i as usize] = *n;
            count += n;
        }
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
            index_path: db.dir().join(INDEX_FILE),
            db,
            dim,
            index: Arc::new(index),
            pending,
            rows: Arc::new(RowCache::default()),
            progress: Arc::new(Progress::new(count as usize)),
            owners: Arc::new(Mutex::new(owners)),
            count: AtomicU64::new(count),
            max_pending: cfg.max_pending,
            exact_below: AtomicU64::new(cfg.exact_below),
            ef_search: AtomicUsize::new(cfg.hnsw_ef_search),
            overflowed: Arc::new(AtomicBool::new(false)),
            cancel,
            _cancel_watch: cancel_watch,
            indexer: Mutex::new(None),
        })
    }

    /// Rows stored before rows had owners, which `open` gives to the legacy account.
    pub fn unowned_rows(db: &Database) -> Result<u64, MemoryError> {
        table::unowned(db)
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
            owners: self.owners.clone(),
            overflowed: self.overflowed.clone(),
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

    fn owners(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rows `owner` keeps (from memory: no query).
    pub fn owner_rows(&self, owner: &AccountId) -> u64 {
        let o = self.owners();
        o.get(owner.as_str())
            .map(|i| o.rows[i as usize])
            .unwrap_or(0)
    }

    /// Stores rows atomically: all of them or none. Each owner in the batch may keep at most
    /// `max_rows` rows (its tier's quota; `None`: no limit): past it the whole batch is
    /// refused ([`MemoryError::Quota`]) and nothing is written. Concurrent inserts share
    /// transactions (group commit, see `Database::append`). Once this returns the rows are
    /// durable and searchable.
    pub fn insert_blocking(
        &self,
        rows: &[NewRow],
        max_rows: Option<u64>,
    ) -> Result<(), MemoryError> {
        if rows.is_empty() {
            return Ok(());
        }
        // Reserve the rows against the quota first, so two concurrent inserts cannot both
        // pass it; given back if the write fails.
        let (interned, reserved) = {
            let mut o = self.owners();
            let interned: Vec<u32> = rows.iter().map(|r| o.intern(r.owner.as_str())).collect();
            let mut per: Vec<(u32, u64)> = Vec::new();
            for &i in &interned {
                match per.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, n)) => *n += 1,
                    None => per.push((i, 1)),
                }
            }
            if let Some(limit) = max_rows {
                for &(i, n) in &per {
                    let have = o.rows[i as usize];
                    if have + n > limit {
                        return Err(MemoryError::Quota {
                            have,
                            adding: n,
                            limit,
                        });
                    }
                }
            }
            for &(i, n) in &per {
                o.rows[i as usize] += n;
            }
            (interned, per)
        };
        let appended = match table::record_batch(rows, self.dim) {
            Ok(batch) => self
                .db
                .append(table::TABLE, batch)
                .map_err(MemoryError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = appended {
            let mut o = self.owners();
            for &(i, n) in &reserved {
                o.rows[i as usize] = o.rows[i as usize].saturating_sub(n);
            }
            return Err(e);
        }
        self.count.fetch_add(rows.len() as u64, Ordering::Relaxed);
        self.rows
            .insert(rows.iter().zip(&interned).map(|(r, &owner)| {
                (
                    r.key,
                    RowView {
                        owner,
                        content: r.content.clone(),
                        role: r.role.clone(),
                        ts: r.ts,
                        session_id: r.session_id.clone(),
                        metadata: r.metadata.clone(),
                    },
                )
            }));
        // Durable now. Queue for the indexer; searchable at once through the exact pass.
        self.queue(rows, &interned);
        // Backpressure: a writer outrunning the indexer waits rather than growing the queue.
        if self.index_ready() && self.pending.len() > self.max_pending {
            self.pending
                .wait_until(None, Duration::from_millis(50), || {
                    self.pending.len() <= self.max_pending / 2 || self.cancel.is_cancelled()
                });
        }
        Ok(())
    }

    /// Queues stored rows for the indexer, unless the graph will not take them: when it
    /// failed to load, searches use exact scans and nothing is queued; while it loads, the
    /// queue stops at `max_pending` and the indexer picks up the rest from the table after.
    fn queue(&self, rows: &[NewRow], owners: &[u32]) {
        if self.progress.failed() {
            return;
        }
        if !self.index_ready() && self.pending.len() > self.max_pending {
            self.overflowed.store(true, Ordering::Release);
            return;
        }
        let mut chunk = PendingChunk::with_capacity(rows.len(), self.dim);
        for (r, &o) in rows.iter().zip(owners) {
            chunk.push(r.key, o, &r.embedding);
        }
        self.pending.push(chunk);
        // The load may have failed between the check and the push: what it cleared is gone.
        if self.progress.failed() {
            self.pending.clear();
        }
    }

    /// Deletes the rows of `owner` that `which` names (another owner's rows are never
    /// touched). They leave DuckDB, the graph, the row cache (so the queue's copies match
    /// nothing) and the owner's count at once. Returns how many were deleted.
    pub fn delete_blocking(
        &self,
        owner: &AccountId,
        which: Doomed<'_>,
    ) -> Result<usize, MemoryError> {
        let keys = table::delete(&self.db, owner.as_str(), which)?;
        if keys.is_empty() {
            return Ok(0);
        }
        for &k in &keys {
            self.rows.remove(k);
        }
        self.index.remove_many(&keys);
        let n = keys.len() as u64;
        {
            let mut o = self.owners();
            if let Some(i) = o.get(owner.as_str()) {
                o.rows[i as usize] = o.rows[i as usize].saturating_sub(n);
            }
        }
        self.count.fetch_sub(n, Ordering::Relaxed);
        Ok(keys.len())
    }

    /// Deletes every owner's rows older than its tier's retention (`retention`, by the tier
    /// `tier_of` gives the owner). An owner whose tier is unknown keeps its rows. Returns
    /// the rows deleted.
    pub fn sweep_blocking(
        &self,
        now_ms: i64,
        retention: &PerTier,
        tier_of: &dyn Fn(&AccountId) -> Option<Tier>,
    ) -> Result<u64, MemoryError> {
        let owners: Vec<String> = {
            let o = self.owners();
            o.names
                .iter()
                .zip(&o.rows)
                .filter(|(_, n)| **n > 0)
                .map(|(name, _)| name.clone())
                .collect()
        };
        let mut deleted = 0;
        for name in owners {
            let Ok(owner) = AccountId::parse(&name) else {
                continue;
            };
            let Some(days) = tier_of(&owner).and_then(|t| retention.of(t)) else {
                continue;
            };
            let cutoff = now_ms.saturating_sub(days as i64 * 86_400_000);
            let n = self.delete_blocking(&owner, Doomed::Before(cutoff))?;
            if n > 0 {
                tracing::info!(owner = %owner, rows = n, days, "retention: deleted expired memory rows");
            }
            deleted += n as u64;
        }
        Ok(deleted)
    }

    /// Cosine similarity search within `scope`. An owner with `memory.exact_below` rows or
    /// more is searched in the HNSW graph filtered to its rows (plus an exact pass over its
    /// rows not yet in it), once the graph is ready and no session filter is given; otherwise
    /// by an exact scan in DuckDB restricted to the owner (and session).
    pub fn search_blocking(
        &self,
        scope: &Scope<'_>,
        query: &[f32],
        top_k: usize,
        session_id: Option<&str>,
    ) -> Result<(Vec<SearchHit>, SearchPath), MemoryError> {
        let owner = match scope {
            Scope::Owner(o) => {
                let (i, rows) = {
                    let owners = self.owners();
                    match owners.get(o.as_str()) {
                        Some(i) => (i, owners.rows[i as usize]),
                        None => return Ok((Vec::new(), SearchPath::Exact)),
                    }
                };
                if rows == 0 {
                    return Ok((Vec::new(), SearchPath::Exact));
                }
                if rows < self.exact_below.load(Ordering::Relaxed) {
                    return Ok((
                        self.exact_search_blocking(scope, query, top_k, session_id)?,
                        SearchPath::Exact,
                    ));
                }
                Some(i)
            }
            Scope::AllOwners => None,
        };
        if session_id.is_some() || !self.index_ready() {
            return Ok((
                self.exact_search_blocking(scope, query, top_k, session_id)?,
                SearchPath::Exact,
            ));
        }
        let mut hits = match owner {
            Some(i) => self.owner_graph_search(i, query, top_k)?,
            None => self
                .rows
                .with_owner_test(None, |keep| self.index.filtered_search(query, top_k, keep))?,
        };
        search::merge_queued(
            query,
            top_k,
            &self.pending.snapshot(),
            owner,
            &|k| self.rows.owner_of(k).is_some(),
            &mut hits,
        );
        // A walk through the owner's nodes alone can miss a few of them: a search that asks
        // for (nearly) all of an owner's rows and gets fewer is answered by the exact scan.
        if let Some(i) = owner {
            let owned = self.owners().rows[i as usize] as usize;
            if hits.len() < top_k.min(owned) {
                return Ok((
                    self.exact_search_blocking(scope, query, top_k, session_id)?,
                    SearchPath::Exact,
                ));
            }
        }
        let mut results = match self.rows.results(&hits) {
            Some(r) => r,
            None => table::fetch(&self.db, &hits)?,
        };
        if owner.is_none() {
            let o = self.owners();
            for r in results.iter_mut() {
                r.owner = key_of(&r.id)
                    .and_then(|k| self.rows.owner_of(k))
                    .and_then(|i| o.names.get(i as usize).cloned());
            }
        }
        Ok((results, SearchPath::Hnsw))
    }

    /// One owner's best `top_k` from the graph, by a filtered walk whose beam is widened by the
    /// owner's share of the graph (`filtered_candidates`).
    fn owner_graph_search(
        &self,
        owner: u32,
        query: &[f32],
        top_k: usize,
    ) -> Result<Vec<Hit>, MemoryError> {
        let wanted = filtered_candidates(
            top_k,
            self.ef_search.load(Ordering::Relaxed),
            self.owners().rows[owner as usize],
            self.index.len() as u64,
        );
        let mut hits = self.rows.with_owner_test(Some(owner), |keep| {
            self.index.filtered_search(query, wanted, keep)
        })?;
        hits.truncate(top_k);
        Ok(hits)
    }

    /// Exact cosine search in DuckDB within `scope` (the ground truth).
    pub fn exact_search_blocking(
        &self,
        scope: &Scope<'_>,
        query: &[f32],
        top_k: usize,
        session_id: Option<&str>,
    ) -> Result<Vec<SearchHit>, MemoryError> {
        table::exact_search(&self.db, self.dim, query, top_k, scope, session_id)
    }

    /// `owner`'s rows, sessions and first and last times, and the index's state.
    pub fn stats_blocking(&self, owner: &AccountId) -> Result<Stats, MemoryError> {
        let (total, sessions, first_ts, last_ts) = table::summary(&self.db, owner.as_str())?;
        Ok(Stats {
            total_vectors: total,
            sessions,
            first_ts,
            last_ts,
            dim: self.dim,
            index: self.index_stats(),
        })
    }

    /// `owner`'s sessions, latest first.
    pub fn sessions_blocking(&self, owner: &AccountId) -> Result<Vec<SessionInfo>, MemoryError> {
        table::sessions(&self.db, owner.as_str())
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

    /// Changes `memory.exact_below` (benchmarks compare the two paths on one owner).
    pub fn set_exact_below(&self, rows: u64) {
        self.exact_below.store(rows, Ordering::Relaxed);
    }

    pub fn set_ef_search(&self, ef: usize) {
        self.ef_search.store(ef, Ordering::Relaxed);
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

/// How many candidates a graph walk for one owner asks usearch for. usearch widens its beam to
/// at least the count asked, and an owner with a share `p` of the nodes holds about `ef * p` of
/// a beam of `ef`: asking `ef / p` keeps the owner's recall near the whole graph's, capped so a
/// walk never costs more than `MAX_FILTERED_WIDENING` times a plain one (below
/// `memory.exact_below` rows the exact scan is used instead).
pub fn filtered_candidates(top_k: usize, ef: usize, owner_rows: u64, graph_rows: u64) -> usize {
    const MAX_FILTERED_WIDENING: usize = 8;
    if owner_rows == 0 || graph_rows <= owner_rows {
        return top_k;
    }
    // usearch returns fewer results when asked for more than the graph holds.
    let cap = (ef.saturating_mul(MAX_FILTERED_WIDENING) as u64).min(graph_rows);
    let widened = (ef as u128 * graph_rows as u128).div_ceil(owner_rows as u128);
    top_k.max(widened.min(cap as u128) as usize)
}

#[cfg(test)]
mod tests {
    use super::filtered_candidates;

    #[test]
    fn a_filtered_walk_widens_by_the_owners_share() {
        assert_eq!(filtered_candidates(10, 64, 50_000, 100_000), 128);
        assert_eq!(filtered_candidates(10, 64, 25_000, 100_000), 256);
        assert_eq!(
            filtered_candidates(10, 64, 1_000, 100_000),
            512,
            "capped at 8x"
        );
        assert_eq!(
            filtered_candidates(10, 64, 100_000, 100_000),
            10,
            "no filter to make up for"
        );
        assert_eq!(
            filtered_candidates(600, 64, 50_000, 100_000),
            600,
            "never fewer than asked"
        );
        assert_eq!(filtered_candidates(10, 64, 0, 100_000), 10);
        assert_eq!(
            filtered_candidates(10, 64, 60, 100),
            100,
            "never more than the graph holds"
        );
        assert_eq!(
            filtered_candidates(200, 64, 60, 100),
            200,
            "as before when asked for more"
        );
    }
}
