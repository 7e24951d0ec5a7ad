//! The store directly: a batch is all or nothing even when DuckDB itself refuses a row; every
//! operation is scoped to one owner; old databases migrate; retention and quotas; the index
//! file survives a crash mid-save.

use heady_origin::config::MemoryConfig;
use heady_origin::db::{Database, DbConfig};
use heady_origin::memory::{new_key, Doomed, MemoryStore, NewRow, Scope, SearchPath};
use heady_shared::{AccountId, Tier};
use tokio_util::sync::CancellationToken;

/// The legacy account's id (the app's account store supplies it; any id does here).
fn legacy() -> AccountId {
    AccountId::from_random([0x4c; 15])
}

/// Account `n`'s id (`acct_aaa...a<n>`).
fn acct(n: u8) -> AccountId {
    AccountId::from_random([n; 15])
}

fn owner() -> AccountId {
    acct(1)
}

/// A database in `dir` and the memory store over it.
fn open(dir: &std::path::Path, cfg: &MemoryConfig) -> (Database, MemoryStore) {
    let cancel = CancellationToken::new();
    let db = Database::open(dir, &DbConfig::from(cfg), cancel.child_token()).unwrap();
    let m = MemoryStore::open(db.clone(), cfg, Some(&legacy()), cancel.child_token()).unwrap();
    (db, m)
}

fn row(key: u64, content: &str) -> NewRow {
    NewRow {
        owner: owner(),
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
    m.insert_blocking(&[row(first, "first")], None).unwrap();
    let batch: Vec<NewRow> = (0..50)
        .map(|i| row(new_key(), &format!("new {i}")))
        .chain([row(first, "dup")])
        .collect();
    assert!(
        m.insert_blocking(&batch, None).is_err(),
        "the duplicate id is refused"
    );
    assert_eq!(m.len(), 1);
    let stats = m.stats_blocking(&owner()).unwrap();
    assert_eq!(
        stats.total_vectors, 1,
        "none of the 50 valid rows was stored"
    );
    let hits = m
        .exact_search_blocking(&Scope::Owner(&owner()), &[0.5, 0.25, 0.125, 1.0], 10, None)
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
    m.insert_blocking(&[row(existing, "existing")], None)
        .unwrap();
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
                        out.push((batch.len(), m.insert_blocking(&batch, None).is_ok()));
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
        m.stats_blocking(&owner()).unwrap().total_vectors as usize,
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
        m.insert_blocking(&batch, None).unwrap();
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
    assert_eq!(m.stats_blocking(&owner()).unwrap().total_vectors, 5000);
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
        exact_below: 0,
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
    m.insert_blocking(&batch, None).unwrap();
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
    let (hits, _) = m
        .search_blocking(&Scope::Owner(&owner()), &unit(16, 42), 1, None)
        .unwrap();
    assert_eq!(hits[0].content, "r42");
}

/// Once its token is cancelled the indexer stops, and rows inserted after that are still
/// found by a search (the exact pass over the queue), so shutdown loses nothing.
#[test]
fn after_cancellation_new_rows_are_still_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 16,
        exact_below: 0,
        ..MemoryConfig::default()
    };
    let cancel = CancellationToken::new();
    let db = Database::open(dir.path(), &DbConfig::from(&cfg), cancel.child_token()).unwrap();
    let m = MemoryStore::open(db.clone(), &cfg, Some(&legacy()), cancel.child_token()).unwrap();
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
    m.insert_blocking(
        &[NewRow {
            embedding: unit(16, 7),
            ..row(key, "late")
        }],
        None,
    )
    .unwrap();
    assert_eq!(m.pending_len(), 1, "nothing indexes it any more");
    let (hits, path) = m
        .search_blocking(&Scope::Owner(&owner()), &unit(16, 7), 1, None)
        .unwrap();
    assert_eq!(path, SearchPath::Hnsw);
    assert_eq!(hits[0].content, "late");
    db.close().unwrap();
}

/// `n` rows of `owner` in session `s1`, each `unit(16, i)`, content "<tag> i".
fn rows_of(owner: &AccountId, tag: &str, n: usize) -> Vec<NewRow> {
    (0..n)
        .map(|i| NewRow {
            owner: owner.clone(),
            embedding: unit(16, i),
            session_id: Some("s1".into()),
            ..row(new_key(), &format!("{tag} {i}"))
        })
        .collect()
}

fn contents(hits: &[heady_origin::memory::SearchHit]) -> Vec<String> {
    hits.iter().map(|h| h.content.clone()).collect()
}

/// How the searches of the scoping test are answered.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Served {
    /// Owners below `memory.exact_below`: exact scans in DuckDB.
    Exact,
    /// The HNSW graph filtered to the owner.
    Graph,
    /// The graph is ready but the indexer has stopped: the rows stay queued.
    Queued,
}

/// Two owners store the same vectors under the same session id: neither ever sees, counts
/// or deletes the other's rows, whichever way a search is served.
fn two_owners_never_meet(served: Served) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 16,
        exact_below: if served == Served::Exact { 1_000 } else { 0 },
        ..MemoryConfig::default()
    };
    let cancel = CancellationToken::new();
    let db = Database::open(dir.path(), &DbConfig::from(&cfg), cancel.child_token()).unwrap();
    let m = MemoryStore::open(db.clone(), &cfg, Some(&legacy()), cancel.child_token()).unwrap();
    if served != Served::Exact {
        m.start_indexer().unwrap();
        assert!(m.wait_indexed(std::time::Duration::from_secs(60)));
    }
    if served == Served::Queued {
        cancel.cancel();
        m.close_blocking().unwrap();
    }
    let (a, b) = (acct(1), acct(2));
    let rows_a = rows_of(&a, "A", 60);
    let ids_a: Vec<String> = rows_a
        .iter()
        .map(|r| heady_origin::memory::id_of(r.key))
        .collect();
    m.insert_blocking(&rows_a, None).unwrap();
    m.insert_blocking(&rows_of(&b, "B", 40), None).unwrap();
    if served == Served::Graph {
        assert!(m.wait_indexed(std::time::Duration::from_secs(60)));
    }
    if served == Served::Queued {
        assert_eq!(m.pending_len(), 100);
    }
    let want_path = if served == Served::Exact {
        SearchPath::Exact
    } else {
        SearchPath::Hnsw
    };
    for (who, tag, n) in [(&a, "A ", 60), (&b, "B ", 40)] {
        let (hits, path) = m
            .search_blocking(&Scope::Owner(who), &unit(16, 3), 100, None)
            .unwrap();
        // Asking for every row of an owner: a graph walk that misses some hands over to the
        // exact scan, so the answer is whole either way.
        assert!(path == want_path || path == SearchPath::Exact, "{served:?}");
        assert_eq!(hits.len(), n, "{served:?}: {:?}", contents(&hits));
        assert!(
            hits.iter().all(|h| h.content.starts_with(tag)),
            "{served:?}"
        );
        assert_eq!(hits[0].content, format!("{tag}3"));
        assert!(hits.iter().all(|h| h.owner.is_none()), "owners stay hidden");
        let (top, path) = m
            .search_blocking(&Scope::Owner(who), &unit(16, 3), 5, None)
            .unwrap();
        assert_eq!(path, want_path, "{served:?}: a few of an owner's rows");
        assert_eq!(top.len(), 5);
        assert!(top.iter().all(|h| h.content.starts_with(tag)), "{served:?}");
        let (hits, _) = m
            .search_blocking(&Scope::Owner(who), &unit(16, 3), 100, Some("s1"))
            .unwrap();
        assert_eq!(hits.len(), n);
        assert!(hits.iter().all(|h| h.content.starts_with(tag)));
        let stats = m.stats_blocking(who).unwrap();
        assert_eq!((stats.total_vectors, stats.sessions), (n as u64, 1));
        let sessions = m.sessions_blocking(who).unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(
            (sessions[0].session_id.as_str(), sessions[0].rows),
            ("s1", n as u64)
        );
        assert_eq!(m.owner_rows(who), n as u64);
    }
    // An operator's explicit search across owners sees both, and whose each row is.
    let (all, _) = m
        .search_blocking(&Scope::AllOwners, &unit(16, 3), 2, None)
        .unwrap();
    let mut owners: Vec<String> = all.iter().map(|h| h.owner.clone().unwrap()).collect();
    owners.sort();
    assert_eq!(owners, vec![a.to_string(), b.to_string()], "{served:?}");
    // B cannot delete A's rows, by id or by session.
    assert_eq!(m.delete_blocking(&b, Doomed::Ids(&ids_a[..5])).unwrap(), 0);
    assert_eq!(m.owner_rows(&a), 60);
    // A deletes its session s1: gone from search at once, B's s1 untouched.
    assert_eq!(m.delete_blocking(&a, Doomed::Session("s1")).unwrap(), 60);
    let (hits, _) = m
        .search_blocking(&Scope::Owner(&a), &unit(16, 3), 100, None)
        .unwrap();
    assert!(hits.is_empty(), "{served:?}: {:?}", contents(&hits));
    let (all, _) = m
        .search_blocking(&Scope::AllOwners, &unit(16, 3), 100, None)
        .unwrap();
    assert_eq!(all.len(), 40, "{served:?}");
    assert!(all.iter().all(|h| h.content.starts_with("B ")));
    assert_eq!(m.stats_blocking(&a).unwrap().total_vectors, 0);
    assert_eq!(m.stats_blocking(&b).unwrap().total_vectors, 40);
    assert!(m.sessions_blocking(&a).unwrap().is_empty());
    // And B deletes everything it has.
    assert_eq!(m.delete_blocking(&b, Doomed::All).unwrap(), 40);
    assert_eq!(m.len(), 0);
    let (hits, _) = m
        .search_blocking(&Scope::Owner(&b), &unit(16, 3), 100, None)
        .unwrap();
    assert!(hits.is_empty());
    m.close_blocking().unwrap();
    db.close().unwrap();
}

#[test]
fn owners_never_meet_in_exact_scans() {
    two_owners_never_meet(Served::Exact);
}

#[test]
fn owners_never_meet_in_the_graph() {
    two_owners_never_meet(Served::Graph);
}

#[test]
fn owners_never_meet_among_queued_rows() {
    two_owners_never_meet(Served::Queued);
}

/// A database made before rows had owners gains the column on open, and its rows go to the
/// legacy account.
#[test]
fn rows_without_an_owner_migrate_to_the_legacy_account() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 4,
        ..MemoryConfig::default()
    };
    let cancel = CancellationToken::new();
    let db = Database::open(dir.path(), &DbConfig::from(&cfg), cancel.child_token()).unwrap();
    db.with_writer(|c| {
        c.execute_batch(
            "CREATE TABLE conversation_vectors (
                id VARCHAR PRIMARY KEY, ts BIGINT NOT NULL, role VARCHAR NOT NULL DEFAULT 'user',
                content TEXT NOT NULL, embedding FLOAT[4], token_count INTEGER DEFAULT 0,
                session_id VARCHAR, metadata JSON);
             INSERT INTO conversation_vectors VALUES
                ('00000000000000a1', 1, 'user', 'old one', [1, 0, 0, 0]::FLOAT[4], 0, 's1', NULL),
                ('00000000000000a3', 2, 'assistant', 'old two', [0, 1, 0, 0]::FLOAT[4], 0, 's1', NULL);",
        )
        .map_err(heady_origin::db::DbError::from)
    })
    .unwrap();
    let m = MemoryStore::open(db.clone(), &cfg, Some(&legacy()), cancel.child_token()).unwrap();
    assert_eq!(m.owner_rows(&legacy()), 2);
    assert_eq!(m.stats_blocking(&legacy()).unwrap().total_vectors, 2);
    let (hits, _) = m
        .search_blocking(&Scope::Owner(&legacy()), &[1.0, 0.0, 0.0, 0.0], 5, None)
        .unwrap();
    assert_eq!(contents(&hits), vec!["old one", "old two"]);
    assert_eq!(m.stats_blocking(&owner()).unwrap().total_vectors, 0);
    // New rows keep their owner next to the migrated ones.
    m.insert_blocking(&[row(new_key(), "new")], None).unwrap();
    assert_eq!(m.stats_blocking(&owner()).unwrap().total_vectors, 1);
    let nulls: i64 = db
        .with_reader(|c| {
            c.query_row(
                "SELECT count(*) FROM conversation_vectors WHERE owner IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(heady_origin::db::DbError::from)
        })
        .unwrap();
    assert_eq!(nulls, 0);
    drop(m);
    // Opening again migrates nothing more and keeps the owners.
    let m = MemoryStore::open(db.clone(), &cfg, Some(&legacy()), cancel.child_token()).unwrap();
    assert_eq!((m.owner_rows(&legacy()), m.owner_rows(&owner())), (2, 1));
}

/// The sweeper deletes each owner's rows past its tier's retention, and keeps the rows of an
/// owner whose tier it does not know.
#[test]
fn retention_deletes_rows_past_the_owners_tier() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 4,
        ..MemoryConfig::default()
    };
    let (_db, m) = open(dir.path(), &cfg);
    let day = 86_400_000i64;
    let now = 1_000 * day;
    let aged = |who: &AccountId, days: i64| NewRow {
        owner: who.clone(),
        ts: now - days * day,
        ..row(new_key(), &format!("{days} days"))
    };
    let (free, pro, unknown) = (acct(1), acct(2), acct(3));
    for who in [&free, &pro, &unknown] {
        m.insert_blocking(&[aged(who, 1), aged(who, 40), aged(who, 400)], None)
            .unwrap();
    }
    let tier_of = |a: &AccountId| {
        if *a == free {
            Some(Tier::Free)
        } else if *a == pro {
            Some(Tier::Pro)
        } else {
            None
        }
    };
    let deleted = m
        .sweep_blocking(now, &cfg.retention_days, &tier_of)
        .unwrap();
    assert_eq!(deleted, 3, "Free: 40 and 400 days; Pro: 400 days");
    let left = |who: &AccountId| {
        let (hits, _) = m
            .search_blocking(&Scope::Owner(who), &[0.5, 0.25, 0.125, 1.0], 10, None)
            .unwrap();
        let mut c = contents(&hits);
        c.sort();
        c
    };
    assert_eq!(left(&free), vec!["1 days"]);
    assert_eq!(left(&pro), vec!["1 days", "40 days"]);
    assert_eq!(left(&unknown).len(), 3);
    assert_eq!(m.owner_rows(&free), 1);
    assert_eq!(
        m.sweep_blocking(now, &cfg.retention_days, &tier_of)
            .unwrap(),
        0
    );
}

/// Past the quota a whole batch is refused and nothing is written; other owners are not
/// affected, and deleting rows makes room again.
#[test]
fn an_insert_past_the_quota_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 4,
        ..MemoryConfig::default()
    };
    let (_db, m) = open(dir.path(), &cfg);
    let batch = |who: &AccountId, n: usize| -> Vec<NewRow> {
        (0..n)
            .map(|i| NewRow {
                owner: who.clone(),
                session_id: Some(format!("s{i}")),
                ..row(new_key(), "x")
            })
            .collect()
    };
    m.insert_blocking(&batch(&acct(1), 5), Some(6)).unwrap();
    let e = m.insert_blocking(&batch(&acct(1), 2), Some(6)).unwrap_err();
    assert!(
        matches!(
            e,
            heady_origin::memory::MemoryError::Quota {
                have: 5,
                adding: 2,
                limit: 6
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("quota of 6 rows"), "{e}");
    assert_eq!(m.stats_blocking(&acct(1)).unwrap().total_vectors, 5);
    assert_eq!(m.owner_rows(&acct(1)), 5);
    m.insert_blocking(&batch(&acct(2), 6), Some(6)).unwrap();
    m.insert_blocking(&batch(&acct(1), 1), Some(6)).unwrap();
    assert_eq!(
        m.delete_blocking(&acct(1), Doomed::Session("s0")).unwrap(),
        2
    );
    m.insert_blocking(&batch(&acct(1), 2), Some(6)).unwrap();
    assert_eq!(m.stats_blocking(&acct(1)).unwrap().total_vectors, 6);
}

/// A crash mid-save leaves either a stray temporary file (the old index still loads) or, had
/// the file been written in place, a truncated one (refused, and rebuilt from DuckDB).
#[test]
fn a_crash_mid_save_leaves_a_loadable_or_rebuildable_index() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 16,
        exact_below: 0,
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
    m.insert_blocking(&batch, None).unwrap();
    assert!(m.wait_indexed(std::time::Duration::from_secs(60)));
    m.close_blocking().unwrap();
    db.close().unwrap();
    drop((m, db));
    let file = dir.path().join("hnsw.usearch");
    let tmp = dir.path().join("hnsw.usearch.tmp");
    assert!(file.exists() && !tmp.exists(), "saved by rename");

    // A save that died before its rename: half a temporary file beside the old index.
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&tmp, &whole[..whole.len() / 2]).unwrap();
    let (db, m) = open(dir.path(), &cfg);
    m.start_indexer().unwrap();
    assert!(m.wait_indexed(std::time::Duration::from_secs(60)));
    let stats = m.index_stats();
    assert_eq!((stats.size, stats.build_progress), (300, None), "loaded");
    m.close_blocking().unwrap();
    assert!(!tmp.exists(), "the next save replaced it");
    db.close().unwrap();
    drop((m, db));

    // A torn index file: refused, and the graph is rebuilt from the table.
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&file, &whole[..whole.len() / 3]).unwrap();
    let (_db, m) = open(dir.path(), &cfg);
    m.start_indexer().unwrap();
    assert!(m.wait_indexed(std::time::Duration::from_secs(60)));
    assert_eq!(m.index_stats().size, 300, "rebuilt");
    let (hits, path) = m
        .search_blocking(&Scope::Owner(&owner()), &unit(16, 42), 1, None)
        .unwrap();
    assert_eq!((path, hits[0].content.as_str()), (SearchPath::Hnsw, "r42"));
}

/// When the index cannot be loaded, searches use exact scans and inserts queue nothing: the
/// queue does not grow without bound.
#[test]
fn a_failed_index_load_queues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MemoryConfig {
        dim: 16,
        exact_below: 0,
        ..MemoryConfig::default()
    };
    let (db, m) = open(dir.path(), &cfg);
    // The load's scan of the table fails: the table is away while the indexer starts.
    let sql = |q: &str| {
        db.with_writer(|c| c.execute_batch(q).map_err(heady_origin::db::DbError::from))
            .unwrap()
    };
    sql("DROP INDEX idx_conversation_vectors_ts; ALTER TABLE conversation_vectors RENAME TO away");
    m.start_indexer().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while m.index_stats().state != "failed" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(m.index_stats().state, "failed");
    sql("ALTER TABLE away RENAME TO conversation_vectors");
    for b in 0..20 {
        let batch: Vec<NewRow> = (0..100)
            .map(|i| NewRow {
                embedding: unit(16, b * 100 + i),
                ..row(new_key(), &format!("r{}", b * 100 + i))
            })
            .collect();
        m.insert_blocking(&batch, None).unwrap();
    }
    assert_eq!(
        m.pending_len(),
        0,
        "nothing waits for a graph that will not come"
    );
    let (hits, path) = m
        .search_blocking(&Scope::Owner(&owner()), &unit(16, 1234), 1, None)
        .unwrap();
    assert_eq!(
        (path, hits[0].content.as_str()),
        (SearchPath::Exact, "r1234")
    );
}
