//! What a search result shows of each row, kept in RAM so the served path never waits on
//! DuckDB for it (it costs about the size of the stored content). DuckDB stays the record: a
//! hit the cache lacks is read from the table.
//!
//! It also knows each row's owner (interned, see `Owners`): a search filters the graph and
//! the pending rows by it, and a row missing here (deleted) is found by no search.

use super::index::Hit;
use super::{id_of, SearchHit};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The columns a search result returns.
#[derive(Debug)]
pub struct RowView {
    /// The owner, interned (`Owners::intern`).
    pub owner: u32,
    pub content: String,
    pub role: String,
    pub ts: i64,
    pub session_id: Option<String>,
    /// Serialized JSON object, or None.
    pub metadata: Option<String>,
}

#[derive(Default)]
pub struct RowCache {
    rows: RwLock<HashMap<u64, Arc<RowView>>>,
}

impl RowCache {
    pub fn insert(&self, rows: impl IntoIterator<Item = (u64, RowView)>) {
        let mut map = self.rows.write().unwrap_or_else(|p| p.into_inner());
        for (key, view) in rows {
            map.insert(key, Arc::new(view));
        }
    }

    pub fn remove(&self, key: u64) {
        self.rows
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    pub fn owner_of(&self, key: u64) -> Option<u32> {
        self.rows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .map(|v| v.owner)
    }

    /// Runs `f` with a test "is this key a stored row of `owner`" (of anyone: `None`), under
    /// the cache's read lock, so `f` must not insert.
    pub fn with_owner_test<T>(
        &self,
        owner: Option<u32>,
        f: impl FnOnce(&dyn Fn(u64) -> bool) -> T,
    ) -> T {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        let test = |key: u64| {
            rows.get(&key)
                .is_some_and(|v| owner.is_none_or(|o| v.owner == o))
        };
        f(&test)
    }

    /// Keeps the keys that are stored rows (not deleted since they were queued).
    pub fn retain_stored(&self, keys: &mut Vec<(u64, &[f32])>) {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        keys.retain(|(k, _)| rows.contains_key(k));
    }

    /// The hits as results, in order; `None` unless every one is cached.
    pub fn results(&self, hits: &[Hit]) -> Option<Vec<SearchHit>> {
        let views: Vec<(&Hit, Arc<RowView>)> = {
            let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
            hits.iter()
                .map(|h| rows.get(&h.key).map(|v| (h, Arc::clone(v))))
                .collect::<Option<_>>()?
        };
        Some(
            views
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
                    owner: None,
                })
                .collect(),
        )
    }
}
