//! The store directly: a batch is all or nothing even when DuckDB itself refuses a row.

use heady_origin::config::MemoryConfig;
use heady_origin::memory::{new_key, MemoryStore, NewRow};

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
    let m = MemoryStore::open(dir.path(), &cfg).unwrap();
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
    let m = MemoryStore::open(dir.path(), &cfg).unwrap();
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
    let m = MemoryStore::open(dir.path(), &cfg).unwrap();
    m.start_index();
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
    let before = m.wal_bytes();
    assert!(
        before > 1 << 20,
        "the WAL holds the inserts ({before} bytes)"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while m.checkpoints() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(m.checkpoints(), 1);
    assert!(m.wal_bytes() < before / 10, "WAL {} bytes", m.wal_bytes());
    assert_eq!(m.stats_blocking().unwrap().total_vectors, 5000);
    m.close_blocking().unwrap();
}
