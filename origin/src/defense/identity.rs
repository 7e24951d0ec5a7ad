//! Identities: API keys (`hk_` + 64 hex digits, 256 bits) stored only as SHA-256 hashes in
//! DuckDB with their user, tier, clearance, created and revoked times. High-entropy keys make
//! a plain SHA-256 the right hash (a slow password hash buys nothing and costs every request).

use duckdb::{params, Connection, OptionalExt};
use heady_shared::{Classification, Tier};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const KEY_PREFIX: &str = "hk_";
const KEY_HEX_LEN: usize = 64;
/// How long a looked-up key is trusted before DuckDB is asked again (bounds revocation delay).
const CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// The first 12 characters of the key (`hk_` + 9 hex): shown in lists, safe to log.
    pub key_id: String,
    pub user_id: String,
    pub tier: Tier,
    pub clearance: Classification,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("malformed API key: expected hk_ followed by 64 hex digits")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("API key {0} was revoked")]
    Revoked(String),
    #[error("database: {0}")]
    Db(String),
    #[error("no API key with id {0}")]
    NoSuchId(String),
}

impl From<duckdb::Error> for KeyError {
    fn from(e: duckdb::Error) -> Self {
        KeyError::Db(e.to_string())
    }
}

pub fn is_well_formed(key: &str) -> bool {
    key.len() == KEY_PREFIX.len() + KEY_HEX_LEN
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn key_id(key: &str) -> String {
    key[..12].to_string()
}

pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{KEY_PREFIX}{hex}")
}

pub struct KeyStore {
    conn: Mutex<Connection>,
    cache: Mutex<HashMap<String, (Instant, Result<ApiKeyRecord, KeyError>)>>,
}

impl KeyStore {
    pub fn open(conn: Connection) -> Result<KeyStore, KeyError> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS api_keys (
                key_hash VARCHAR PRIMARY KEY,
                key_id VARCHAR NOT NULL,
                user_id VARCHAR NOT NULL,
                tier VARCHAR NOT NULL,
                clearance VARCHAR NOT NULL,
                created_at BIGINT NOT NULL,
                revoked_at BIGINT
            );",
        )?;
        Ok(KeyStore { conn: Mutex::new(conn), cache: Mutex::new(HashMap::new()) })
    }

    /// Creates a key; the only time its plain text exists is the return value.
    pub fn create(&self, user_id: &str, tier: Tier, clearance: Classification, now_ms: i64) -> Result<(String, ApiKeyRecord), KeyError> {
        let key = generate_key();
        let record = ApiKeyRecord { key_id: key_id(&key), user_id: user_id.to_string(), tier, clearance, created_at: now_ms, revoked_at: None };
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
            params![hash_key(&key), record.key_id, record.user_id, tier.as_str(), clearance.as_str(), now_ms],
        )?;
        Ok((key, record))
    }

    pub fn list(&self) -> Result<Vec<ApiKeyRecord>, KeyError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare(
            "SELECT key_id, user_id, tier, clearance, created_at, revoked_at FROM api_keys ORDER BY created_at, key_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, i64>(4)?, r.get::<_, Option<i64>>(5)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key_id, user_id, tier, clearance, created_at, revoked_at) = row?;
            out.push(ApiKeyRecord {
                key_id,
                user_id,
                tier: tier.parse().map_err(|e: heady_shared::tiers::UnknownTier| KeyError::Db(e.to_string()))?,
                clearance: clearance.parse().map_err(|e: heady_shared::classification::UnknownClassification| KeyError::Db(e.to_string()))?,
                created_at,
                revoked_at,
            });
        }
        Ok(out)
    }

    /// Revokes by key id (the 12-character prefix `keys list` shows) or by the full key.
    pub fn revoke(&self, id_or_key: &str, now_ms: i64) -> Result<ApiKeyRecord, KeyError> {
        let n = {
            let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            if is_well_formed(id_or_key) {
                conn.execute("UPDATE api_keys SET revoked_at = ? WHERE key_hash = ? AND revoked_at IS NULL", params![now_ms, hash_key(id_or_key)])?
            } else {
                conn.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", params![now_ms, id_or_key])?
            }
        };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let wanted = if is_well_formed(id_or_key) { key_id(id_or_key) } else { id_or_key.to_string() };
        let record = self.list()?.into_iter().find(|r| r.key_id == wanted).ok_or_else(|| KeyError::NoSuchId(wanted.clone()))?;
        if n == 0 && record.revoked_at.is_none() {
            return Err(KeyError::NoSuchId(wanted));
        }
        Ok(record)
    }

    /// Looks a presented key up (cached for a few seconds). Blocking: DuckDB on a miss.
    pub fn authenticate(&self, key: &str) -> Result<ApiKeyRecord, KeyError> {
        if !is_well_formed(key) {
            return Err(KeyError::Malformed);
        }
        let hash = hash_key(key);
        if let Some((at, r)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&hash) {
            if at.elapsed() < CACHE_TTL {
                return r.clone();
            }
        }
        let found = {
            let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.query_row(
                "SELECT key_id, user_id, tier, clearance, created_at, revoked_at FROM api_keys WHERE key_hash = ?",
                params![hash],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, i64>(4)?, r.get::<_, Option<i64>>(5)?)),
            )
            .optional()?
        };
        let result = match found {
            None => Err(KeyError::Unknown),
            Some((key_id, _, _, _, _, Some(_))) => Err(KeyError::Revoked(key_id)),
            Some((key_id, user_id, tier, clearance, created_at, None)) => Ok(ApiKeyRecord {
                key_id,
                user_id,
                tier: tier.parse().unwrap_or(Tier::Free),
                clearance: clearance.parse().unwrap_or(Classification::Public),
                created_at,
                revoked_at: None,
            }),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(hash, (Instant::now(), result.clone()));
        result
    }
}
