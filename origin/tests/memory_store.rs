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
