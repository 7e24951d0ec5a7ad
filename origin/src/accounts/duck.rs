//! The embedded backend: tables `accounts` and `account_keys` in the daemon's DuckDB file
//! (an ML-DSA-65 key is a row of `account_keys` with its `public_key`, base64).
//! Blocking; the store calls it through `crate::rt::blocking`.
//!
//! A database from before accounts has a table `api_keys` (user, tier, clearance per key): on
//! open each distinct user becomes an account of that name with the highest tier and
//! clearance its keys had, the keys move over unchanged, and `api_keys` is dropped, all in one
//! transaction.

use super::billing::{
    subscription_of, Applied, BillingDecision, BillingEvent, BillingEventRecord, Decide,
    SUBSCRIPTION_COLS,
};
use super::{account_of, join_models, key_of, mint_account_id, Account, AccountChange};
use super::{AccountError, DiscordLink, Grant, KeyRecord, PqGrant};
use crate::db::Database;
use duckdb::{params, OptionalExt};
use heady_shared::{AccountId, AccountStatus, Classification, Tier};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    tier VARCHAR NOT NULL,
    clearance VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    created_at BIGINT NOT NULL,
    stripe_customer_id VARCHAR,
    stripe_subscription_id VARCHAR
);
CREATE TABLE IF NOT EXISTS account_keys (
    id VARCHAR PRIMARY KEY,
    hash VARCHAR NOT NULL UNIQUE,
    account_id VARCHAR NOT NULL,
    label VARCHAR,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    models VARCHAR,
    revoked_at BIGINT
);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS subscription_status VARCHAR;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS subscription_price VARCHAR;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS current_period_end BIGINT;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS past_due_since BIGINT;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS billing_event_at BIGINT;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS invoice_status VARCHAR;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS invoice_at BIGINT;
ALTER TABLE account_keys ADD COLUMN IF NOT EXISTS public_key VARCHAR;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS semantic_cache BOOLEAN DEFAULT false;
CREATE TABLE IF NOT EXISTS billing_events (
    id VARCHAR PRIMARY KEY,
    type VARCHAR NOT NULL,
    account_id VARCHAR,
    created BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    outcome VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS discord_links (
    user_id VARCHAR PRIMARY KEY,
    account_id VARCHAR NOT NULL UNIQUE,
    username VARCHAR NOT NULL,
    linked_at BIGINT NOT NULL
);";

/// The account's own columns, then the subscription's ([`SUBSCRIPTION_COLS`]), then the
/// switches ([`SWITCH_COLS`]).
const BASE_COLS: &str =
    "id, name, tier, clearance, status, created_at, stripe_customer_id, stripe_subscription_id";
/// Added after the table was first released (`ALTER TABLE ... ADD COLUMN`): a row from before
/// holds its default, read as off when NULL.
const SWITCH_COLS: &str = "semantic_cache";

fn account_cols() -> String {
    format!("{BASE_COLS}, {SUBSCRIPTION_COLS}, {SWITCH_COLS}")
}

/// [`account_cols`] of the table aliased `a`.
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

pub struct DuckAccounts {
    db: Database,
}

fn account_row(r: &duckdb::Row<'_>) -> duckdb::Result<Result<Account, AccountError>> {
    account_row_at(r, 0)
}

/// The account whose columns ([`account_cols`]) start at `at`.
fn account_row_at(r: &duckdb::Row<'_>, at: usize) -> duckdb::Result<Result<Account, AccountError>> {
    let id: String = r.get(at)?;
    let subscription = match subscription_of(
        &id,
        r.get(at + 8)?,
        r.get(at + 9)?,
        r.get(at + 10)?,
        r.get(at + 11)?,
        r.get(at + 12)?,
        r.get(at + 13)?,
        r.get(at + 14)?,
    ) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let semantic_cache: Option<bool> = r.get(at + 15)?;
    Ok(account_of(
        id,
        r.get(at + 1)?,
        r.get(at + 2)?,
        r.get(at + 3)?,
        r.get(at + 4)?,
        r.get(at + 5)?,
        r.get(at + 6)?,
        r.get(at + 7)?,
        subscription,
        semantic_cache.unwrap_or(false),
    ))
}

fn key_row(r: &duckdb::Row<'_>) -> duckdb::Result<Result<KeyRecord, AccountError>> {
    Ok(key_of(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn is_constraint(e: &duckdb::Error) -> bool {
    matches!(e, duckdb::Error::DuckDBFailure(_, Some(m)) if m.contains("onstraint"))
}

impl DuckAccounts {
    /// Creates the tables when missing and migrates a pre-account `api_keys` table.
    pub fn open(db: Database, now_secs: i64) -> Result<DuckAccounts, AccountError> {
        db.with_writer(|conn| -> Result<(), AccountError> {
            conn.execute_batch(SCHEMA)?;
            let legacy: i64 = conn.query_row(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'api_keys'",
                [],
                |r| r.get(0),
            )?;
            if legacy > 0 {
                migrate_api_keys(conn, now_secs)?;
            }
            Ok(())
        })?;
        Ok(DuckAccounts { db })
    }

    pub fn insert_account(&self, a: &Account) -> Result<(), AccountError> {
        self.db.with_writer(|conn| {
            conn.execute(
                &format!(
                    "INSERT INTO accounts ({BASE_COLS}, {SWITCH_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                params![
                    a.id.as_str(),
                    a.name,
                    a.tier.as_str(),
                    a.clearance.as_str(),
                    a.status.as_str(),
                    a.created_at,
                    a.stripe_customer_id,
                    a.stripe_subscription_id,
                    a.semantic_cache
                ],
            )
            .map_err(|e| {
                if is_constraint(&e) {
                    AccountError::Conflict(format!("an account named {:?} exists", a.name))
                } else {
                    e.into()
                }
            })
            .map(|_| ())
        })
    }

    fn one_account(&self, filter: &str, value: &str) -> Result<Option<Account>, AccountError> {
        self.db.with_reader(|conn| {
            conn.query_row(
                &format!("SELECT {} FROM accounts WHERE {filter} = ?", account_cols()),
                params![value],
                account_row,
            )
            .optional()?
            .transpose()
        })
    }

    /// Links `link.user_id` to `link.account_id`, replacing either side's earlier link.
    pub fn link_discord(&self, link: &DiscordLink) -> Result<(), AccountError> {
        self.db.with_writer(|conn| {
            conn.execute_batch("BEGIN TRANSACTION")?;
            let result = (|| -> Result<(), AccountError> {
                conn.execute(
                    "DELETE FROM discord_links WHERE user_id = ? OR account_id = ?",
                    params![link.user_id, link.account_id.as_str()],
                )?;
                conn.execute(
                    "INSERT INTO discord_links (user_id, account_id, username, linked_at) VALUES (?, ?, ?, ?)",
                    params![link.user_id, link.account_id.as_str(), link.username, link.linked_at],
                )?;
                Ok(())
            })();
            match result {
                Ok(()) => {
                    conn.execute_batch("COMMIT")?;
                    Ok(())
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
    }

    /// The link of the Discord user `user_id`, or of the account `account` (by `column`).
    pub fn discord_link(
        &self,
        column: &str,
        value: &str,
    ) -> Result<Option<DiscordLink>, AccountError> {
        self.db.with_reader(|conn| {
            conn.query_row(
                &format!("SELECT user_id, account_id, username, linked_at FROM discord_links WHERE {column} = ?"),
                params![value],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?)),
            )
            .optional()?
            .map(|(user_id, account, username, linked_at)| super::discord_link_of(user_id, account, username, linked_at))
            .transpose()
        })
    }

    /// Removes the account's link; whether there was one.
    pub fn unlink_discord(&self, account: &AccountId) -> Result<bool, AccountError> {
        self.db.with_writer(|conn| {
            Ok(conn.execute(
                "DELETE FROM discord_links WHERE account_id = ?",
                params![account.as_str()],
            )? > 0)
        })
    }

    pub fn account(&self, id: &AccountId) -> Result<Option<Account>, AccountError> {
        self.one_account("id", id.as_str())
    }

    pub fn account_by_name(&self, name: &str) -> Result<Option<Account>, AccountError> {
        self.one_account("name", name)
    }

    pub fn accounts(&self) -> Result<Vec<Account>, AccountError> {
        self.db.with_reader(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {} FROM accounts ORDER BY created_at, id",
                account_cols()
            ))?;
            let rows = stmt.query_map([], account_row)?;
            rows.map(|r| r?).collect()
        })
    }

    pub fn update_account(
        &self,
        id: &AccountId,
        change: &AccountChange,
    ) -> Result<Option<Account>, AccountError> {
        let Some(mut a) = self.account(id)? else {
            return Ok(None);
        };
        change.apply(&mut a);
        self.db.with_writer(|conn| -> Result<usize, AccountError> {
            Ok(conn.execute(
                "UPDATE accounts SET tier = ?, clearance = ?, status = ?, semantic_cache = ? WHERE id = ?",
                params![
                    a.tier.as_str(),
                    a.clearance.as_str(),
                    a.status.as_str(),
                    a.semantic_cache,
                    id.as_str()
                ],
            )?)
        })?;
        Ok(Some(a))
    }

    /// Stores a key; `public_key` (base64) for an ML-DSA-65 key.
    pub fn insert_key(
        &self,
        k: &KeyRecord,
        hash: &str,
        public_key: Option<&str>,
    ) -> Result<(), AccountError> {
        self.db.with_writer(|conn| {
            conn.execute(
                &format!(
                    "INSERT INTO account_keys (public_key, hash, {KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                params![
                    public_key,
                    hash,
                    k.id,
                    k.account_id.as_str(),
                    k.label,
                    k.created_at,
                    k.expires_at,
                    join_models(&k.models),
                    k.revoked_at
                ],
            )
            .map_err(|e| {
                if is_constraint(&e) {
                    AccountError::Conflict(format!("key {} is already stored", k.id))
                } else {
                    e.into()
                }
            })
            .map(|_| ())
        })
    }

    pub fn keys(&self, account: Option<&AccountId>) -> Result<Vec<KeyRecord>, AccountError> {
        self.db.with_reader(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {KEY_SELECT} FROM account_keys WHERE CAST(? AS VARCHAR) IS NULL OR account_id = ? ORDER BY created_at, id"
            ))?;
            let a = account.map(AccountId::as_str);
            let rows = stmt.query_map(params![a, a], key_row)?;
            rows.map(|r| r?).collect()
        })
    }

    pub fn revoke_key(&self, id: &str, now_secs: i64) -> Result<Option<KeyRecord>, AccountError> {
        self.db.with_writer(|conn| {
            conn.execute(
                "UPDATE account_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                params![now_secs, id],
            )?;
            conn.query_row(
                &format!("SELECT {KEY_SELECT} FROM account_keys WHERE id = ?"),
                params![id],
                key_row,
            )
            .optional()?
            .transpose()
        })
    }

    pub fn grant(&self, hash: &str) -> Result<Option<Grant>, AccountError> {
        self.db.with_reader(|conn| {
            conn.query_row(
                &format!(
                    "SELECT {KEY_SELECT_K}, {}
                     FROM account_keys k JOIN accounts a ON a.id = k.account_id
                     WHERE k.hash = ? AND k.public_key IS NULL",
                    account_cols_of_a()
                ),
                params![hash],
                |r| {
                    let key = key_row(r)?;
                    let account = account_row_at(r, 8)?;
                    Ok((key, account))
                },
            )
            .optional()?
            .map(|(k, a)| -> Result<Grant, AccountError> {
                Ok(Grant {
                    key: k?,
                    account: a?,
                })
            })
            .transpose()
        })
    }

    /// The ML-DSA-65 key with this id, with its account.
    pub fn pq_grant(&self, id: &str) -> Result<Option<PqGrant>, AccountError> {
        self.db.with_reader(|conn| {
            conn.query_row(
                &format!(
                    "SELECT {KEY_SELECT_K}, k.public_key, {}
                     FROM account_keys k JOIN accounts a ON a.id = k.account_id
                     WHERE k.id = ? AND k.public_key IS NOT NULL",
                    account_cols_of_a()
                ),
                params![id],
                |r| {
                    let key = key_row(r)?;
                    let public: String = r.get(8)?;
                    let account = account_row_at(r, 9)?;
                    Ok((key, public, account))
                },
            )
            .optional()?
            .map(|(k, p, a)| -> Result<PqGrant, AccountError> {
                let key = k?;
                let public_key = super::decode_public_key(&key.id, &p)?;
                Ok(PqGrant {
                    grant: Grant { key, account: a? },
                    public_key,
                })
            })
            .transpose()
        })
    }
    /// The account whose Stripe customer is `customer`.
    pub fn account_by_customer(&self, customer: &str) -> Result<Option<Account>, AccountError> {
        self.one_account("stripe_customer_id", customer)
    }

    /// Sets the account's Stripe customer when it has none; the account as stored after.
    pub fn attach_customer(
        &self,
        id: &AccountId,
        customer: &str,
    ) -> Result<Option<Account>, AccountError> {
        let taken = self.account_by_customer(customer)?;
        if let Some(other) = taken.filter(|a| &a.id != id) {
            return Err(AccountError::Conflict(format!(
                "Stripe customer {customer} belongs to account {}",
                other.id
            )));
        }
        self.db.with_writer(|conn| -> Result<usize, AccountError> {
            Ok(conn.execute(
                "UPDATE accounts SET stripe_customer_id = ? WHERE id = ? AND stripe_customer_id IS NULL",
                params![customer, id.as_str()],
            )?)
        })?;
        self.account(id)
    }

    pub fn billing_event_seen(&self, event_id: &str) -> Result<bool, AccountError> {
        self.db.with_reader(|conn| {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM billing_events WHERE id = ?",
                params![event_id],
                |r| r.get(0),
            )?;
            Ok(n > 0)
        })
    }

    /// Records `event` and applies what `decide` makes of the account (`None`: an event that
    /// names no account, recorded with `skip`), in one transaction.
    pub fn apply_billing_event(
        &self,
        id: Option<&AccountId>,
        event: &BillingEvent,
        now_secs: i64,
        decide: Result<Decide, String>,
    ) -> Result<Applied, AccountError> {
        self.db.with_writer(|conn| {
            conn.execute_batch("BEGIN TRANSACTION")?;
            let result = (|| -> Result<Applied, AccountError> {
                let seen: i64 = conn.query_row(
                    "SELECT count(*) FROM billing_events WHERE id = ?",
                    params![event.id],
                    |r| r.get(0),
                )?;
                if seen > 0 {
                    return Ok(Applied::Duplicate);
                }
                let current = match id {
                    Some(id) => conn
                        .query_row(
                            &format!("SELECT {} FROM accounts WHERE id = ?", account_cols()),
                            params![id.as_str()],
                            account_row,
                        )
                        .optional()?
                        .transpose()?,
                    None => None,
                };
                let account = current.as_ref().map(|a| a.id.as_str().to_string());
                let applied = match (current, decide) {
                    (_, Err(reason)) => Applied::Skipped(reason),
                    (None, Ok(_)) => Applied::Skipped("ignored: no such account".into()),
                    (Some(before), Ok(decide)) => match decide(&before) {
                        BillingDecision::Skip(reason) => Applied::Skipped(reason),
                        BillingDecision::Apply(after) => {
                            write_billing(conn, &after)?;
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
                conn.execute(
                    "INSERT INTO billing_events (id, type, account_id, created, received_at, outcome) VALUES (?, ?, ?, ?, ?, ?)",
                    params![
                        event.id,
                        event.kind,
                        account,
                        event.created,
                        now_secs,
                        outcome
                    ],
                )?;
                Ok(applied)
            })();
            match result {
                Ok(applied) => {
                    conn.execute_batch("COMMIT")?;
                    Ok(applied)
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
    }

    /// The account's processed events, oldest first.
    pub fn billing_events(&self, id: &AccountId) -> Result<Vec<BillingEventRecord>, AccountError> {
        self.db.with_reader(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, type, created, received_at, outcome FROM billing_events WHERE account_id = ? ORDER BY created, received_at, id",
            )?;
            let rows = stmt.query_map(params![id.as_str()], |r| {
                Ok(BillingEventRecord {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    created: r.get(2)?,
                    received_at: r.get(3)?,
                    outcome: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Accounts whose subscription has been past_due since `cutoff` or earlier and that still
    /// have a paid tier: moved to Free. The accounts as changed.
    pub fn expire_past_due(&self, cutoff: i64) -> Result<Vec<Account>, AccountError> {
        self.db.with_writer(|conn| {
            let ids: Vec<String> = {
                let mut stmt = conn.prepare(
                    "SELECT id FROM accounts WHERE subscription_status = 'past_due' AND past_due_since <= ? AND tier <> 'free'",
                )?;
                let rows = stmt.query_map(params![cutoff], |r| r.get(0))?;
                let ids: Vec<String> = rows.collect::<Result<_, _>>()?;
                ids
            };
            let mut changed = Vec::new();
            for id in ids {
                conn.execute(
                    "UPDATE accounts SET tier = 'free' WHERE id = ? AND subscription_status = 'past_due' AND past_due_since <= ?",
                    params![id, cutoff],
                )?;
                if let Some(a) = conn
                    .query_row(
                        &format!("SELECT {} FROM accounts WHERE id = ?", account_cols()),
                        params![id],
                        account_row,
                    )
                    .optional()?
                {
                    changed.push(a?);
                }
            }
            Ok(changed)
        })
    }
}

/// Writes the tier and the billing columns of `a`.
fn write_billing(conn: &duckdb::Connection, a: &Account) -> Result<(), AccountError> {
    let s = &a.subscription;
    conn.execute(
        "UPDATE accounts SET tier = ?, stripe_customer_id = ?, stripe_subscription_id = ?,
            subscription_status = ?, subscription_price = ?, current_period_end = ?,
            past_due_since = ?, billing_event_at = ?, invoice_status = ?, invoice_at = ?
         WHERE id = ?",
        params![
            a.tier.as_str(),
            a.stripe_customer_id,
            a.stripe_subscription_id,
            s.status.map(|v| v.as_str()),
            s.price,
            s.current_period_end,
            s.past_due_since,
            s.event_at,
            s.invoice_status.map(|v| v.as_str()),
            s.invoice_at,
            a.id.as_str()
        ],
    )?;
    Ok(())
}

/// id, hash, user, tier, clearance, created, revoked.
type LegacyRow = (String, String, String, String, String, i64, Option<i64>);

/// `api_keys` (one row per key with its user's tier and clearance) -> accounts + keys.
fn migrate_api_keys(conn: &duckdb::Connection, now_secs: i64) -> Result<(), AccountError> {
    let rows: Vec<LegacyRow> = {
        let mut stmt = conn.prepare(
            "SELECT id, hash, user_id, tier, clearance, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
        )?;
        let mapped = stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?;
        let rows: Vec<_> = mapped.collect::<Result<_, _>>()?;
        rows
    };
    // user -> (tier, clearance, first created)
    let mut users: Vec<(String, Tier, Classification, i64)> = Vec::new();
    for (id, _, user, tier, clearance, created, _) in &rows {
        let damaged = |problem: String| AccountError::Damaged {
            what: "api_keys row",
            id: id.clone(),
            problem,
        };
        let tier: Tier = tier.parse().map_err(|e| damaged(format!("{e}")))?;
        let clearance: Classification = clearance.parse().map_err(|e| damaged(format!("{e}")))?;
        match users.iter_mut().find(|u| &u.0 == user) {
            Some(u) => {
                u.1 = u.1.max(tier);
                u.2 = u.2.max(clearance);
                u.3 = u.3.min(*created);
            }
            None => users.push((user.clone(), tier, clearance, *created)),
        }
    }
    conn.execute_batch("BEGIN TRANSACTION")?;
    let result = (|| -> Result<(), AccountError> {
        let mut ids = Vec::new();
        for (name, tier, clearance, created) in &users {
            let existing: Option<String> = conn
                .query_row(
                    "SELECT id FROM accounts WHERE name = ?",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?;
            let id = match existing {
                Some(id) => id,
                None => {
                    let id = mint_account_id();
                    conn.execute(
                        &format!("INSERT INTO accounts ({BASE_COLS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)"),
                        params![
                            id.as_str(),
                            name,
                            tier.as_str(),
                            clearance.as_str(),
                            AccountStatus::Active.as_str(),
                            (*created).min(now_secs)
                        ],
                    )?;
                    id.as_str().to_string()
                }
            };
            ids.push((name.clone(), id));
        }
        for (id, hash, user, _, _, created, revoked) in &rows {
            let account = ids
                .iter()
                .find(|(n, _)| n == user)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
            conn.execute(
                "INSERT INTO account_keys (id, hash, account_id, label, created_at, expires_at, models, revoked_at)
                 VALUES (?, ?, ?, NULL, ?, NULL, NULL, ?)",
                params![id, hash, account, created, revoked],
            )?;
        }
        conn.execute_batch("DROP TABLE api_keys")?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            if !users.is_empty() {
                tracing::info!(
                    accounts = users.len(),
                    keys = rows.len(),
                    "api_keys migrated: each user is now an account"
                );
            }
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_key_table_becomes_accounts_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::db::DbConfig::from(&crate::memory::config::MemoryConfig::default());
        let db = Database::open(dir.path(), &cfg, Default::default()).unwrap();
        db.with_writer(|c| -> Result<(), AccountError> {
            c.execute_batch(
                "CREATE TABLE api_keys (id VARCHAR PRIMARY KEY, hash VARCHAR NOT NULL UNIQUE,
                   user_id VARCHAR NOT NULL, tier VARCHAR NOT NULL, clearance VARCHAR NOT NULL,
                   created_at BIGINT NOT NULL, revoked_at BIGINT);
                 INSERT INTO api_keys VALUES
                   ('aaaaaaaaaaaaaaaa', 'aaaaaaaaaaaaaaaa00', 'ann', 'free', 'public', 10, NULL),
                   ('bbbbbbbbbbbbbbbb', 'bbbbbbbbbbbbbbbb00', 'ann', 'pro', 'internal', 20, NULL),
                   ('cccccccccccccccc', 'cccccccccccccccc00', 'bob', 'enterprise', 'restricted', 30, 40);",
            )?;
            Ok(())
        })
        .unwrap();
        let s = DuckAccounts::open(db.clone(), 100).unwrap();
        let accounts = s.accounts().unwrap();
        assert_eq!(accounts.len(), 2);
        let ann = s.account_by_name("ann").unwrap().unwrap();
        assert_eq!(
            (ann.tier, ann.clearance),
            (Tier::Pro, Classification::Internal)
        );
        assert_eq!(ann.created_at, 10);
        let g = s.grant("bbbbbbbbbbbbbbbb00").unwrap().unwrap();
        assert_eq!(g.account, ann);
        assert_eq!(s.keys(Some(&ann.id)).unwrap().len(), 2);
        let bob = s.grant("cccccccccccccccc00").unwrap().unwrap();
        assert_eq!(bob.key.revoked_at, Some(40));
        assert_eq!(bob.account.clearance, Classification::Restricted);
        // The old table is gone: opening again migrates nothing twice.
        drop(s);
        let s = DuckAccounts::open(db, 200).unwrap();
        assert_eq!(s.accounts().unwrap().len(), 2);
        assert_eq!(s.keys(None).unwrap().len(), 3);
    }

    #[test]
    fn an_accounts_table_from_before_billing_gets_the_billing_columns() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::db::DbConfig::from(&crate::memory::config::MemoryConfig::default());
        let db = Database::open(dir.path(), &cfg, Default::default()).unwrap();
        db.with_writer(|c| -> Result<(), AccountError> {
            c.execute_batch(
                "CREATE TABLE accounts (id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL UNIQUE,
                   tier VARCHAR NOT NULL, clearance VARCHAR NOT NULL, status VARCHAR NOT NULL,
                   created_at BIGINT NOT NULL, stripe_customer_id VARCHAR, stripe_subscription_id VARCHAR);
                 INSERT INTO accounts VALUES
                   ('acct_aaaaaaaaaaaaaaaaaaaaaaaa', 'old', 'pro', 'INTERNAL', 'active', 5, NULL, NULL);",
            )?;
            Ok(())
        })
        .unwrap();
        let s = DuckAccounts::open(db.clone(), 100).unwrap();
        let old = s.account_by_name("old").unwrap().unwrap();
        assert_eq!(old.tier, Tier::Pro);
        assert!(old.subscription.is_empty());
        assert!(!old.semantic_cache, "an older row gets the switch, off");
        let on = AccountChange {
            semantic_cache: Some(true),
            ..Default::default()
        };
        assert!(
            s.update_account(&old.id, &on)
                .unwrap()
                .unwrap()
                .semantic_cache
        );
        // `paid` still says off: a billing event writes its own columns only.
        let mut paid = old.clone();
        paid.subscription.status = Some(crate::accounts::SubscriptionStatus::Active);
        paid.stripe_customer_id = Some("cus_1".into());
        let applied = s
            .apply_billing_event(
                Some(&old.id),
                &BillingEvent {
                    id: "evt_1".into(),
                    kind: "customer.subscription.updated".into(),
                    created: 1,
                },
                100,
                Ok(Box::new(move |_: &Account| {
                    BillingDecision::Apply(Box::new(paid))
                })),
            )
            .unwrap();
        assert!(matches!(applied, Applied::Updated { .. }));
        // Opening again adds nothing twice and keeps what was written.
        drop(s);
        let s = DuckAccounts::open(db, 200).unwrap();
        let a = s.account_by_customer("cus_1").unwrap().unwrap();
        assert_eq!(
            a.subscription.status,
            Some(crate::accounts::SubscriptionStatus::Active)
        );
        assert!(a.semantic_cache);
        assert!(s.billing_event_seen("evt_1").unwrap());
    }
}
