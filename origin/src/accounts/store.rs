//! The account store: one of two backends, a cache of key lookups, and the invalidation that
//! keeps the caches of every origin honest.

use super::billing::{Applied, BillingEvent, BillingEventRecord, Decide};
use super::broadcast::{self, Invalidation};
use super::duck::DuckAccounts;
use super::pg::PgAccounts;
use super::{
    check_label, check_models, check_name, encode_public_key, hash_of, id_of_hash, judge,
    mint_account_id, mint_key, well_formed, well_formed_id, Account, AccountChange, AccountError,
    CreatedKey, DiscordLink, Grant, KeyKind, KeyOptions, KeyRecord, KeyRefusal, PqGrant,
};
use crate::db::Database;
use crate::pg::PgTarget;
use crate::redis::Redis;
use heady_shared::http_sig::PublicKey;
use heady_shared::{AccountId, AccountStatus, Classification, Tier};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const CACHE_MAX: usize = 100_000;
/// Connections each origin keeps to PostgreSQL.
const PG_POOL: usize = 4;

/// Where accounts and keys are stored.
pub enum Backend {
    /// The daemon's DuckDB file (the embedded default).
    Duck(Arc<DuckAccounts>),
    /// PostgreSQL, shared by every origin.
    Pg(PgAccounts),
}

/// Runs blocking DuckDB work off the async runtime.
macro_rules! duck {
    ($d:expr, |$s:ident| $body:expr) => {{
        let $s = $d.clone();
        crate::rt::blocking(move || $body)
            .await
            .map_err(|e| AccountError::Store(e.message))?
    }};
}

pub struct AccountStore {
    backend: Backend,
    /// hash -> (what the store said, when).
    cache: RwLock<HashMap<String, (Option<Grant>, Instant)>>,
    /// ML-DSA-65 key id -> (what the store said, when).
    pq_cache: RwLock<HashMap<String, (Option<PqGrant>, Instant)>>,
    cache_ttl: Duration,
    redis: Option<Arc<Redis>>,
    /// The other origins' mesh listeners, told of every change (`mesh.peers`).
    peers: std::sync::OnceLock<Arc<dyn broadcast::Announce>>,
}

impl AccountStore {
    /// PostgreSQL when `pg` is given (connects and migrates: needs a tokio runtime, and must
    /// not be called on one of its worker threads: use [`AccountStore::connect`] there), else
    /// the DuckDB file `db` (migrating an old `api_keys` table). Blocking.
    pub fn open(
        pg: Option<&PgTarget>,
        db: Option<Database>,
        cache_ttl: Duration,
        redis: Option<Arc<Redis>>,
        timeout: Duration,
    ) -> Result<AccountStore, AccountError> {
        match pg {
            Some(_) => {
                let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                    AccountError::Store("the PostgreSQL backend needs a tokio runtime".into())
                })?;
                handle.block_on(Self::connect(pg, db, cache_ttl, redis, timeout))
            }
            None => Self::with_backend(Self::duck(db)?, cache_ttl, redis),
        }
    }

    /// [`AccountStore::open`] for async callers.
    pub async fn connect(
        pg: Option<&PgTarget>,
        db: Option<Database>,
        cache_ttl: Duration,
        redis: Option<Arc<Redis>>,
        timeout: Duration,
    ) -> Result<AccountStore, AccountError> {
        let backend = match pg {
            Some(pg) => {
                Backend::Pg(PgAccounts::open(pg, PG_POOL, timeout).await.map_err(|e| {
                    AccountError::Store(format!("database_url {}: {e}", pg.shown()))
                })?)
            }
            None => Self::duck(db)?,
        };
        Self::with_backend(backend, cache_ttl, redis)
    }

    fn duck(db: Option<Database>) -> Result<Backend, AccountError> {
        let db = db.ok_or_else(|| {
            AccountError::Store("no account store: neither database_url nor a DuckDB file".into())
        })?;
        Ok(Backend::Duck(Arc::new(DuckAccounts::open(
            db,
            super::now_secs(),
        )?)))
    }

    fn with_backend(
        backend: Backend,
        cache_ttl: Duration,
        redis: Option<Arc<Redis>>,
    ) -> Result<AccountStore, AccountError> {
        Ok(AccountStore {
            backend,
            cache: RwLock::new(HashMap::new()),
            pq_cache: RwLock::new(HashMap::new()),
            cache_ttl,
            redis,
            peers: std::sync::OnceLock::new(),
        })
    }

    /// `"postgres"` or `"duckdb"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Duck(_) => "duckdb",
            Backend::Pg(_) => "postgres",
        }
    }

    pub fn redis(&self) -> Option<&Arc<Redis>> {
        self.redis.as_ref()
    }

    pub async fn create_account(
        &self,
        name: &str,
        tier: Tier,
        clearance: Classification,
        now_secs: i64,
    ) -> Result<Account, AccountError> {
        check_name(name)?;
        let a = Account::new(name, tier, clearance, now_secs);
        match &self.backend {
            Backend::Duck(d) => {
                let a = a.clone();
                duck!(d, |d| d.insert_account(&a))?
            }
            Backend::Pg(p) => p.insert_account(&a).await?,
        }
        Ok(a)
    }

    /// The account named `name`, created with `tier` and `clearance` when there is none (an
    /// existing account keeps its own). `bool`: whether it was created.
    pub async fn ensure_account(
        &self,
        name: &str,
        tier: Tier,
        clearance: Classification,
        now_secs: i64,
    ) -> Result<(Account, bool), AccountError> {
        check_name(name)?;
        if let Some(a) = self.account_by_name(name).await? {
            return Ok((a, false));
        }
        match self.create_account(name, tier, clearance, now_secs).await {
            Ok(a) => Ok((a, true)),
            // Made by someone else meanwhile.
            Err(AccountError::Conflict(_)) => self
                .account_by_name(name)
                .await?
                .map(|a| (a, false))
                .ok_or_else(|| AccountError::Store(format!("account {name:?} vanished"))),
            Err(e) => Err(e),
        }
    }

    /// [`AccountStore::ensure_account`] for blocking callers (start-up). On PostgreSQL it needs
    /// a tokio runtime and must not run on one of its worker threads, as `open`.
    pub fn ensure_account_blocking(
        &self,
        name: &str,
        tier: Tier,
        clearance: Classification,
        now_secs: i64,
    ) -> Result<(Account, bool), AccountError> {
        match &self.backend {
            Backend::Duck(d) => {
                check_name(name)?;
                if let Some(a) = d.account_by_name(name)? {
                    return Ok((a, false));
                }
                let a = Account::new(name, tier, clearance, now_secs);
                d.insert_account(&a)?;
                Ok((a, true))
            }
            Backend::Pg(_) => {
                let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                    AccountError::Store("the PostgreSQL backend needs a tokio runtime".into())
                })?;
                handle.block_on(self.ensure_account(name, tier, clearance, now_secs))
            }
        }
    }

    pub async fn account(&self, id: &AccountId) -> Result<Option<Account>, AccountError> {
        match &self.backend {
            Backend::Duck(d) => {
                let id = id.clone();
                duck!(d, |d| d.account(&id))
            }
            Backend::Pg(p) => p.account(id).await,
        }
    }

    pub async fn account_by_name(&self, name: &str) -> Result<Option<Account>, AccountError> {
        match &self.backend {
            Backend::Duck(d) => {
                let name = name.to_string();
                duck!(d, |d| d.account_by_name(&name))
            }
            Backend::Pg(p) => p.account_by_name(name).await,
        }
    }

    /// The account with this id, or 404-worthy `NotFound`.
    pub async fn require_account(&self, id: &AccountId) -> Result<Account, AccountError> {
        self.account(id)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("no account with id {id}")))
    }

    pub async fn accounts(&self) -> Result<Vec<Account>, AccountError> {
        match &self.backend {
            Backend::Duck(d) => duck!(d, |d| d.accounts()),
            Backend::Pg(p) => p.accounts().await,
        }
    }

    /// Changes tier, clearance, status or the semantic-cache switch; every origin's cached keys
    /// of the account are dropped (here at once, elsewhere through the broadcast), so the next
    /// request's identity carries the change.
    pub async fn update_account(
        &self,
        id: &AccountId,
        change: &AccountChange,
    ) -> Result<Account, AccountError> {
        if change.is_empty() {
            return Err(AccountError::invalid(
                "tier",
                "nothing to change: give tier, clearance, status or semantic_cache",
            ));
        }
        let updated = match &self.backend {
            Backend::Duck(d) => {
                let (id, change) = (id.clone(), change.clone());
                duck!(d, |d| d.update_account(&id, &change))?
            }
            Backend::Pg(p) => p.update_account(id, change).await?,
        };
        let a =
            updated.ok_or_else(|| AccountError::NotFound(format!("no account with id {id}")))?;
        self.invalidate(Invalidation::Account(id.clone())).await;
        Ok(a)
    }

    /// The account whose Stripe customer is `customer`.
    pub async fn account_by_customer(
        &self,
        customer: &str,
    ) -> Result<Option<Account>, AccountError> {
        match &self.backend {
            Backend::Duck(d) => {
                let c = customer.to_string();
                duck!(d, |d| d.account_by_customer(&c))
            }
            Backend::Pg(p) => p.account_by_customer(customer).await,
        }
    }

    /// Gives the account the Stripe customer `customer` unless it has one already; the
    /// account as stored after (its customer is whichever was set first). A customer that
    /// belongs to another account is a `Conflict`.
    pub async fn attach_customer(
        &self,
        id: &AccountId,
        customer: &str,
    ) -> Result<Account, AccountError> {
        let a = match &self.backend {
            Backend::Duck(d) => {
                let (i, c) = (id.clone(), customer.to_string());
                duck!(d, |d| d.attach_customer(&i, &c))?
            }
            Backend::Pg(p) => p.attach_customer(id, customer).await?,
        };
        let a = a.ok_or_else(|| AccountError::NotFound(format!("no account with id {id}")))?;
        self.invalidate(Invalidation::Account(id.clone())).await;
        Ok(a)
    }

    /// Has the webhook event with this id been processed? (A cheap check before any work; the
    /// transaction in [`AccountStore::apply_billing_event`] is what guarantees once.)
    pub async fn billing_event_seen(&self, event_id: &str) -> Result<bool, AccountError> {
        match &self.backend {
            Backend::Duck(d) => {
                let e = event_id.to_string();
                duck!(d, |d| d.billing_event_seen(&e))
            }
            Backend::Pg(p) => p.billing_event_seen(event_id).await,
        }
    }

    /// Records a verified webhook event and, in the same transaction, stores what `decide`
    /// makes of the account `id` as it is stored now (`Err(reason)`: record only, with that
    /// outcome). An event id seen before changes nothing. A changed account is dropped from
    /// every origin's cache as an operator's change is (here at once, elsewhere through the
    /// Redis broadcast), so the new tier holds everywhere.
    pub async fn apply_billing_event(
        &self,
        id: Option<&AccountId>,
        event: &BillingEvent,
        now_secs: i64,
        decide: Result<Decide, String>,
    ) -> Result<Applied, AccountError> {
        let applied = match &self.backend {
            Backend::Duck(d) => {
                let (i, e) = (id.cloned(), event.clone());
                duck!(d, |d| d.apply_billing_event(
                    i.as_ref(),
                    &e,
                    now_secs,
                    decide
                ))?
            }
            Backend::Pg(p) => p.apply_billing_event(id, event, now_secs, decide).await?,
        };
        if let Applied::Updated { after, .. } = &applied {
            self.invalidate(Invalidation::Account(after.id.clone()))
                .await;
        }
        Ok(applied)
    }

    /// The processed webhook events of one account, oldest first.
    pub async fn billing_events(
        &self,
        id: &AccountId,
    ) -> Result<Vec<BillingEventRecord>, AccountError> {
        match &self.backend {
            Backend::Duck(d) => {
                let i = id.clone();
                duck!(d, |d| d.billing_events(&i))
            }
            Backend::Pg(p) => p.billing_events(id).await,
        }
    }

    /// Moves to Free every account whose subscription has been `past_due` since `cutoff` or
    /// earlier (its grace period is over) and that still has a paid tier; each is dropped from
    /// every origin's cache. The accounts as changed.
    pub async fn expire_past_due(&self, cutoff: i64) -> Result<Vec<Account>, AccountError> {
        let changed = match &self.backend {
            Backend::Duck(d) => duck!(d, |d| d.expire_past_due(cutoff))?,
            Backend::Pg(p) => p.expire_past_due(cutoff).await?,
        };
        for a in &changed {
            self.invalidate(Invalidation::Account(a.id.clone())).await;
        }
        Ok(changed)
    }

    /// Mints a key for an existing account; the secret is in the answer only.
    pub async fn create_key(
        &self,
        account: &AccountId,
        opts: KeyOptions,
        now_secs: i64,
    ) -> Result<CreatedKey, AccountError> {
        self.add_key(&mint_key(), account, opts, now_secs).await
    }

    /// Stores the hash of a key made elsewhere (`keys add`), or of a new one.
    pub async fn add_key(
        &self,
        key: &str,
        account: &AccountId,
        opts: KeyOptions,
        now_secs: i64,
    ) -> Result<CreatedKey, AccountError> {
        if !well_formed(key) {
            return Err(AccountError::invalid(
                "key",
                "expected hk_ followed by 64 lowercase hex digits",
            ));
        }
        if let Some(l) = &opts.label {
            check_label(l)?;
        }
        let models = opts.models.as_deref().map(check_models).transpose()?;
        if let Some(at) = opts.expires_at {
            if at <= now_secs {
                return Err(AccountError::invalid("expires", "must be in the future"));
            }
        }
        self.require_account(account).await?;
        let hash = hash_of(key);
        let record = KeyRecord {
            id: id_of_hash(&hash),
            account_id: account.clone(),
            label: opts.label,
            created_at: now_secs,
            expires_at: opts.expires_at,
            models,
            revoked_at: None,
            kind: KeyKind::Bearer,
        };
        match &self.backend {
            Backend::Duck(d) => {
                let (r, h) = (record.clone(), hash.clone());
                duck!(d, |d| d.insert_key(&r, &h, None))?
            }
            Backend::Pg(p) => p.insert_key(&record, &hash, None).await?,
        }
        // A miss may be cached for this key (tried before it existed).
        self.invalidate(Invalidation::Key(record.id.clone())).await;
        Ok(CreatedKey {
            key: key.to_string(),
            record,
        })
    }

    /// Registers an ML-DSA-65 public key for an Enterprise account (others:
    /// `UpgradeRequired`); its id is the first 16 hex digits of the key's SHA-256.
    pub async fn register_pq_key(
        &self,
        account: &AccountId,
        public_key: &PublicKey,
        label: Option<String>,
        now_secs: i64,
    ) -> Result<KeyRecord, AccountError> {
        if let Some(l) = &label {
            check_label(l)?;
        }
        let a = self.require_account(account).await?;
        if a.tier != Tier::Enterprise {
            return Err(AccountError::UpgradeRequired(format!(
                "PQC API keys are for Enterprise accounts; account {} is {}",
                a.id, a.tier
            )));
        }
        let hash = public_key.hash_hex();
        let record = KeyRecord {
            id: public_key.key_id(),
            account_id: account.clone(),
            label,
            created_at: now_secs,
            expires_at: None,
            models: None,
            revoked_at: None,
            kind: KeyKind::MlDsa65,
        };
        let encoded = encode_public_key(public_key);
        match &self.backend {
            Backend::Duck(d) => {
                let (r, h) = (record.clone(), hash.clone());
                duck!(d, |d| d.insert_key(&r, &h, Some(&encoded)))?
            }
            Backend::Pg(p) => p.insert_key(&record, &hash, Some(&encoded)).await?,
        }
        self.invalidate(Invalidation::Key(record.id.clone())).await;
        Ok(record)
    }

    pub async fn keys(&self, account: Option<&AccountId>) -> Result<Vec<KeyRecord>, AccountError> {
        match &self.backend {
            Backend::Duck(d) => {
                let a = account.cloned();
                duck!(d, |d| d.keys(a.as_ref()))
            }
            Backend::Pg(p) => p.keys(account).await,
        }
    }

    /// Links a Discord user to an account (replacing the user's and the account's earlier
    /// links); `NotFound` for an unknown account.
    pub async fn link_discord(&self, link: &DiscordLink) -> Result<(), AccountError> {
        self.require_account(&link.account_id).await?;
        match &self.backend {
            Backend::Duck(d) => {
                let l = link.clone();
                duck!(d, |d| d.link_discord(&l))
            }
            Backend::Pg(p) => p.link_discord(link).await,
        }
    }

    /// The account a Discord user is linked to, with the link. A disabled account's link
    /// does not count: `None`, as for a user never linked.
    pub async fn discord_account(
        &self,
        user_id: &str,
    ) -> Result<Option<(DiscordLink, Account)>, AccountError> {
        let link = match &self.backend {
            Backend::Duck(d) => {
                let u = user_id.to_string();
                duck!(d, |d| d.discord_link("user_id", &u))?
            }
            Backend::Pg(p) => p.discord_link("user_id", user_id).await?,
        };
        let Some(link) = link else { return Ok(None) };
        Ok(self
            .account(&link.account_id)
            .await?
            .filter(|a| a.status == AccountStatus::Active)
            .map(|a| (link, a)))
    }

    /// The Discord user linked to an account, if any.
    pub async fn discord_link_of(
        &self,
        account: &AccountId,
    ) -> Result<Option<DiscordLink>, AccountError> {
        match &self.backend {
            Backend::Duck(d) => {
                let a = account.as_str().to_string();
                duck!(d, |d| d.discord_link("account_id", &a))
            }
            Backend::Pg(p) => p.discord_link("account_id", account.as_str()).await,
        }
    }

    /// Removes the account's Discord link; whether there was one.
    pub async fn unlink_discord(&self, account: &AccountId) -> Result<bool, AccountError> {
        match &self.backend {
            Backend::Duck(d) => {
                let a = account.clone();
                duck!(d, |d| d.unlink_discord(&a))
            }
            Backend::Pg(p) => p.unlink_discord(account).await,
        }
    }

    /// Revokes by id (revoking twice keeps the first time); `NotFound` for an unknown id.
    pub async fn revoke_key(&self, id: &str, now_secs: i64) -> Result<KeyRecord, AccountError> {
        let not_found = || AccountError::NotFound(format!("no key with id {id:?}"));
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let r = match &self.backend {
            Backend::Duck(d) => {
                let i = id.to_string();
                duck!(d, |d| d.revoke_key(&i, now_secs))?
            }
            Backend::Pg(p) => p.revoke_key(id, now_secs).await?,
        };
        let r = r.ok_or_else(not_found)?;
        self.invalidate(Invalidation::Key(r.id.clone())).await;
        Ok(r)
    }

    /// Cached verdict; `None` when the cache has nothing fresh. Cheap: no I/O.
    pub fn cached(&self, key: &str, now_secs: i64) -> Option<Result<Grant, KeyRefusal>> {
        if !well_formed(key) {
            return Some(Err(KeyRefusal::Malformed));
        }
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let (found, at) = cache.get(&hash_of(key))?;
        if at.elapsed() > self.cache_ttl {
            return None;
        }
        Some(judge(found.as_ref(), now_secs).cloned())
    }

    /// Looks the key up in the store and caches what it found.
    pub async fn lookup(
        &self,
        key: &str,
        now_secs: i64,
    ) -> Result<Result<Grant, KeyRefusal>, AccountError> {
        if !well_formed(key) {
            return Ok(Err(KeyRefusal::Malformed));
        }
        let hash = hash_of(key);
        let found = match &self.backend {
            Backend::Duck(d) => {
                let h = hash.clone();
                duck!(d, |d| d.grant(&h))?
            }
            Backend::Pg(p) => p.grant(&hash).await?,
        };
        let verdict = judge(found.as_ref(), now_secs).cloned();
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            let ttl = self.cache_ttl;
            cache.retain(|_, (_, at)| at.elapsed() <= ttl);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(hash, (found, Instant::now()));
        Ok(verdict)
    }

    /// Cached verdict on the ML-DSA-65 key `id`; `None` when the cache has nothing fresh.
    pub fn pq_cached(&self, id: &str, now_secs: i64) -> Option<Result<PqGrant, KeyRefusal>> {
        if !well_formed_id(id) {
            return Some(Err(KeyRefusal::Malformed));
        }
        let cache = self.pq_cache.read().unwrap_or_else(|p| p.into_inner());
        let (found, at) = cache.get(id)?;
        if at.elapsed() > self.cache_ttl {
            return None;
        }
        Some(pq_verdict(found.as_ref(), now_secs))
    }

    /// Looks the ML-DSA-65 key `id` up in the store and caches what it found.
    pub async fn pq_lookup(
        &self,
        id: &str,
        now_secs: i64,
    ) -> Result<Result<PqGrant, KeyRefusal>, AccountError> {
        if !well_formed_id(id) {
            return Ok(Err(KeyRefusal::Malformed));
        }
        let found = match &self.backend {
            Backend::Duck(d) => {
                let i = id.to_string();
                duck!(d, |d| d.pq_grant(&i))?
            }
            Backend::Pg(p) => p.pq_grant(id).await?,
        };
        let verdict = pq_verdict(found.as_ref(), now_secs);
        let mut cache = self.pq_cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            let ttl = self.cache_ttl;
            cache.retain(|_, (_, at)| at.elapsed() <= ttl);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(id.to_string(), (found, Instant::now()));
        Ok(verdict)
    }

    /// Drops the cached lookups `inv` affects, here only.
    pub fn drop_cached(&self, inv: &Invalidation) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let mut pq = self.pq_cache.write().unwrap_or_else(|p| p.into_inner());
        match inv {
            Invalidation::Account(id) => {
                cache.retain(|_, (g, _)| g.as_ref().is_none_or(|g| &g.account.id != id));
                pq.retain(|_, (g, _)| g.as_ref().is_none_or(|g| &g.grant.account.id != id));
            }
            // The id is the hash's first 16 digits: misses are matched too.
            Invalidation::Key(id) => {
                cache.retain(|hash, _| !hash.starts_with(id.as_str()));
                pq.remove(id);
            }
        }
    }

    /// Forgets every cached lookup (after the broadcast was interrupted).
    pub fn clear_cache(&self) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.pq_cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Tell these peers of every change from now on (once).
    pub fn set_peers(&self, peers: Arc<dyn broadcast::Announce>) {
        let _ = self.peers.set(peers);
    }

    /// Drops the entries here and tells the other origins: on Redis when it is configured,
    /// and through the mesh to `mesh.peers`.
    async fn invalidate(&self, inv: Invalidation) {
        self.drop_cached(&inv);
        let mesh = async {
            if let Some(peers) = self.peers.get() {
                peers.announce(&inv).await;
            }
        };
        let redis = async {
            if let Some(r) = &self.redis {
                if let Err(e) = broadcast::publish(r, &inv).await {
                    tracing::warn!(error = %e, what = %inv, "could not broadcast an account change: other origins see it within defense.key_cache_secs");
                }
            }
        };
        tokio::join!(mesh, redis);
    }

    /// Can the store answer? (`/ready`.)
    pub async fn ping(&self) -> Result<(), AccountError> {
        match &self.backend {
            Backend::Duck(_) => Ok(()),
            Backend::Pg(p) => p.ping().await,
        }
    }

    /// Applies missing PostgreSQL migrations (`open` already did); DuckDB: nothing to do.
    pub async fn migrate(&self) -> Result<Vec<i32>, AccountError> {
        match &self.backend {
            Backend::Duck(_) => Ok(Vec::new()),
            Backend::Pg(p) => p.migrate().await,
        }
    }
}

/// [`judge`] for an ML-DSA-65 key (the tier is checked after the signature verifies).
fn pq_verdict(found: Option<&PqGrant>, now_secs: i64) -> Result<PqGrant, KeyRefusal> {
    match found {
        Some(g) => judge(Some(&g.grant), now_secs).map(|_| g.clone()),
        None => Err(KeyRefusal::Unknown),
    }
}

impl Account {
    /// A new active account with a fresh id (not yet stored).
    pub fn new(name: &str, tier: Tier, clearance: Classification, now_secs: i64) -> Account {
        Account {
            id: mint_account_id(),
            name: name.to_string(),
            tier,
            clearance,
            status: AccountStatus::Active,
            created_at: now_secs,
            stripe_customer_id: None,
            stripe_subscription_id: None,
            subscription: super::Subscription::default(),
            semantic_cache: false,
        }
    }
}
