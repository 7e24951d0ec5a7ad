//! The account store on both backends, the same test body against each: real DuckDB, and a
//! fresh database on the local PostgreSQL server. Plus PostgreSQL's migrations: run once when
//! origins start together, and migration 4 on a database at 3. Discord links on both.

mod common;

use common::FreshPg;
use heady_origin::accounts::billing::{
    Applied, BillingDecision, BillingEvent, Decide, InvoiceStatus, SubscriptionStatus,
};
use heady_origin::accounts::{
    mint_account_id, well_formed, AccountChange, AccountError, AccountStore, DiscordLink,
    KeyOptions, KeyRefusal, PG_MIGRATIONS,
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
    AccountStore::connect(Some(&pg.target()), None, ttl, None, Duration::from_secs(5))
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
    assert!(!ann.semantic_cache, "the semantic cache is off by default");
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

    // The semantic-cache switch: stored, in the key's cached grant at once, kept by changes
    // that do not name it, and only on the account it was set for.
    assert!(
        !s.lookup(&k.key, now)
            .await
            .unwrap()
            .unwrap()
            .account
            .semantic_cache
    );
    let cache_on = AccountChange {
        semantic_cache: Some(true),
        ..Default::default()
    };
    assert!(
        s.update_account(&ann.id, &cache_on)
            .await
            .unwrap()
            .semantic_cache
    );
    assert_eq!(s.cached(&k.key, now), None, "the change cleared the cache");
    assert!(
        s.lookup(&k.key, now)
            .await
            .unwrap()
            .unwrap()
            .account
            .semantic_cache
    );
    let pro = AccountChange {
        tier: Some(Tier::Pro),
        ..Default::default()
    };
    let kept = s.update_account(&ann.id, &pro).await.unwrap();
    assert!(kept.semantic_cache, "a tier change keeps the switch");
    assert!(s.account(&ann.id).await.unwrap().unwrap().semantic_cache);
    assert!(
        s.account_by_name("ann")
            .await
            .unwrap()
            .unwrap()
            .semantic_cache
    );
    assert!(!s.account(&bob.id).await.unwrap().unwrap().semantic_cache);
    let mut listed: Vec<(String, bool)> = s
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.name, a.semantic_cache))
        .collect();
    listed.sort();
    assert_eq!(listed, [("ann".into(), true), ("bob".into(), false)]);
    s.update_account(&ann.id, &on).await.unwrap();

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

fn event(id: &str, created: i64) -> BillingEvent {
    BillingEvent {
        id: id.into(),
        kind: "customer.subscription.updated".into(),
        created,
    }
}

/// A decision that makes the account Pro with an active subscription, checking it was given
/// the account as stored.
fn make_pro(expect_customer: Option<&'static str>) -> Result<Decide, String> {
    Ok(Box::new(move |a: &heady_origin::accounts::Account| {
        assert_eq!(a.stripe_customer_id.as_deref(), expect_customer);
        let mut after = a.clone();
        after.tier = Tier::Pro;
        after.stripe_subscription_id = Some("sub_1".into());
        after.subscription.status = Some(SubscriptionStatus::Active);
        after.subscription.price = Some("price_pro".into());
        after.subscription.current_period_end = Some(5_000);
        after.subscription.event_at = Some(10);
        BillingDecision::Apply(Box::new(after))
    }))
}

/// Billing state: customers, events applied once, recorded per account, the grace sweep.
async fn billing_behaviour(s: &AccountStore) {
    let now = 2_000;
    let cat = s
        .create_account("cat", Tier::Free, Classification::Internal, now)
        .await
        .unwrap();
    let dan = s
        .create_account("dan", Tier::Free, Classification::Internal, now)
        .await
        .unwrap();
    let key = s
        .create_key(&cat.id, KeyOptions::default(), now)
        .await
        .unwrap();
    assert_eq!(
        s.lookup(&key.key, now).await.unwrap().unwrap().account.tier,
        Tier::Free
    );

    // A customer is attached once; the first one set stays.
    let a = s.attach_customer(&cat.id, "cus_cat").await.unwrap();
    assert_eq!(a.stripe_customer_id.as_deref(), Some("cus_cat"));
    let again = s.attach_customer(&cat.id, "cus_other").await.unwrap();
    assert_eq!(again.stripe_customer_id.as_deref(), Some("cus_cat"));
    assert!(matches!(
        s.attach_customer(&dan.id, "cus_cat").await,
        Err(AccountError::Conflict(_))
    ));
    assert!(matches!(
        s.attach_customer(&mint_account_id(), "cus_x").await,
        Err(AccountError::NotFound(_))
    ));
    assert_eq!(
        s.account_by_customer("cus_cat")
            .await
            .unwrap()
            .map(|a| a.id),
        Some(cat.id.clone())
    );
    assert_eq!(s.account_by_customer("cus_none").await.unwrap(), None);

    // An event applies once: the decision sees the stored account, the change is stored and
    // the cached key lookup dropped, a replay changes nothing.
    assert!(!s.billing_event_seen("evt_1").await.unwrap());
    let r = s
        .apply_billing_event(
            Some(&cat.id),
            &event("evt_1", 10),
            now,
            make_pro(Some("cus_cat")),
        )
        .await
        .unwrap();
    assert!(
        matches!(&r, Applied::Updated { before, after } if before.tier == Tier::Free && after.tier == Tier::Pro)
    );
    assert!(s.billing_event_seen("evt_1").await.unwrap());
    assert_eq!(
        s.cached(&key.key, now),
        None,
        "the change cleared the cache"
    );
    let g = s.lookup(&key.key, now).await.unwrap().unwrap();
    assert_eq!(g.account.tier, Tier::Pro);
    assert_eq!(g.account.stripe_subscription_id.as_deref(), Some("sub_1"));
    assert_eq!(
        g.account.subscription.status,
        Some(SubscriptionStatus::Active)
    );
    assert_eq!(g.account.subscription.current_period_end, Some(5_000));
    assert_eq!(s.account(&cat.id).await.unwrap().unwrap(), g.account);
    let replay = s
        .apply_billing_event(
            Some(&cat.id),
            &event("evt_1", 10),
            now,
            make_pro(Some("cus_cat")),
        )
        .await
        .unwrap();
    assert_eq!(replay, Applied::Duplicate);

    // A skipped event is recorded with its reason; one that names no account too.
    let skip: Result<Decide, String> = Ok(Box::new(|_: &heady_origin::accounts::Account| {
        BillingDecision::Skip("stale: test".into())
    }));
    assert_eq!(
        s.apply_billing_event(Some(&cat.id), &event("evt_2", 5), now + 1, skip)
            .await
            .unwrap(),
        Applied::Skipped("stale: test".into())
    );
    assert_eq!(
        s.apply_billing_event(
            None,
            &event("evt_3", 6),
            now + 2,
            Err("ignored: nobody".into())
        )
        .await
        .unwrap(),
        Applied::Skipped("ignored: nobody".into())
    );
    let missing = mint_account_id();
    assert!(matches!(
        s.apply_billing_event(Some(&missing), &event("evt_4", 7), now + 3, make_pro(None))
            .await
            .unwrap(),
        Applied::Skipped(r) if r.contains("no such account")
    ));
    assert!(s.billing_event_seen("evt_3").await.unwrap());

    // The events are read per account, and only the owner's.
    let rows = s.billing_events(&cat.id).await.unwrap();
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.id.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(got, [("evt_2", "stale: test"), ("evt_1", "applied")]);
    assert_eq!(rows[1].received_at, now);
    assert_eq!(rows[1].kind, "customer.subscription.updated");
    assert!(s.billing_events(&dan.id).await.unwrap().is_empty());

    // An invoice is kept beside the subscription.
    let invoice: Result<Decide, String> = Ok(Box::new(|a: &heady_origin::accounts::Account| {
        let mut after = a.clone();
        after.subscription.invoice_status = Some(InvoiceStatus::PaymentFailed);
        after.subscription.invoice_at = Some(11);
        BillingDecision::Apply(Box::new(after))
    }));
    s.apply_billing_event(Some(&cat.id), &event("evt_5", 11), now, invoice)
        .await
        .unwrap();
    let a = s.account(&cat.id).await.unwrap().unwrap();
    assert_eq!(
        a.subscription.invoice_status,
        Some(InvoiceStatus::PaymentFailed)
    );
    assert_eq!(a.subscription.status, Some(SubscriptionStatus::Active));

    // past_due: the sweep moves an account to Free once its grace (from past_due_since) is
    // over, and only once.
    let past_due: Result<Decide, String> = Ok(Box::new(|a: &heady_origin::accounts::Account| {
        let mut after = a.clone();
        after.subscription.status = Some(SubscriptionStatus::PastDue);
        after.subscription.past_due_since = Some(100);
        BillingDecision::Apply(Box::new(after))
    }));
    s.apply_billing_event(Some(&cat.id), &event("evt_6", 100), now, past_due)
        .await
        .unwrap();
    assert_eq!(
        s.lookup(&key.key, now).await.unwrap().unwrap().account.tier,
        Tier::Pro
    );
    assert!(s.expire_past_due(99).await.unwrap().is_empty());
    let moved = s.expire_past_due(100).await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        (moved[0].id.clone(), moved[0].tier),
        (cat.id.clone(), Tier::Free)
    );
    assert_eq!(s.cached(&key.key, now), None, "the sweep cleared the cache");
    assert_eq!(
        s.lookup(&key.key, now).await.unwrap().unwrap().account.tier,
        Tier::Free
    );
    assert!(s.expire_past_due(1_000).await.unwrap().is_empty());
    assert_eq!(s.account(&dan.id).await.unwrap().unwrap().tier, Tier::Free);
}

/// After `store_behaviour`, on the store opened again: the switch is as it was left.
async fn switch_survives_reopening(s: &AccountStore) {
    let ann = s.account_by_name("ann").await.unwrap().unwrap();
    assert!(ann.semantic_cache, "{ann:?}");
    assert!(
        !s.account_by_name("bob")
            .await
            .unwrap()
            .unwrap()
            .semantic_cache
    );
    let off = AccountChange {
        semantic_cache: Some(false),
        ..Default::default()
    };
    assert!(
        !s.update_account(&ann.id, &off)
            .await
            .unwrap()
            .semantic_cache
    );
    assert!(!s.account(&ann.id).await.unwrap().unwrap().semantic_cache);
}

/// ML-DSA-65 keys: Enterprise only, stored beside bearer keys, found by id with their public
/// key, never by the bearer lookup, judged and cached like bearer keys.
async fn pq_key_behaviour(s: &AccountStore) {
    use heady_shared::http_sig::SigningKey;
    let now = 5_000;
    let (ent, _) = s
        .ensure_account("pq-ent", Tier::Enterprise, Classification::Internal, now)
        .await
        .unwrap();
    let (pro, _) = s
        .ensure_account("pq-pro", Tier::Pro, Classification::Internal, now)
        .await
        .unwrap();
    let key = SigningKey::from_seed([42; 32]);
    let public = key.public_key();
    assert!(matches!(
        s.register_pq_key(&pro.id, public, None, now).await,
        Err(AccountError::UpgradeRequired(_))
    ));
    assert!(matches!(
        s.register_pq_key(&mint_account_id(), public, None, now)
            .await,
        Err(AccountError::NotFound(_))
    ));
    let r = s
        .register_pq_key(&ent.id, public, Some("ci".into()), now)
        .await
        .unwrap();
    assert_eq!(r.id, public.key_id());
    assert_eq!(r.kind, heady_origin::accounts::KeyKind::MlDsa65);
    assert!(matches!(
        s.register_pq_key(&ent.id, public, None, now).await,
        Err(AccountError::Conflict(_))
    ));
    let listed = s.keys(Some(&ent.id)).await.unwrap();
    assert_eq!(listed, vec![r.clone()]);
    assert_eq!(s.pq_cached(&r.id, now).map(|v| v.is_ok()), None);
    let g = s.pq_lookup(&r.id, now).await.unwrap().unwrap();
    assert_eq!(g.public_key.as_bytes(), public.as_bytes());
    assert_eq!(g.grant.account, ent);
    assert_eq!(g.grant.key, r);
    assert!(s.pq_cached(&r.id, now).unwrap().is_ok());
    // Never a bearer key: the hash of the public key is not found by `lookup`'s query, and
    // a bearer key's id is not a signing key.
    let bearer = s
        .create_key(&ent.id, KeyOptions::default(), now)
        .await
        .unwrap();
    assert!(matches!(
        s.pq_lookup(&bearer.record.id, now).await.unwrap(),
        Err(KeyRefusal::Unknown)
    ));
    assert!(matches!(
        s.pq_lookup("not-a-key-id", now).await.unwrap(),
        Err(KeyRefusal::Malformed)
    ));
    // Revocation and a disabled account reach the cached answer.
    s.revoke_key(&r.id, now + 1).await.unwrap();
    assert_eq!(s.pq_cached(&r.id, now + 1).map(|v| v.is_ok()), None);
    assert!(matches!(
        s.pq_lookup(&r.id, now + 1).await.unwrap(),
        Err(KeyRefusal::Revoked)
    ));
    let other = SigningKey::from_seed([43; 32]);
    let r2 = s
        .register_pq_key(&ent.id, other.public_key(), None, now)
        .await
        .unwrap();
    assert!(s.pq_lookup(&r2.id, now).await.unwrap().is_ok());
    let off = AccountChange {
        status: Some(AccountStatus::Disabled),
        ..Default::default()
    };
    s.update_account(&ent.id, &off).await.unwrap();
    assert_eq!(s.pq_cached(&r2.id, now).map(|v| v.is_ok()), None);
    assert!(matches!(
        s.pq_lookup(&r2.id, now).await.unwrap(),
        Err(KeyRefusal::AccountDisabled)
    ));
}

/// Discord links: one account per Discord user and one Discord user per account (a new link
/// replaces both sides' old ones), a disabled account's link does not count, unlinking.
async fn discord_link_behaviour(s: &AccountStore) {
    let a = s
        .create_account("dl-a", Tier::Pro, Classification::Internal, 1)
        .await
        .unwrap();
    let b = s
        .create_account("dl-b", Tier::Free, Classification::Public, 1)
        .await
        .unwrap();
    let link = |user: &str, account: &heady_shared::AccountId| DiscordLink {
        user_id: user.into(),
        username: format!("name{user}"),
        account_id: account.clone(),
        linked_at: 5,
    };
    assert!(s.discord_account("11").await.unwrap().is_none());
    s.link_discord(&link("11", &a.id)).await.unwrap();
    let (l, acct) = s.discord_account("11").await.unwrap().unwrap();
    assert_eq!(
        (l.username.as_str(), acct.id.clone()),
        ("name11", a.id.clone())
    );
    assert_eq!(
        s.discord_link_of(&a.id).await.unwrap().unwrap().user_id,
        "11"
    );
    // The same user to another account moves; another user to that account replaces.
    s.link_discord(&link("11", &b.id)).await.unwrap();
    assert_eq!(s.discord_account("11").await.unwrap().unwrap().1.id, b.id);
    assert!(s.discord_link_of(&a.id).await.unwrap().is_none());
    s.link_discord(&link("12", &b.id)).await.unwrap();
    assert!(s.discord_account("11").await.unwrap().is_none());
    assert_eq!(s.discord_account("12").await.unwrap().unwrap().1.id, b.id);
    // An unknown account cannot be linked.
    let ghost = link("13", &mint_account_id());
    assert!(matches!(
        s.link_discord(&ghost).await,
        Err(AccountError::NotFound(_))
    ));
    // Disabled: the link is kept but does not count.
    let off = AccountChange {
        status: Some(AccountStatus::Disabled),
        ..Default::default()
    };
    s.update_account(&b.id, &off).await.unwrap();
    assert!(s.discord_account("12").await.unwrap().is_none());
    assert!(s.discord_link_of(&b.id).await.unwrap().is_some());
    assert!(s.unlink_discord(&b.id).await.unwrap());
    assert!(!s.unlink_discord(&b.id).await.unwrap());
    assert!(s.discord_link_of(&b.id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn duckdb_backend() {
    let dir = tempfile::tempdir().unwrap();
    let s = duck_store(&dir, Duration::from_secs(60)).await;
    assert_eq!(s.backend_name(), "duckdb");
    store_behaviour(&s).await;
    billing_behaviour(&s).await;
    pq_key_behaviour(&s).await;
    discord_link_behaviour(&s).await;
    drop(s);
    let s = duck_store(&dir, Duration::from_secs(60)).await;
    switch_survives_reopening(&s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_backend() {
    let pg = FreshPg::create().await;
    let s = pg_store(&pg, Duration::from_secs(60)).await;
    assert_eq!(s.backend_name(), "postgres");
    store_behaviour(&s).await;
    billing_behaviour(&s).await;
    pq_key_behaviour(&s).await;
    discord_link_behaviour(&s).await;
    drop(s);
    let s = pg_store(&pg, Duration::from_secs(60)).await;
    switch_survives_reopening(&s).await;
    drop(s);
}

/// One SQL statement on the test database, straight through a connection of its own.
async fn pg_exec(pg: &FreshPg, sql: &str) -> Vec<tokio_postgres::Row> {
    common::pg_query(&pg.name, sql).await
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_migration_4_adds_the_switch_to_a_database_at_migration_3() {
    let pg = FreshPg::create().await;
    // The database as an origin of migration 3 left it, with an account in it.
    pg_exec(
        &pg,
        "CREATE TABLE schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await;
    for (version, sql) in PG_MIGRATIONS.iter().filter(|(v, _)| *v <= 3) {
        let (c, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(conn);
        c.batch_execute(sql).await.unwrap();
        c.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .unwrap();
        drop(c);
        let _ = task.await;
    }
    let id = mint_account_id();
    pg_exec(
        &pg,
        &format!(
            "INSERT INTO accounts (id, name, tier, clearance, status, created_at)
             VALUES ('{}', 'old', '{}', '{}', '{}', 5)",
            id.as_str(),
            Tier::Pro.as_str(),
            Classification::Internal.as_str(),
            AccountStatus::Active.as_str()
        ),
    )
    .await;
    let latest = PG_MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap();
    assert!(latest >= 4, "this test is about migration 4");

    // Opening the store applies 4 and what came after it; the old account reads as off.
    let s = pg_store(&pg, Duration::from_secs(60)).await;
    let versions: Vec<i32> = pg_exec(
        &pg,
        "SELECT version FROM schema_migrations ORDER BY version",
    )
    .await
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(versions, (1..=latest).collect::<Vec<_>>());
    let column = pg_exec(
        &pg,
        "SELECT data_type, is_nullable, column_default FROM information_schema.columns
         WHERE table_name = 'accounts' AND column_name = 'semantic_cache'",
    )
    .await;
    assert_eq!(column.len(), 1);
    assert_eq!(
        (
            column[0].get::<_, String>(0),
            column[0].get::<_, String>(1),
            column[0].get::<_, Option<String>>(2)
        ),
        ("boolean".into(), "NO".into(), Some("false".into()))
    );
    let old = s.account(&id).await.unwrap().unwrap();
    assert_eq!((old.name.as_str(), old.tier), ("old", Tier::Pro));
    assert!(!old.semantic_cache);
    assert!(
        s.migrate().await.unwrap().is_empty(),
        "nothing left to apply"
    );
    let on = AccountChange {
        semantic_cache: Some(true),
        ..Default::default()
    };
    assert!(s.update_account(&id, &on).await.unwrap().semantic_cache);
    drop(s);
    let s = pg_store(&pg, Duration::from_secs(60)).await;
    assert!(s.account(&id).await.unwrap().unwrap().semantic_cache);
    drop(s);
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_migrations_run_once_even_when_origins_start_together() {
    let pg = FreshPg::create().await;
    let target = pg.target();
    let starts = (0..4).map(|_| {
        let target = target.clone();
        tokio::spawn(async move {
            AccountStore::connect(
                Some(&target),
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
        Some(&heady_origin::pg::PgTarget::from_url(&url).unwrap()),
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
