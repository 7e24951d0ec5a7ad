//! The App: everything a request handler shares, and the owner of every background task.
//!
//! `App::open` builds the parts (database, index, embedder, pipeline, defense, Redis);
//! `App::start` spawns the background tasks through one [`Background`]; `App::shutdown` runs
//! after the HTTP server has stopped accepting and drained its connections, in this order:
//! cancel background loops and wait for every task (response streams finish), flush what
//! the pipeline learned, close memory (stop the indexer, persist the index), then close the
//! database (stop the checkpointer, fold the WAL into the file).

use crate::conductor::Conductor;
use crate::config::Config;
use crate::db::{Database, DbConfig};
use crate::defense::keys::KeyStore;
use crate::defense::Defense;
use crate::lifecycle::Background;
use crate::memory::embedder::{self, Embedder};
use crate::memory::retention::TierOf;
use crate::memory::{provisional_account, MemoryStore};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::redis::{Redis, RedisError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct App {
    pub config: Config,
    /// The DuckDB file memory, keys and the pattern engine keep their tables in.
    pub db: Database,
    pub memory: Arc<MemoryStore>,
    pub embedder: Arc<dyn Embedder>,
    pub conductor: Conductor,
    pub metrics: Arc<Metrics>,
    pub defense: Arc<Defense>,
    pub pipeline: Arc<Pipeline>,
    pub redis: Option<Arc<Redis>>,
    pub background: Background,
    /// Stops the storage threads (indexer, checkpointer); cancelled after memory has closed.
    storage: CancellationToken,
}

impl App {
    /// Opens the database and starts loading the index. Fails on bad config or an unusable
    /// data directory, with a message that says which. Blocking.
    pub fn open(config: Config) -> anyhow::Result<Arc<App>> {
        let background = Background::new();
        let table = config.conductor.group_table()?;
        let storage = CancellationToken::new();
        let db = Database::open(
            &config.data_dir,
            &DbConfig::from(&config.memory),
            storage.child_token(),
        )?;
        let memory = Arc::new(MemoryStore::open(
            db.clone(),
            &config.memory,
            &legacy_owner(),
            storage.child_token(),
        )?);
        memory.start_indexer()?;
        let embedder = embedder::from_config(&config.embedder, config.memory.dim);
        let mut metrics = Metrics::default();
        let pipeline = Pipeline::new(
            config.pipeline.clone(),
            crate::pipeline::Parts {
                providers: &config.providers,
                groups: table.clone(),
                memory: memory.clone(),
                db: db.clone(),
                embedder: embedder.clone(),
                background: background.clone(),
            },
            &mut metrics.registry,
        );
        let redis = match &config.redis_url {
            Some(url) => Some(Arc::new(Redis::open(
                url.as_str(),
                Duration::from_millis(config.defense.redis_timeout_ms),
            )?)),
            None => None,
        };
        let metrics = Arc::new(metrics);
        let keys = KeyStore::open(
            db.clone(),
            Duration::from_secs(config.defense.key_cache_secs),
        )?;
        let defense = Arc::new(Defense::new(
            &config.defense,
            keys,
            redis.clone(),
            metrics.clone(),
            background.clone(),
        )?);
        Ok(Arc::new(App {
            config,
            db,
            memory,
            embedder,
            conductor: Conductor::new(table),
            metrics,
            defense,
            pipeline,
            redis,
            background,
            storage,
        }))
    }

    /// Starts the background tasks: the pattern flusher, the memory retention sweeper and
    /// the operator socket.
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        let pipeline = self.pipeline.clone();
        let token = self.background.token();
        self.background.spawn(
            "pattern flusher",
            crate::pipeline::patterns::flush_every(pipeline, token),
        );
        self.background.spawn(
            "memory retention sweeper",
            crate::memory::retention::sweep_every(
                self.memory.clone(),
                self.config.memory.retention_days,
                Duration::from_secs(self.config.memory.sweep_interval_secs),
                self.owner_tiers(),
                self.background.token(),
            ),
        );
        if let Some(path) = self.config.admin_socket_path() {
            crate::defense::admin::serve(&path, self.defense.clone(), &self.background).await?;
        }
        Ok(())
    }

    /// The tier of a memory owner, for the retention sweeper: the best tier among the
    /// unrevoked keys that act for it. The accounts store, which keeps each account's tier,
    /// replaces this.
    pub fn owner_tiers(self: &Arc<Self>) -> TierOf {
        let app = Arc::downgrade(self);
        Arc::new(move |owner| {
            let app = app.upgrade()?;
            let keys = match app.defense.keys.list() {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(error = %e, "retention: could not list keys; keeping rows");
                    return None;
                }
            };
            keys.iter()
                .filter(|k| k.revoked_at.is_none())
                .filter(|k| k.user == owner.as_str() || provisional_account(&k.user) == *owner)
                .map(|k| k.tier)
                .max()
        })
    }

    /// PING Redis if configured. `Ok(None)` when no Redis is configured.
    pub async fn redis_ping(&self) -> Result<Option<()>, RedisError> {
        match &self.redis {
            None => Ok(None),
            Some(r) => r.ping().await.map(Some),
        }
    }

    /// What the pattern engine learned is written, the indexer stops and the index is
    /// persisted, then the database folds its WAL into the file, after every user of it.
    /// Blocking.
    pub fn close_storage(&self) -> anyhow::Result<()> {
        self.pipeline.flush_blocking();
        self.memory.close_blocking()?;
        self.storage.cancel();
        self.db.close()?;
        Ok(())
    }

    /// The end of the daemon, after the HTTP server has drained (see the module doc).
    pub async fn shutdown(self: &Arc<Self>) -> anyhow::Result<()> {
        tracing::info!("shutting down: stopping background tasks");
        self.background.shutdown().await;
        let app = self.clone();
        tokio::task::spawn_blocking(move || app.close_storage()).await??;
        tracing::info!("index persisted and database checkpointed; bye");
        Ok(())
    }
}

/// The account that rows stored before memory had owners belong to (the account named
/// `heady_shared::account::LEGACY_ACCOUNT_NAME`). Until the accounts store lands it is the
/// provisional id of that name; the accounts store supplies the real account's id instead.
pub fn legacy_owner() -> heady_shared::AccountId {
    provisional_account(heady_shared::account::LEGACY_ACCOUNT_NAME)
}
