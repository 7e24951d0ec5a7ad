//! Pattern engine (conductor layer 4): per (action, provider), EWMA latency and quality of
//! the outcomes seen; the plan stage asks it for the best known path. What it learns is kept
//! in DuckDB (`heady_patterns`, in the daemon's database) and written behind, every `flush_ms`.

use super::config::PatternConfig;
use super::Pipeline;
use crate::db::{Database, DbError};
use heady_shared::drift::Ewma;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PathStats {
    pub latency_ms: Ewma,
    pub quality: Ewma,
    pub failures: u64,
}

impl PathStats {
    fn new(alpha: f64) -> Self {
        PathStats {
            latency_ms: Ewma::new(alpha),
            quality: Ewma::new(alpha),
            failures: 0,
        }
    }

    pub fn samples(&self) -> u64 {
        self.quality.samples
    }

    /// Quality minus latency cost: higher is better.
    pub fn score(&self, latency_scale_ms: f64) -> f64 {
        self.quality.value.unwrap_or(0.0) - self.latency_ms.value.unwrap_or(0.0) / latency_scale_ms
    }
}

type Key = (String, String);

pub struct PatternEngine {
    cfg: PatternConfig,
    paths: Mutex<HashMap<Key, PathStats>>,
    dirty: Mutex<HashSet<Key>>,
    db: Database,
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS heady_patterns (
    action VARCHAR NOT NULL,
    provider VARCHAR NOT NULL,
    latency_ms DOUBLE NOT NULL,
    quality DOUBLE NOT NULL,
    samples BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (action, provider))";

impl PatternEngine {
    /// Creates its table in `db` when missing and loads what was learned before.
    pub fn new(cfg: PatternConfig, db: Database) -> Self {
        let engine = PatternEngine {
            cfg,
            paths: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            db,
        };
        if let Err(e) = engine.load_blocking() {
            tracing::warn!(error = %e, "could not load learned paths; starting afresh");
        }
        engine
    }

    fn load_blocking(&self) -> Result<(), DbError> {
        let rows = self.db.with_writer(|c| -> Result<_, DbError> {
            c.execute_batch(TABLE)?;
            let mut st = c.prepare("SELECT action, provider, latency_ms, quality, samples, failures FROM heady_patterns")?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, f64>(2)?,
                        r.get::<_, f64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        for (action, provider, lat, q, n, f) in rows {
            let n = n.max(0) as u64;
            paths.insert(
                (action, provider),
                PathStats {
                    latency_ms: Ewma::with_value(self.cfg.alpha, lat, n),
                    quality: Ewma::with_value(self.cfg.alpha, q, n),
                    failures: f.max(0) as u64,
                },
            );
        }
        Ok(())
    }

    /// One outcome: latency of the call and the quality of its answer (0 for a failure).
    pub fn record(&self, action: &str, provider: &str, ms: f64, quality: f64, ok: bool) {
        let key = (action.to_string(), provider.to_string());
        {
            let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
            let s = paths
                .entry(key.clone())
                .or_insert_with(|| PathStats::new(self.cfg.alpha));
            s.latency_ms.update(ms);
            s.quality.update(quality);
            if !ok {
                s.failures += 1;
            }
        }
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
    }

    pub fn get(&self, action: &str, provider: &str) -> Option<PathStats> {
        self.paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(action.to_string(), provider.to_string()))
            .copied()
    }

    /// The best known path among `names` (in fallback order) when it beats the first one by
    /// `margin`: its position and a reason. Paths with fewer than `min_samples` don't count.
    pub fn prefer(&self, action: &str, names: &[&str]) -> Option<(usize, String)> {
        let paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        let score = |n: &str| {
            paths
                .get(&(action.to_string(), n.to_string()))
                .filter(|s| s.samples() >= self.cfg.min_samples)
                .map(|s| s.score(self.cfg.latency_scale_ms))
        };
        let (best, best_score) = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| score(n).map(|s| (i, s)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        if best == 0 {
            return None;
        }
        let first = score(names[0]);
        if first.is_some_and(|f| best_score < f + self.cfg.margin) {
            return None;
        }
        Some((
            best,
            format!(
                "pattern engine prefers {} for {action:?} (score {best_score:.3} vs {})",
                names[best],
                first
                    .map(|f| format!("{f:.3}"))
                    .unwrap_or_else(|| "unknown".into())
            ),
        ))
    }

    pub fn snapshot(&self) -> Vec<serde_json::Value> {
        let paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = paths
            .iter()
            .map(|((a, p), s)| {
                serde_json::json!({
                    "action": a, "provider": p,
                    "latency_ms": s.latency_ms.value, "quality": s.quality.value,
                    "samples": s.samples(), "failures": s.failures,
                    "score": s.score(self.cfg.latency_scale_ms),
                })
            })
            .collect();
        v.sort_by_key(|a| a.to_string());
        v
    }

    /// Upserts the paths that changed since the last flush. Blocking.
    pub fn flush_blocking(&self) -> Result<usize, DbError> {
        let keys: Vec<Key> = self
            .dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let rows: Vec<(Key, PathStats)> = {
            let paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
            keys.iter()
                .filter_map(|k| paths.get(k).map(|s| (k.clone(), *s)))
                .collect()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let result = self.db.with_writer(|c| -> Result<(), DbError> {
            c.execute_batch("BEGIN TRANSACTION")?;
            let r: duckdb::Result<()> = (|| {
                let mut st = c.prepare_cached(
                    "INSERT OR REPLACE INTO heady_patterns VALUES (?, ?, ?, ?, ?, ?, ?)",
                )?;
                for ((a, p), s) in &rows {
                    st.execute(duckdb::params![
                        a,
                        p,
                        s.latency_ms.value.unwrap_or(0.0),
                        s.quality.value.unwrap_or(0.0),
                        s.samples() as i64,
                        s.failures as i64,
                        now
                    ])?;
                }
                Ok(())
            })();
            match r {
                Ok(()) => Ok(c.execute_batch("COMMIT")?),
                Err(e) => {
                    let _ = c.execute_batch("ROLLBACK");
                    Err(e.into())
                }
            }
        });
        if result.is_err() {
            // Try again next time.
            self.dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(keys);
        }
        result.map(|_| rows.len())
    }
}

/// Writes learned paths every `flush_ms` until `cancel` fires; the last flush is shutdown's.
pub async fn flush_every(p: Arc<Pipeline>, cancel: CancellationToken) {
    let every = Duration::from_millis(p.config.patterns.flush_ms);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let p = p.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || p.flush_blocking()).await {
            tracing::warn!(error = %e, "pattern flush task failed");
        }
    }
}
