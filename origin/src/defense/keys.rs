//! API keys: `hk_` + 64 hex digits (256 random bits), stored only as SHA-256 hashes in the
//! DuckDB table `api_keys` with the user, tier, clearance, created and revoked times.
//!
//! Lookups are cached for `cache_ttl` (a revocation takes effect within it); unknown keys are
//! cached too, so a flood of random keys costs one query per key per TTL at most.

use crate::db::{Database, DbError};
use duckdb::{params, OptionalExt};
use heady_shared::{Classification, Tier};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

pub const KEY_PREFIX: &str = "hk_";
const CACHE_MAX: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("{0}")]
    Invalid(String),
    #[error("stored key {id} is damaged: {what}")]
    Damaged { id: String, what: String },
}

impl From<duckdb::Error> for KeyError {
    fn from(e: duckdb::Error) -> Self {
        KeyError::Db(DbError::Duck(e))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    /// Public identifier (first 16 hex digits of the hash): safe to log and to show.
    pub id: String,
    pub user: String,
    pub tier: Tier,
    pub clearance: Classification,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A newly created key: the secret is shown once and never stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// Why a presented key was refused (all 401 to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Malformed,
    Unknown,
    Revoked,
}

/// A user name: 1-128 of `A-Z a-z 0-9 . _ @ -`. It becomes the limiter subject `user:<name>`
/// and a Redis key part, so braces, spaces and control characters are out.
pub fn check_user(user: &str) -> Result<(), heady_shared::SubjectError> {
    heady_shared::subject::UserName::new(user).map(|_| ())
}

/// Is `key` shaped like one of ours? (Checked before any hashing or lookup.)
pub fn well_formed(key: &str) -> bool {
    key.len() == KEY_PREFIX.len() + 64
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn hash_of(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct KeyStore {
    db: Database,
    cache: RwLock<HashMap<String, (Option<KeyRecord>, Instant)>>,
    cache_ttl: Duration,
}

impl KeyStore {
    /// Creates the table in `db` when missing.
    pub fn open(db: Database, cache_ttl: Duration) -> Result<KeyStore, KeyError> {
        db.with_writer(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS api_keys (
                    id VARCHAR PRIMARY KEY,
                    hash VARCHAR NOT NULL UNIQUE,
                    user_id VARCHAR NOT NULL,
                    tier VARCHAR NOT NULL,
                    clearance VARCHAR NOT NULL,
                    created_at BIGINT NOT NULL,
                    revoked_at BIGINT
                );",
            )
            .map_err(KeyError::from)
        })?;
        Ok(KeyStore {
            db,
            cache: RwLock::new(HashMap::new()),
            cache_ttl,
        })
    }

    /// Mints a key, stores its hash, and returns the secret (the only time it exists).
    pub fn create(
        &self,
        user: &str,
        tier: Tier,
        clearance: Classification,
        now_secs: i64,
    ) -> Result<CreatedKey, KeyError> {
        let secret: [u8; 32] = rand::random();
        self.add(
            &format!("{KEY_PREFIX}{}", hex(&secret)),
            user,
            tier,
            clearance,
            now_secs,
        )
    }

    /// Stores the hash of an existing key: how a key made on one origin reaches the others
    /// (`heady-origin keys add --key hk_...` on each).
    pub fn add(
        &self,
        key: &str,
        user: &str,
        tier: Tier,
        clearance: Classification,
        now_secs: i64,
    ) -> Result<CreatedKey, KeyError> {
        check_user(user).map_err(|e| KeyError::Invalid(format!("user: {e}")))?;
        if !well_formed(key) {
            return Err(KeyError::Invalid(
                "key: expected hk_ followed by 64 lowercase hex digits".into(),
            ));
        }
        let hash = hash_of(key);
        let record = KeyRecord {
            id: hash[..16].to_string(),
            user: user.to_string(),
            tier,
            clearance,
            created_at: now_secs,
            revoked_at: None,
        };
        self.db.with_writer(|conn| {
            conn.execute(
                "INSERT INTO api_keys (id, hash, user_id, tier, clearance, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                params![record.id, hash, record.user, tier.as_str(), clearance.as_str(), now_secs],
            )
            .map_err(|e| match e {
                duckdb::Error::DuckDBFailure(_, Some(ref m)) if m.contains("onstraint") => {
                    KeyError::Invalid(format!("key {} is already stored", record.id))
                }
                e => KeyError::from(e),
            })
        })?;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&hash);
        Ok(CreatedKey {
            key: key.to_string(),
            record,
        })
    }

    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        self.db.with_reader(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, user_id, tier, clearance, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([], row_tuple)?;
            rows.map(|r| record_of(r?)).collect()
        })
    }

    /// Revokes by id. `Ok(None)`: no such key; revoking twice keeps the first time.
    pub fn revoke(&self, id: &str, now_secs: i64) -> Result<Option<KeyRecord>, KeyError> {
        let row = self.db.with_writer(|conn| -> Result<_, KeyError> {
            conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                params![now_secs, id],
            )?;
            Ok(conn
                .query_row(
                    "SELECT id, user_id, tier, clearance, created_at, revoked_at FROM api_keys WHERE id = ?",
                    params![id],
                    row_tuple,
                )
                .optional()?)
        })?;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (r, _)| r.as_ref().is_none_or(|r| r.id != id));
        row.map(record_of).transpose()
    }

    /// Cached lookup; `None` when the cache has nothing fresh. Cheap: call it on the async path.
    pub fn cached(&self, key: &str) -> Option<Result<KeyRecord, KeyRefusal>> {
        if !well_formed(key) {
            return Some(Err(KeyRefusal::Malformed));
        }
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let (rec, at) = cache.get(&hash_of(key))?;
        if at.elapsed() > self.cache_ttl {
            return None;
        }
        Some(judge(rec.clone()))
    }

    /// Looks the key up in DuckDB and caches the answer. Blocking.
    pub fn lookup_blocking(&self, key: &str) -> Result<Result<KeyRecord, KeyRefusal>, KeyError> {
        if !well_formed(key) {
            return Ok(Err(KeyRefusal::Malformed));
        }
        let hash = hash_of(key);
        let row = self.db.with_reader(|conn| -> Result<_, KeyError> {
            Ok(conn
                .query_row(
                    "SELECT id, user_id, tier, clearance, created_at, revoked_at FROM api_keys WHERE hash = ?",
                    params![hash],
                    row_tuple,
                )
                .optional()?)
        })?;
        let rec = row.map(record_of).transpose()?;
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            let ttl = self.cache_ttl;
            cache.retain(|_, (_, at)| at.elapsed() <= ttl);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(hash, (rec.clone(), Instant::now()));
        Ok(judge(rec))
    }
}

fn judge(rec: Option<KeyRecord>) -> Result<KeyRecord, KeyRefusal> {
    match rec {
        None => Err(KeyRefusal::Unknown),
        Some(r) if r.revoked_at.is_some() => Err(KeyRefusal::Revoked),
        Some(r) => Ok(r),
    }
}

type Row = (String, String, String, String, i64, Option<i64>);

fn row_tuple(r: &duckdb::Row<'_>) -> duckdb::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn record_of(
    (id, user, tier, clearance, created_at, revoked_at): Row,
) -> Result<KeyRecord, KeyError> {
    let damaged = |what: String| KeyError::Damaged {
        id: id.clone(),
        what,
    };
    Ok(KeyRecord {
        tier: tier.parse().map_err(|e| damaged(format!("{e}")))?,
        clearance: clearance.parse().map_err(|e| damaged(format!("{e}")))?,
        id,
        user,
        created_at,
        revoked_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store over a database in a fresh directory (kept as long as the store).
    fn store() -> (KeyStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::db::DbConfig::from(&crate::memory::config::MemoryConfig::default());
        let db = Database::open(dir.path(), &cfg, Default::default()).unwrap();
        (KeyStore::open(db, Duration::from_secs(5)).unwrap(), dir)
    }

    #[test]
    fn create_lookup_revoke() {
        let (s, _dir) = store();
        let k = s
            .create("alice", Tier::Pro, Classification::Internal, 100)
            .unwrap();
        assert!(well_formed(&k.key));
        let got = s.lookup_blocking(&k.key).unwrap().unwrap();
        assert_eq!(got.user, "alice");
        assert_eq!(got.tier, Tier::Pro);
        assert_eq!(s.cached(&k.key), Some(Ok(got.clone())));
        // Only the hash is stored.
        let stored: String =
            s.db.with_reader(|c| -> Result<_, KeyError> {
                Ok(c.query_row("SELECT hash FROM api_keys", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(stored, hash_of(&k.key));
        assert_ne!(stored, k.key);
        let revoked = s.revoke(&got.id, 200).unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(200));
        assert_eq!(s.cached(&k.key), None, "revocation clears the cache");
        assert_eq!(s.lookup_blocking(&k.key).unwrap(), Err(KeyRefusal::Revoked));
        assert_eq!(
            s.revoke(&got.id, 300).unwrap().unwrap().revoked_at,
            Some(200)
        );
        assert!(s.revoke("nope", 300).unwrap().is_none());
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn malformed_and_unknown_keys() {
        let (s, _dir) = store();
        for bad in [
            "",
            "hk_",
            "hk_xyz",
            &format!("hk_{}", "A".repeat(64)),
            &format!("sk_{}", "a".repeat(64)),
        ] {
            assert_eq!(
                s.lookup_blocking(bad).unwrap(),
                Err(KeyRefusal::Malformed),
                "{bad}"
            );
        }
        let unknown = format!("hk_{}", "a".repeat(64));
        assert_eq!(
            s.lookup_blocking(&unknown).unwrap(),
            Err(KeyRefusal::Unknown)
        );
        assert_eq!(s.cached(&unknown), Some(Err(KeyRefusal::Unknown)));
    }

    #[test]
    fn user_names_are_checked() {
        let (s, _dir) = store();
        for bad in ["", "a b", "x{y}", &"u".repeat(129)] {
            assert!(
                s.create(bad, Tier::Free, Classification::Public, 1)
                    .is_err(),
                "{bad:?}"
            );
        }
        assert!(s.list().unwrap().is_empty());
    }
}
