//! `[memory]`: the DuckDB table, the HNSW index and the request limits of the vector memory.

use crate::settings::{in_range, ConfigError, KeyDoc, Ty};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Embedding dimension, fixed per database.
    pub dim: usize,
    /// HNSW graph degree (usearch "connectivity", M).
    pub hnsw_connectivity: usize,
    /// Candidate list size while building (efConstruction).
    pub hnsw_ef_construction: usize,
    /// Candidate list size while searching (efSearch).
    pub hnsw_ef_search: usize,
    /// How the HNSW graph stores vectors (DuckDB keeps the full FLOAT[dim] either way).
    pub hnsw_quantization: Quantization,
    /// Largest `top_k` a search may ask for.
    pub max_top_k: usize,
    /// Largest number of items in one batch insert.
    pub max_batch: usize,
    /// Read connections for concurrent searches.
    pub read_connections: usize,
    /// Stored rows that may wait for the HNSW indexer before inserts are slowed down.
    pub max_pending: usize,
    /// WAL size (MiB) at which a write checkpoints DuckDB (its `checkpoint_threshold`). A
    /// checkpoint rewrites the table's last, partly filled row group (up to 122,880 rows), so
    /// DuckDB's 16 MiB default turns a bulk load quadratic; a larger WAL costs restart time
    /// after a crash (replay measured at ~50,000 rows/s).
    pub wal_limit_mb: u64,
    /// WAL size (MiB) past which a background checkpoint runs once writes pause for 2 s.
    pub idle_checkpoint_mb: u64,
    /// An owner with fewer rows than this is searched by an exact scan of its rows; a larger
    /// one by the HNSW graph, filtered to its rows.
    pub exact_below: u64,
    /// Most rows an owner may keep, by tier (0: no limit).
    pub max_rows: PerTier,
    /// Days a row is kept, by the owner's tier (0: for ever).
    pub retention_days: PerTier,
    /// How often the retention sweeper runs.
    pub sweep_interval_secs: u64,
}

/// A limit per tier; 0 is no limit. A table in the file gives all three (TOML has no null).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerTier {
    pub free: u64,
    pub pro: u64,
    pub enterprise: u64,
}

impl PerTier {
    /// The tier's limit; `None` when it has none (0).
    pub fn of(&self, tier: heady_shared::Tier) -> Option<u64> {
        let v = match tier {
            heady_shared::Tier::Free => self.free,
            heady_shared::Tier::Pro => self.pro,
            heady_shared::Tier::Enterprise => self.enterprise,
        };
        (v > 0).then_some(v)
    }
}

/// How the HNSW graph stores vectors: f16 (default: half the memory traffic of f32, the same
/// recall in the benchmark, ~1.6x faster), f32, or i8 (fastest, but recall@10 fell to 0.82 on
/// clustered data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    F32,
    F16,
    I8,
}

impl Quantization {
    pub const ALL: [Quantization; 3] = [Quantization::F32, Quantization::F16, Quantization::I8];

    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::F32 => "f32",
            Quantization::F16 => "f16",
            Quantization::I8 => "i8",
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            dim: heady_shared::embedding::DEFAULT_DIMENSIONS,
            hnsw_connectivity: 16,
            hnsw_ef_construction: 128,
            hnsw_ef_search: 64,
            hnsw_quantization: Quantization::F16,
            max_top_k: 100,
            max_batch: 10_000,
            read_connections: 4,
            max_pending: 200_000,
            wal_limit_mb: 256,
            idle_checkpoint_mb: 16,
            exact_below: 20_000,
            max_rows: PerTier {
                free: 10_000,
                pro: 1_000_000,
                enterprise: 0,
            },
            retention_days: PerTier {
                free: 30,
                pro: 365,
                enterprise: 0,
            },
            sweep_interval_secs: 3600,
        }
    }
}

impl MemoryConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("memory.dim", self.dim as u64, 2, 4096)?;
        in_range(
            "memory.hnsw_connectivity",
            self.hnsw_connectivity as u64,
            2,
            128,
        )?;
        in_range(
            "memory.hnsw_ef_construction",
            self.hnsw_ef_construction as u64,
            8,
            4096,
        )?;
        in_range("memory.hnsw_ef_search", self.hnsw_ef_search as u64, 8, 4096)?;
        in_range("memory.max_top_k", self.max_top_k as u64, 1, 10_000)?;
        // An appender auto-flushes past ~200k rows; a batch must stay one transaction.
        in_range("memory.max_batch", self.max_batch as u64, 1, 100_000)?;
        in_range(
            "memory.read_connections",
            self.read_connections as u64,
            1,
            64,
        )?;
        in_range(
            "memory.max_pending",
            self.max_pending as u64,
            1_000,
            10_000_000,
        )?;
        in_range("memory.wal_limit_mb", self.wal_limit_mb, 1, 65_536)?;
        in_range(
            "memory.idle_checkpoint_mb",
            self.idle_checkpoint_mb,
            1,
            self.wal_limit_mb,
        )?;
        in_range("memory.exact_below", self.exact_below, 0, 100_000_000)?;
        for (tier, days) in [
            ("free", self.retention_days.free),
            ("pro", self.retention_days.pro),
            ("enterprise", self.retention_days.enterprise),
        ] {
            in_range(&format!("memory.retention_days.{tier}"), days, 0, 36_500)?;
        }
        in_range(
            "memory.sweep_interval_secs",
            self.sweep_interval_secs,
            1,
            86_400,
        )?;
        Ok(())
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("memory.dim", Ty::Int, "embedding dimension (2-4096), fixed per database: the column is `FLOAT[dim]`")
        .aliases(&["HEADY_MEMORY_DIM"]),
    KeyDoc::new("memory.hnsw_connectivity", Ty::Int, "HNSW graph degree (M)"),
    KeyDoc::new("memory.hnsw_ef_construction", Ty::Int, "HNSW candidate list size while building (efConstruction)"),
    KeyDoc::new("memory.hnsw_ef_search", Ty::Int, "HNSW candidate list size while searching (efSearch)"),
    KeyDoc::new("memory.hnsw_quantization", Ty::Str, "how the graph stores vectors: `f16`, `f32` or `i8` (i8 lost recall in the benchmark); DuckDB keeps `FLOAT[dim]`; a persisted index of another kind is rebuilt at start")
        .aliases(&["HEADY_HNSW_QUANTIZATION"]),
    KeyDoc::new("memory.max_top_k", Ty::Int, "largest `top_k` a search may ask for"),
    KeyDoc::new("memory.max_batch", Ty::Int, "largest number of items in one batch insert"),
    KeyDoc::new("memory.read_connections", Ty::Int, "DuckDB read connections for concurrent searches"),
    KeyDoc::new("memory.max_pending", Ty::Int, "rows waiting for the HNSW indexer before inserts are slowed"),
    KeyDoc::new("memory.wal_limit_mb", Ty::Int, "WAL size (MiB) at which DuckDB checkpoints inside a write (its `checkpoint_threshold`; its 16 MiB default made bulk loads quadratic); after a crash the WAL is replayed on start (~50,000 rows/s)"),
    KeyDoc::new("memory.idle_checkpoint_mb", Ty::Int, "past this WAL size (MiB, at most `wal_limit_mb`), a background checkpoint runs once inserts pause for 2 s"),
    KeyDoc::new("memory.exact_below", Ty::Int, "an owner with fewer rows is searched by an exact scan of its rows, a larger one by the HNSW graph filtered to its rows"),
    KeyDoc::new("memory.max_rows.free", Ty::Int, "most rows a Free account may keep (0: no limit); an insert past it is 403 `quota_exceeded` and stores nothing"),
    KeyDoc::new("memory.max_rows.pro", Ty::Int, "most rows a Pro account may keep (0: no limit)"),
    KeyDoc::new("memory.max_rows.enterprise", Ty::Int, "most rows an Enterprise account may keep (0: no limit)"),
    KeyDoc::new("memory.retention_days.free", Ty::Int, "days a Free account's rows are kept (0: for ever); the sweeper deletes older rows"),
    KeyDoc::new("memory.retention_days.pro", Ty::Int, "days a Pro account's rows are kept (0: for ever)"),
    KeyDoc::new("memory.retention_days.enterprise", Ty::Int, "days an Enterprise account's rows are kept (0: for ever)"),
    KeyDoc::new("memory.sweep_interval_secs", Ty::Int, "how often the retention sweeper deletes expired rows"),
];

// The database keeps its settings under `[memory]`, where they have always been.
impl From<&MemoryConfig> for crate::db::DbConfig {
    fn from(m: &MemoryConfig) -> Self {
        crate::db::DbConfig {
            read_connections: m.read_connections,
            wal_limit_mb: m.wal_limit_mb,
            idle_checkpoint_mb: m.idle_checkpoint_mb,
        }
    }
}
