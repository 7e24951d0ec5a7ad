//! The App: everything a request handler shares, and the owner of every background task.
//!
//! `App::open` builds the parts (database, index, embedder, pipeline, defense, Redis);
//! `App::start` spawns the background tasks through one [`Background`]; `App::shutdown` runs
//! after the HTTP server has stopped accepting and drained its connections, in this order:
//! cancel background loops and wait for every task (response streams finish), flush what
//! the pipeline learned, close memory (stop the indexer, persist the index), then close the
//! database (stop the checkpointer, fold the WAL into the file).

use crate::accounts::AccountStore;
use crate::conductor::Conductor;
use crate::config::Config;
use crate::db::{Database, DbConfig};
use crate::defense::Defense;
use crate::lifecycle::Background;
use crate::memory::embedder::{self, Embedder};
use crate::memory::MemoryStore;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::redis::{Redis, RedisError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct App {
    pub config: Config,
    /// The DuckDB file memory, accounts (unless `database_url`) and the pattern engine keep
    /// their tables in.
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
        let accounts = Arc::new(
            AccountStore::open(
                config.database_url.as_ref(),
                Some(db.clone()),
                Duration::from_secs(config.defense.key_cache_secs),
                redis.clone(),
                Duration::from_secs(5),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        if let Some(r) = &redis {
            crate::accounts::broadcast::subscribe(accounts.clone(), r.clone(), &background);
        }
        let defense = Arc::new(Defense::new(
            &config.defense,
            accounts,
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

    /// Starts the background tasks: the pattern flusher and the operator socket.
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        let pipeline = self.pipeline.clone();
        let token = self.background.token();
        self.background.spawn(
            "pattern flusher",
            crate::pipeline::patterns::flush_every(pipeline, token),
        );
        if let Some(path) = self.config.admin_socket_path() {
            crate::defense::admin::serve(&path, self.defense.clone(), &self.background).await?;
        }
        Ok(())
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
