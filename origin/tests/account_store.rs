//! The account store on both backends, the same test body against each: real DuckDB, and a
//! fresh database on the local PostgreSQL server.

mod common;

use common::FreshPg;
use heady_origin::accounts::{
    mint_account_id, well_formed, AccountChange, AccountError, AccountStore, KeyOptions, KeyRefusal,
};
use heady_origin::config::DatabaseUrl;
use heady_origin::db::Database;
use heady_shared::{AccountStatus, Classification, Tier};
use std::time::Duration;

async fn duck_store(dir: &tempfile::TempDir, ttl: Duration) -> AccountStore {
    let cfg =
        heady_origin::db::DbConfig::from(&heady_origin::memory::config::MemoryConfig::default());
    let db = Database::open(dir.path(), &cfg, Default::default()).unwrap();
    AccountStore::connect(None, Some(db), ttl, None, Duration::from_secs(5))
        .await
        .unwrap()
}

async fn pg_store(pg: &FreshPg, ttl: Duration) -> AccountStore {
    AccountStore::connect(
        Some(&pg.database_url()),
        None,
        ttl,
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

/// The behaviour both backends must share.
async fn store_behaviour(s: &AccountStore) {
    let now = 1_000;
    let ann = s
        .create_account("ann", Tier::Pro, Classification::Internal, now)
        .await
        .unwrap();
    assert!(matches!(
        s.create_account("ann", Tier::Free, Classification::Public, now)
            .await,
        Err(AccountError::Conflict(_))
    ));
    for bad in ["", "a b", "x{y}"] {
        assert!(matches!(
            s.create_account(bad, Tier::Free, Classification::Public, now)
                .await,
            Err(AccountError::Invalid { field: "name", .. })
        ));
    }
    let (same, created) = s
        .ensure_account("ann", Tier::Free, Classification::Public, now)
        .await
        .unwrap();
    assert_eq!((same.id.clone(), created), (ann.id.clone(), false));
    assert_eq!(same.tier, Tier::Pro, "an existing account keeps its tier");
    let (bob, created) = s
        .ensure_account("bob", Tier::Free, Classification::Public, now)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(s.accounts().await.unwrap().len(), 2);
    assert_eq!(s.account(&ann.id).await.unwrap(), Some(ann.clone()));

    // Keys: only the hash is stored; lookups judge revocation, expiry and status.
    let k = s
        .create_key(
            &ann.id,
            KeyOptions {
                label: Some("laptop".into()),
                expires_at: Some(now + 100),
                models: Some(vec!["m1".into(), "m2".into()]),
            },
            now,
        )
        .await
        .unwrap();
    assert!(well_formed(&k.key));
    let g = s.lookup(&k.key, now).await.unwrap().unwrap();
    assert_eq!(g.account, ann);
    assert_eq!(
        g.key.models.as_deref(),
        Some(&["m1".to_string(), "m2".to_string()][..])
    );
    assert_eq!(g.key.label.as_deref(), Some("laptop"));
    assert_eq!(s.cached(&k.key, now), Some(Ok(g.clone())));
    assert_eq!(s.cached(&k.key, now + 100), Some(Err(KeyRefusal::Expired)));
    assert_eq!(
        s.lookup(&k.key, now + 100).await.unwrap(),
        Err(KeyRefusal::Expired)
    );
    let listed = s.keys(Some(&ann.id)).await.unwrap();
    assert_eq!(listed, vec![g.key.clone()]);
    assert!(s.keys(Some(&bob.id)).await.unwrap().is_empty());
    assert!(
        !format!("{listed:?}").contains(&k.key),
        "no secret in a listing"
    );

    // A disabled account's keys are refused; the change drops the cached answer.
    let off = AccountChange {
        status: Some(AccountStatus::Disabled),
        ..Default::default()
    };
    let changed = s.update_account(&ann.id, &off).await.unwrap();
    assert_eq!(changed.status, AccountStatus::Disabled);
    assert_eq!(s.cached(&k.key, now), None, "the change cleared the cache");
    assert_eq!(
        s.lookup(&k.key, now).await.unwrap(),
        Err(KeyRefusal::AccountDisabled)
    );
    let on = AccountChange {
        status: Some(AccountStatus::Active),
        tier: Some(Tier::Enterprise),
        ..Default::default()
    };
    assert_eq!(
        s.update_account(&ann.id, &on).await.unwrap().tier,
        Tier::Enterprise
    );
    assert!(matches!(
        s.update_account(&mint_account_id(), &on).await,
        Err(AccountError::NotFound(_))
    ));
    assert!(matches!(
        s.update_account(&ann.id, &AccountChange::default()).await,
        Err(AccountError::Invalid { .. })
    ));

    // Revocation wins over everything; revoking twice keeps the first time.
    let r = s.revoke_key(&g.key.id, now + 5).await.unwrap();
    assert_eq!(r.revoked_at, Some(now + 5));
    assert_eq!(
        s.lookup(&k.key, now).await.unwrap(),
        Err(KeyRefusal::Revoked)
    );
    assert_eq!(
        s.revoke_key(&g.key.id, now + 9).await.unwrap().revoked_at,
        Some(now + 5)
    );
    assert!(matches!(
        s.revoke_key("0000000000000000", now).await,
        Err(AccountError::NotFound(_))
    ));

    // Bad keys and bad options.
    let unknown = format!("hk_{}", "a".repeat(64));
    assert_eq!(
        s.lookup(&unknown, now).await.unwrap(),
        Err(KeyRefusal::Unknown)
    );
    assert_eq!(s.cached(&unknown, now), Some(Err(KeyRefusal::Unknown)));
    assert_eq!(
        s.lookup("hk_nothex", now).await.unwrap(),
        Err(KeyRefusal::Malformed)
    );
    // A key stored after a miss was cached is found at once.
    let added = s
        .add_key(&unknown, &bob.id, KeyOptions::default(), now)
        .await
        .unwrap();
    assert_eq!(s.cached(&unknown, now), None);
    assert_eq!(
        s.lookup(&unknown, now).await.unwrap().unwrap().key,
        added.record
    );
    assert!(matches!(
        s.add_key(&unknown, &bob.id, KeyOptions::default(), now)
            .await,
        Err(AccountError::Conflict(_))
    ));
    assert!(matches!(
        s.create_key(&mint_account_id(), KeyOptions::default(), now)
            .await,
        Err(AccountError::NotFound(_))
    ));
    for (opts, field) in [
        (
            KeyOptions {
                models: Some(vec!["a b".into()]),
                ..Default::default()
            },
            "models",
        ),
        (
            KeyOptions {
                expires_at: Some(now),
                ..Default::default()
            },
            "expires",
        ),
        (
            KeyOptions {
                label: Some("x\u{7}".into()),
                ..Default::default()
            },
            "label",
        ),
    ] {
        match s.create_key(&bob.id, opts, now).await {
            Err(AccountError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(
        s.keys(None).await.unwrap().len(),
        2,
        "nothing partial was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duckdb_backend() {
    let dir = tempfile::tempdir().unwrap();
    let s = duck_store(&dir, Duration::from_secs(60)).await;
    assert_eq!(s.backend_name(), "duckdb");
    store_behaviour(&s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_backend() {
    let pg = FreshPg::create().await;
    let s = pg_store(&pg, Duration::from_secs(60)).await;
    assert_eq!(s.backend_name(), "postgres");
    store_behaviour(&s).await;
    drop(s);
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_migrations_run_once_even_when_origins_start_together() {
    let pg = FreshPg::create().await;
    let url = pg.database_url();
    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            AccountStore::connect(
                Some(&url),
                None,
                Duration::from_secs(5),
                None,
                Duration::from_secs(10),
            )
            .await
            .unwrap()
        })
    });
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap());
    }
    // Every migration is recorded once, and a later start applies nothing.
    assert!(stores[0].migrate().await.unwrap().is_empty());
    let a = stores[0]
        .create_account("shared", Tier::Free, Classification::Public, 1)
        .await
        .unwrap();
    assert_eq!(stores[3].account(&a.id).await.unwrap(), Some(a));
    drop(stores);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_database_url_is_a_clear_error() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = DatabaseUrl::parse(&format!("postgres://u:hunter2@127.0.0.1:{port}/x")).unwrap();
    let e = AccountStore::connect(
        Some(&url),
        None,
        Duration::from_secs(1),
        None,
        Duration::from_secs(1),
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(e.starts_with("account store: database_url"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}
