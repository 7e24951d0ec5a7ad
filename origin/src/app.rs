//! The App: everything a request handler shares, and the owner of every background task.
//!
//! `App::open` builds the parts (database, index, embedder, pipeline, defense, Redis);
//! `App::start` spawns the background tasks through one [`Background`]; `App::shutdown` runs
//! after the HTTP server has stopped accepting and drained its connections, in this order:
//! cancel background loops and wait for every task (response streams finish), flush what
//! the pipeline learned, close memory (persist the index), checkpoint the database.

use crate::conductor::Conductor;
use crate::config::Config;
use crate::defense::keys::KeyStore;
use crate::defense::Defense;
use crate::lifecycle::Background;
use crate::memory::embedder::{self, Embedder};
use crate::memory::MemoryStore;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::redis::{Redis, RedisError};
use std::sync::Arc;
use std::time::Duration;

pub struct App {
    pub config: Config,
    pub memory: Arc<MemoryStore>,
    pub embedder: Arc<dyn Embedder>,
    pub conductor: Conductor,
    pub metrics: Arc<Metrics>,
    pub defense: Arc<Defense>,
    pub pipeline: Arc<Pipeline>,
    pub redis: Option<Arc<Redis>>,
    pub background: Background,
}

impl App {
    /// Opens the database and starts loading the index. Fails on bad config or an unusable
    /// data directory, with a message that says which. Blocking.
    pub fn open(config: Config) -> anyhow::Result<Arc<App>> {
        let background = Background::new();
        let table = config.conductor.group_table()?;
        let memory = MemoryStore::open(&config.data_dir, &config.memory)?;
        memory.start_index();
        let embedder = embedder::from_config(&config.embedder, config.memory.dim);
        let mut metrics = Metrics::default();
        let pipeline = Pipeline::new(
            config.pipeline.clone(),
            &config.providers,
            table.clone(),
            memory.clone(),
            embedder.clone(),
            background.clone(),
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
            memory.connection()?,
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
            memory,
            embedder,
            conductor: Conductor::new(table),
            metrics,
            defense,
            pipeline,
            redis,
            background,
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

    /// The end of the daemon, after the HTTP server has drained (see the module doc).
    pub async fn shutdown(self: &Arc<Self>) -> anyhow::Result<()> {
        tracing::info!("shutting down: stopping background tasks");
        self.background.shutdown().await;
        let app = self.clone();
        tokio::task::spawn_blocking(move || {
            app.pipeline.flush_blocking();
            app.memory.close_blocking()
        })
        .await??;
        tracing::info!("index persisted and database checkpointed; bye");
        Ok(())
    }
}
