//! The store directly: a batch is all or nothing even when DuckDB itself refuses a row.

use heady_origin::config::MemoryConfig;
use heady_origin::db::{Database, DbConfig};
use heady_origin::memory::{new_key, MemoryStore, NewRow};
use tokio_util::sync::CancellationToken;

/// A database in `dir` and the memory store over it.
fn open(dir: &std::path::Path, cfg: &MemoryConfig) -> (Database, MemoryStore) {
    let cancel = CancellationToken::new();
    let db = Database::open(dir, &DbConfig::from(cfg), cancel.child_token()).unwrap();
    let m = MemoryStore::open(db.clone(), cfg, cancel.child_token()).unwrap();
    (db, m)
}

fn row(key: u64, content: &str) -> NewRow {
    NewRow {
        key,
        ts: 1,
        role: "user".into(),
        content: content.into(),
        embedding: vec![0.5, 0.25, 0.125, 1.0],
        token_count: 0,
        session_id: None,
        metadata: Some("{\"a\":1}".into()),
    }
}

#[test]
fn a_batch_with_a_duplicate_id_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 4,
        ..MemoryConfig::default()
    };
    let (_db, m) = open(dir.path(), &cfg);
    let first = new_key();
    m.insert_blocking(&[row(first, "first")]).unwrap();
    let batch: Vec<NewRow> = (0..50)
        .map(|i| row(new_key(), &format!("new {i}")))
        .chain([row(first, "dup")])
        .collect();
    assert!(
        m.insert_blocking(&batch).is_err(),
        "the duplicate id is refused"
    );
    assert_eq!(m.len(), 1);
    let stats = m.stats_blocking().unwrap();
    assert_eq!(
        stats.total_vectors, 1,
        "none of the 50 valid rows was stored"
    );
    let hits = m
        .exact_search_blocking(&[0.5, 0.25, 0.125, 1.0], 10, None)
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].content, "first");
    assert_eq!(hits[0].metadata, Some(serde_json::json!({"a": 1})));
}

/// Group commit: many threads insert at once; their batches share transactions, and the one
/// that DuckDB refuses (a duplicate id) fails alone while every other batch is stored whole.
#[test]
fn concurrent_batches_commit_together_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 4,
        ..MemoryConfig::default()
    };
    let (_db, m) = open(dir.path(), &cfg);
    let existing = new_key();
    m.insert_blocking(&[row(existing, "existing")]).unwrap();
    let results: Vec<(usize, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let m = &m;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for round in 0..20 {
                        let bad = t == 7 && round == 10;
                        let batch: Vec<NewRow> = (0..25)
                            .map(|i| row(new_key(), &format!("t{t} r{round} i{i}")))
                            .chain(bad.then(|| row(existing, "dup")))
                            .collect();
                        out.push((batch.len(), m.insert_blocking(&batch).is_ok()));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let failed: Vec<&(usize, bool)> = results.iter().filter(|(_, ok)| !ok).collect();
    assert_eq!(failed.len(), 1, "only the batch with the duplicate failed");
    assert_eq!(failed[0].0, 26);
    let stored: usize = results.iter().filter(|(_, ok)| *ok).map(|(n, _)| n).sum();
    assert_eq!(stored, 16 * 20 * 25 - 25);
    assert_eq!(m.len() as usize, stored + 1);
    assert_eq!(
        m.stats_blocking().unwrap().total_vectors as usize,
        stored + 1
    );
}

/// The checkpointer folds the WAL into the database file once writes pause.
#[test]
fn the_wal_is_checkpointed_when_writes_pause() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 64,
        idle_checkpoint_mb: 1,
        ..MemoryConfig::default()
    };
    let (db, m) = open(dir.path(), &cfg);
    m.start_indexer().unwrap();
    for b in 0..10 {
        let batch: Vec<NewRow> = (0..500)
            .map(|i| NewRow {
                embedding: (0..64)
                    .map(|d| ((b * 500 + i + d) % 17) as f32 + 1.0)
                    .collect(),
                ..row(new_key(), "x")
            })
            .collect();
        m.insert_blocking(&batch).unwrap();
    }
    let before = db.wal_bytes();
    assert!(
        before > 1 << 20,
        "the WAL holds the inserts ({before} bytes)"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while db.checkpoints() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(db.checkpoints(), 1);
    assert!(db.wal_bytes() < before / 10, "WAL {} bytes", db.wal_bytes());
    assert_eq!(m.stats_blocking().unwrap().total_vectors, 5000);
    m.close_blocking().unwrap();
    db.close().unwrap();
}

/// A vector of its own for each `i` (no two alike).
fn unit(dim: usize, i: usize) -> Vec<f32> {
    (0..dim)
        .map(|d| ((i as f32 + 1.0) * (d as f32 + 1.0) * 0.37).sin())
        .collect()
}

/// Shutdown in order: the store stops its indexer and persists the index, then the database
/// folds its WAL into the file; a reopen finds every row already in the persisted index.
#[test]
fn closing_persists_the_index_and_checkpoints_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 16,
        ..MemoryConfig::default()
    };
    let (db, m) = open(dir.path(), &cfg);
    m.start_indexer().unwrap();
    let batch: Vec<NewRow> = (0..300)
        .map(|i| NewRow {
            embedding: unit(16, i),
            ..row(new_key(), &format!("r{i}"))
        })
        .collect();
    m.insert_blocking(&batch).unwrap();
    assert!(m.wait_indexed(std::time::Duration::from_secs(60)));
    m.close_blocking().unwrap();
    assert!(dir.path().join("hnsw.usearch").exists());
    assert!(db.wal_bytes() > 0);
    db.close().unwrap();
    assert_eq!(db.wal_bytes(), 0, "the WAL is folded into the file");
    drop((m, db));

    let (_db, m) = open(dir.path(), &cfg);
    m.start_indexer().unwrap();
    assert!(m.wait_indexed(std::time::Duration::from_secs(60)));
    let stats = m.index_stats();
    assert_eq!((stats.size, stats.pending), (300, 0));
    assert_eq!(stats.build_progress, None, "loaded, not rebuilt");
    let (hits, _) = m.search_blocking(&unit(16, 42), 1, None).unwrap();
    assert_eq!(hits[0].content, "r42");
}

/// Once its token is cancelled the indexer stops, and rows inserted after that are still
/// found by a search (the exact pass over the queue), so shutdown loses nothing.
#[test]
fn after_cancellation_new_rows_are_still_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 16,
        ..MemoryConfig::default()
    };
    let cancel = CancellationToken::new();
    let db = Database::open(dir.path(), &DbConfig::from(&cfg), cancel.child_token()).unwrap();
    let m = MemoryStore::open(db.clone(), &cfg, cancel.child_token()).unwrap();
    m.start_indexer().unwrap();
    assert!(m.wait_indexed(std::time::Duration::from_secs(60)));
    cancel.cancel();
    let t = std::time::Instant::now();
    m.close_blocking().unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    let key = new_key();
    m.insert_blocking(&[NewRow {
        embedding: unit(16, 7),
        ..row(key, "late")
    }])
    .unwrap();
    assert_eq!(m.pending_len(), 1, "nothing indexes it any more");
    let (hits, path) = m.search_blocking(&unit(16, 7), 1, None).unwrap();
    assert_eq!(path, heady_origin::memory::SearchPath::Hnsw);
    assert_eq!(hits[0].content, "late");
    db.close().unwrap();
}
