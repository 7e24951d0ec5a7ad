//! The shared backend: PostgreSQL, for several origins (`database_url`).
//!
//! Schema changes are numbered migrations ([`MIGRATIONS`]) recorded in `schema_migrations`;
//! each runs once, in its own transaction, while the migrating origin holds an advisory lock,
//! so origins starting together apply each exactly once.

use super::billing::{
    subscription_of, Applied, BillingDecision, BillingEvent, BillingEventRecord, Decide,
    SUBSCRIPTION_COLS,
};
use super::KeyRecord;
use super::{
    account_of, join_models, key_of, Account, AccountChange, AccountError, DiscordLink, Grant,
    PqGrant,
};
use crate::pg::PgTarget;
use deadpool_postgres::Pool;
use heady_shared::AccountId;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

/// Advisory lock id held while migrating ("heady" in ASCII).
const MIGRATION_LOCK: i64 = 0x68_65_61_64_79;

/// (version, SQL). Append only: a released migration never changes.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        tier TEXT NOT NULL,
        clearance TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        stripe_customer_id TEXT,
        stripe_subscription_id TEXT
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        label TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        models TEXT,
        revoked_at BIGINT
    );
    CREATE INDEX api_keys_by_account ON api_keys (account_id);",
    ),
    // Billing: the subscription's state on the account, and the processed Stripe events.
    (
        2,
        "ALTER TABLE accounts
        ADD COLUMN subscription_status TEXT,
        ADD COLUMN subscription_price TEXT,
        ADD COLUMN current_period_end BIGINT,
        ADD COLUMN past_due_since BIGINT,
        ADD COLUMN billing_event_at BIGINT,
        ADD COLUMN invoice_status TEXT,
        ADD COLUMN invoice_at BIGINT;
    CREATE UNIQUE INDEX accounts_by_stripe_customer ON accounts (stripe_customer_id)
        WHERE stripe_customer_id IS NOT NULL;
    CREATE INDEX accounts_past_due ON accounts (past_due_since)
        WHERE subscription_status = 'past_due';
    CREATE TABLE billing_events (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        account_id TEXT REFERENCES accounts (id),
        created BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        outcome TEXT NOT NULL
    );
    CREATE INDEX billing_events_by_account ON billing_events (account_id, created);",
    ),
    // PQC API keys: an ML-DSA-65 public key (base64) on a key row; its id is what a signed
    // request names.
    (3, "ALTER TABLE api_keys ADD COLUMN public_key TEXT;"),
    // The semantic-cache switch: an operator's opt-in per account, off for every existing one.
    (
        4,
        "ALTER TABLE accounts ADD COLUMN semantic_cache BOOLEAN NOT NULL DEFAULT false;",
    ),
    // Discord: which Discord user acts for which account (one each way).
    (
        5,
        "CREATE TABLE discord_links (
        user_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL UNIQUE REFERENCES accounts (id),
        username TEXT NOT NULL,
        linked_at BIGINT NOT NULL
    );",
    ),
];

/// The account's own columns, then the subscription's ([`SUBSCRIPTION_COLS`]), then the
/// switches ([`SWITCH_COLS`]).
const BASE_COLS: &str =
    "id, name, tier, clearance, status, created_at, stripe_customer_id, stripe_subscription_id";
/// Added by migration 4.
const SWITCH_COLS: &str = "semantic_cache";

fn account_cols() -> String {
    format!("{BASE_COLS}, {SUBSCRIPTION_COLS}, {SWITCH_COLS}")
}

fn account_cols_of_a() -> String {
    account_cols()
        .split(", ")
        .map(|c| format!("a.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
const KEY_COLS: &str = "id, account_id, label, created_at, expires_at, models, revoked_at";
/// What [`key_row`] reads: [`KEY_COLS`] and whether the key is an ML-DSA-65 public key.
const KEY_SELECT: &str =
    "id, account_id, label, created_at, expires_at, models, revoked_at, public_key IS NOT NULL";
/// [`KEY_SELECT`] of the table aliased `k`.
const KEY_SELECT_K: &str = "k.id, k.account_id, k.label, k.created_at, k.expires_at, k.models, k.revoked_at, k.public_key IS NOT NULL";

pub struct PgAccounts {
    pool: Pool,
}

fn store_err(e: impl std::fmt::Display) -> AccountError {
    AccountError::Store(e.to_string())
}

fn account_row(r: &Row, at: usize) -> Result<Account, AccountError> {
    let id: String = r.try_get(at).map_err(store_err)?;
    let subscription = subscription_of(
        &id,
        r.try_get(at + 8).map_err(store_err)?,
        r.try_get(at + 9).map_err(store_err)?,
        r.try_get(at + 10).map_err(store_err)?,
        r.try_get(at + 11).map_err(store_err)?,
        r.try_get(at + 12).map_err(store_err)?,
        r.try_get(at + 13).map_err(store_err)?,
        r.try_get(at + 14).map_err(store_err)?,
    )?;
    account_of(
        id,
        r.try_get(at + 1).map_err(store_err)?,
        r.try_get(at + 2).map_err(store_err)?,
        r.try_get(at + 3).map_err(store_err)?,
        r.try_get(at + 4).map_err(store_err)?,
        r.try_get(at + 5).map_err(store_err)?,
        r.try_get(at + 6).map_err(store_err)?,
        r.try_get(at + 7).map_err(store_err)?,
        subscription,
        r.try_get(at + 15).map_err(store_err)?,
    )
}

fn key_row(r: &Row) -> Result<KeyRecord, AccountError> {
    key_of(
        r.try_get(0).map_err(store_err)?,
        r.try_get(1).map_err(store_err)?,
        r.try_get(2).map_err(store_err)?,
        r.try_get(3).map_err(store_err)?,
        r.try_get(4).map_err(store_err)?,
        r.try_get(5).map_err(store_err)?,
        r.try_get(6).map_err(store_err)?,
        r.try_get(7).map_err(store_err)?,
    )
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

impl PgAccounts {
    /// Connects (a pool of `pool_size`), then applies the migrations this database lacks.
    pub async fn open(
        target: &PgTarget,
        pool_size: usize,
        timeout: Duration,
    ) -> Result<PgAccounts, AccountError> {
        let pool = target.pool(pool_size, timeout).map_err(store_err)?;
        let store = PgAccounts { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, AccountError> {
        self.pool.get().await.map_err(|e| {
            AccountError::Store(format!(
                "connecting to PostgreSQL: {}",
                crate::pg::with_causes(&e)
            ))
        })
    }

    /// Applies the migrations not yet recorded, under the advisory lock. Returns the versions
    /// it applied.
    pub async fn migrate(&self) -> Result<Vec<i32>, AccountError> {
        let mut c = self.client().await?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(store_err)?;
        let result = async {
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )",
            )
            .await
            .map_err(store_err)?;
            let mut applied = Vec::new();
            for (version, sql) in MIGRATIONS {
                let tx = c.transaction().await.map_err(store_err)?;
                let done = tx
                    .query_opt(
                        "SELECT 1 FROM schema_migrations WHERE version = $1",
                        &[version],
                    )
                    .await
                    .map_err(store_err)?
                    .is_some();
                if done {
                    continue;
                }
                tx.batch_execute(sql)
                    .await
                    .map_err(|e| AccountError::Store(format!("migration {version}: {e}")))?;
                tx.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await
                .map_err(store_err)?;
                tx.commit().await.map_err(store_err)?;
                tracing::info!(version, "PostgreSQL schema migration applied");
                applied.push(*version);
            }
            Ok::<_, AccountError>(applied)
        }
        .await;
        let unlock = c
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        let applied = result?;
        unlock.map_err(store_err)?;
        Ok(applied)
    }

    pub async fn insert_account(&self, a: &Account) -> Result<(), AccountError> {
        let c = self.client().await?;
        c.execute(
            &format!(
                "INSERT INTO accounts ({BASE_COLS}, {SWITCH_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &[
                &a.id.as_str(),
                &a.name,
                &a.tier.as_str(),
                &a.clearance.as_str(),
                &a.status.as_str(),
                &a.created_at,
                &a.stripe_customer_id,
                &a.stripe_subscription_id,
                &a.semantic_cache,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                AccountError::Conflict(format!("an account named {:?} exists", a.name))
            } else {
                store_err(e)
            }
        })?;
        Ok(())
    }

    async fn one_account(
        &self,
        filter: &str,
        value: &str,
    ) -> Result<Option<Account>, AccountError> {
        let c = self.client().await?;
        c.query_opt(
            &format!(
                "SELECT {} FROM accounts WHERE {filter} = $1",
                account_cols()
            ),
            &[&value],
        )
        .await
        .map_err(store_err)?
        .map(|r| account_row(&r, 0))
        .transpose()
    }

    /// Links `link.user_id` to `link.account_id`, replacing either side's earlier link.
    pub async fn link_discord(&self, link: &DiscordLink) -> Result<(), AccountError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(store_err)?;
        tx.execute(
            "DELETE FROM discord_links WHERE user_id = $1 OR account_id = $2",
            &[&link.user_id, &link.account_id.as_str()],
        )
        .await
        .map_err(store_err)?;
        tx.execute(
            "INSERT INTO discord_links (user_id, account_id, username, linked_at) VALUES ($1, $2, $3, $4)",
            &[&link.user_id, &link.account_id.as_str(), &link.username, &link.linked_at],
        )
        .await
        .map_err(store_err)?;
        tx.commit().await.map_err(store_err)
    }

    /// The link whose `column` (`user_id` or `account_id`) is `value`.
    pub async fn discord_link(
        &self,
        column: &str,
        value: &str,
    ) -> Result<Option<DiscordLink>, AccountError> {
        let c = self.client().await?;
        c.query_opt(
            &format!("SELECT user_id, account_id, username, linked_at FROM discord_links WHERE {column} = $1"),
            &[&value],
        )
        .await
        .map_err(store_err)?
        .map(|r| {
            super::discord_link_of(
                r.try_get(0).map_err(store_err)?,
                r.try_get(1).map_err(store_err)?,
                r.try_get(2).map_err(store_err)?,
                r.try_get(3).map_err(store_err)?,
            )
        })
        .transpose()
    }

    /// Removes the account's link; whether there was one.
    pub async fn unlink_discord(&self, account: &AccountId) -> Result<bool, AccountError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "DELETE FROM discord_links WHERE account_id = $1",
                &[&account.as_str()],
            )
            .await
            .map_err(store_err)?;
        Ok(n > 0)
    }

    pub async fn account(&self, id: &AccountId) -> Result<Option<Account>, AccountError> {
        self.one_account("id", id.as_str()).await
    }

    pub async fn account_by_name(&self, name: &str) -> Result<Option<Account>, AccountError> {
        self.one_account("name", name).await
    }

    pub async fn accounts(&self) -> Result<Vec<Account>, AccountError> {
        let c = self.client().await?;
        c.query(
            &format!(
                "SELECT {} FROM accounts ORDER BY created_at, id",
                account_cols()
            ),
            &[],
        )
        .await
        .map_err(store_err)?
        .iter()
        .map(|r| account_row(r, 0))
        .collect()
    }

    pub async fn update_account(
        &self,
        id: &AccountId,
        change: &AccountChange,
    ) -> Result<Option<Account>, AccountError> {
        let c = self.client().await?;
        c.query_opt(
            &format!(
                "UPDATE accounts SET tier = COALESCE($2, tier), clearance = COALESCE($3, clearance),
                        status = COALESCE($4, status), semantic_cache = COALESCE($5, semantic_cache)
                 WHERE id = $1 RETURNING {}",
                account_cols()
            ),
            &[
                &id.as_str(),
                &change.tier.map(|t| t.as_str()),
                &change.clearance.map(|c| c.as_str()),
                &change.status.map(|s| s.as_str()),
                &change.semantic_cache,
            ],
        )
        .await
        .map_err(store_err)?
        .map(|r| account_row(&r, 0))
        .transpose()
    }

    /// Stores a key; `public_key` (base64) for an ML-DSA-65 key.
    pub async fn insert_key(
        &self,
        k: &KeyRecord,
        hash: &str,
        public_key: Option<&str>,
    ) -> Result<(), AccountError> {
        let c = self.client().await?;
        c.execute(
            &format!(
                "INSERT INTO api_keys (hash, {KEY_COLS}, public_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &[
                &hash,
                &k.id,
                &k.account_id.as_str(),
                &k.label,
                &k.created_at,
                &k.expires_at,
                &join_models(&k.models),
                &k.revoked_at,
                &public_key,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                AccountError::Conflict(format!("key {} is already stored", k.id))
            } else {
                store_err(e)
            }
        })?;
        Ok(())
    }

    pub async fn keys(&self, account: Option<&AccountId>) -> Result<Vec<KeyRecord>, AccountError> {
        let c = self.client().await?;
        let a = account.map(AccountId::as_str);
        c.query(
            &format!(
                "SELECT {KEY_SELECT} FROM api_keys WHERE $1::TEXT IS NULL OR account_id = $1 ORDER BY created_at, id"
            ),
            &[&a],
        )
        .await
        .map_err(store_err)?
        .iter()
        .map(key_row)
        .collect()
    }

    pub async fn revoke_key(
        &self,
        id: &str,
        now_secs: i64,
    ) -> Result<Option<KeyRecord>, AccountError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &now_secs],
        )
        .await
        .map_err(store_err)?;
        c.query_opt(
            &format!("SELECT {KEY_SELECT} FROM api_keys WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(store_err)?
        .map(|r| key_row(&r))
        .transpose()
    }

    pub async fn grant(&self, hash: &str) -> Result<Option<Grant>, AccountError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {KEY_SELECT_K}, {}
                 FROM api_keys k JOIN accounts a ON a.id = k.account_id
                 WHERE k.hash = $1 AND k.public_key IS NULL",
                account_cols_of_a()
            ))
            .await
            .map_err(store_err)?;
        c.query_opt(&stmt, &[&hash])
            .await
            .map_err(store_err)?
            .map(|r| -> Result<Grant, AccountError> {
                Ok(Grant {
                    key: key_row(&r)?,
                    account: account_row(&r, 8)?,
                })
            })
            .transpose()
    }

    /// The ML-DSA-65 key with this id, with its account.
    pub async fn pq_grant(&self, id: &str) -> Result<Option<PqGrant>, AccountError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {KEY_SELECT_K}, k.public_key, {}
                 FROM api_keys k JOIN accounts a ON a.id = k.account_id
                 WHERE k.id = $1 AND k.public_key IS NOT NULL",
                account_cols_of_a()
            ))
            .await
            .map_err(store_err)?;
        c.query_opt(&stmt, &[&id])
            .await
            .map_err(store_err)?
            .map(|r| -> Result<PqGrant, AccountError> {
                let key = key_row(&r)?;
                let public: String = r.try_get(8).map_err(store_err)?;
                let public_key = super::decode_public_key(&key.id, &public)?;
                Ok(PqGrant {
                    grant: Grant {
                        key,
                        account: account_row(&r, 9)?,
                    },
                    public_key,
                })
            })
            .transpose()
    }

    /// The account whose Stripe customer is `customer`.
    pub async fn account_by_customer(
        &self,
        customer: &str,
    ) -> Result<Option<Account>, AccountError> {
        self.one_account("stripe_customer_id", customer).await
    }

    /// Sets the account's Stripe customer when it has none; the account as stored after.
    pub async fn attach_customer(
        &self,
        id: &AccountId,
        customer: &str,
    ) -> Result<Option<Account>, AccountError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE accounts SET stripe_customer_id = $2 WHERE id = $1 AND stripe_customer_id IS NULL",
            &[&id.as_str(), &customer],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                AccountError::Conflict(format!(
                    "Stripe customer {customer} belongs to another account"
                ))
            } else {
                store_err(e)
            }
        })?;
        drop(c);
        self.account(id).await
    }

    pub async fn billing_event_seen(&self, event_id: &str) -> Result<bool, AccountError> {
        let c = self.client().await?;
        Ok(
            c.query_opt("SELECT 1 FROM billing_events WHERE id = $1", &[&event_id])
                .await
                .map_err(store_err)?
                .is_some(),
        )
    }

    /// Records `event` and applies what `decide` makes of the account, in one transaction
    /// holding the account's row lock, so two origins applying events of one account at once
    /// see each other's result, and a delivery of the same event on two origins at once
    /// applies once.
    pub async fn apply_billing_event(
        &self,
        id: Option<&AccountId>,
        event: &BillingEvent,
        now_secs: i64,
        decide: Result<Decide, String>,
    ) -> Result<Applied, AccountError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(store_err)?;
        // The event's row first: a concurrent delivery of the same id waits here, then sees it.
        let fresh = tx
            .execute(
                "INSERT INTO billing_events (id, type, account_id, created, received_at, outcome)
                 VALUES ($1, $2, NULL, $3, $4, '') ON CONFLICT (id) DO NOTHING",
                &[&event.id, &event.kind, &event.created, &now_secs],
            )
            .await
            .map_err(store_err)?;
        if fresh == 0 {
            return Ok(Applied::Duplicate);
        }
        let current = match id {
            Some(id) => tx
                .query_opt(
                    &format!(
                        "SELECT {} FROM accounts WHERE id = $1 FOR UPDATE",
                        account_cols()
                    ),
                    &[&id.as_str()],
                )
                .await
                .map_err(store_err)?
                .map(|r| account_row(&r, 0))
                .transpose()?,
            None => None,
        };
        // The event row names the account only when it exists (the column references it).
        let account = current.as_ref().map(|a| a.id.as_str().to_string());
        let applied = match (current, decide) {
            (_, Err(reason)) => Applied::Skipped(reason),
            (None, Ok(_)) => Applied::Skipped("ignored: no such account".into()),
            (Some(before), Ok(decide)) => match decide(&before) {
                BillingDecision::Skip(reason) => Applied::Skipped(reason),
                BillingDecision::Apply(after) => {
                    let s = &after.subscription;
                    tx.execute(
                        "UPDATE accounts SET tier = $2, stripe_customer_id = $3, stripe_subscription_id = $4,
                            subscription_status = $5, subscription_price = $6, current_period_end = $7,
                            past_due_since = $8, billing_event_at = $9, invoice_status = $10, invoice_at = $11
                         WHERE id = $1",
                        &[
                            &after.id.as_str(),
                            &after.tier.as_str(),
                            &after.stripe_customer_id,
                            &after.stripe_subscription_id,
                            &s.status.map(|v| v.as_str()),
                            &s.price,
                            &s.current_period_end,
                            &s.past_due_since,
                            &s.event_at,
                            &s.invoice_status.map(|v| v.as_str()),
                            &s.invoice_at,
                        ],
                    )
                    .await
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            AccountError::Conflict(format!(
                                "Stripe customer {:?} belongs to another account",
                                after.stripe_customer_id
                            ))
                        } else {
                            store_err(e)
                        }
                    })?;
                    Applied::Updated {
                        before: Box::new(before),
                        after,
                    }
                }
            },
        };
        let outcome = match &applied {
            Applied::Skipped(reason) => reason.as_str(),
            _ => "applied",
        };
        tx.execute(
            "UPDATE billing_events SET outcome = $2, account_id = $3 WHERE id = $1",
            &[&event.id, &outcome, &account],
        )
        .await
        .map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        Ok(applied)
    }

    /// The account's processed events, oldest first.
    pub async fn billing_events(
        &self,
        id: &AccountId,
    ) -> Result<Vec<BillingEventRecord>, AccountError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT id, type, created, received_at, outcome FROM billing_events
                 WHERE account_id = $1 ORDER BY created, received_at, id",
            &[&id.as_str()],
        )
        .await
        .map_err(store_err)?
        .iter()
        .map(|r| BillingEventRecord {
            id: r.get(0),
            kind: r.get(1),
            created: r.get(2),
            received_at: r.get(3),
            outcome: r.get(4),
        })
        .collect())
    }

    /// Accounts whose subscription has been past_due since `cutoff` or earlier and that still
    /// have a paid tier: moved to Free. The accounts as changed.
    pub async fn expire_past_due(&self, cutoff: i64) -> Result<Vec<Account>, AccountError> {
        let c = self.client().await?;
        c.query(
            &format!(
                "UPDATE accounts SET tier = 'free'
                 WHERE subscription_status = 'past_due' AND past_due_since <= $1 AND tier <> 'free'
                 RETURNING {}",
                account_cols()
            ),
            &[&cutoff],
        )
        .await
        .map_err(store_err)?
        .iter()
        .map(|r| account_row(r, 0))
        .collect()
    }

    /// Can we reach the database? (`/ready`.)
    pub async fn ping(&self) -> Result<(), AccountError> {
        let c = self.client().await?;
        c.simple_query("SELECT 1").await.map_err(store_err)?;
        Ok(())
    }
}
