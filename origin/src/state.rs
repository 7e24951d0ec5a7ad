//! What every request handler shares.

use crate::conductor::Conductor;
use crate::config::Config;
use crate::db::{Database, DbConfig};
use crate::defense::keys::KeyStore;
use crate::defense::Defense;
use crate::memory::embedder::{self, Embedder};
use crate::memory::MemoryStore;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use heady_shared::GroupTable;
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub struct AppState {
    pub config: Config,
    /// The DuckDB file every store below keeps its tables in.
    pub db: Database,
    pub memory: Arc<MemoryStore>,
    pub embedder: Arc<dyn Embedder>,
    pub conductor: Conductor,
    pub metrics: Arc<Metrics>,
    pub defense: Arc<Defense>,
    pub pipeline: Arc<Pipeline>,
    redis: Option<redis::Client>,
    redis_conn: Mutex<Option<redis::aio::ConnectionManager>>,
    /// Stops the background threads (indexer, checkpointer); cancelled by `close_blocking`.
    cancel: CancellationToken,
}

impl AppState {
    /// Opens the database and starts loading the index. Fails on bad config or an unusable
    /// data directory, with a message that says which.
    pub fn open(config: Config) -> anyhow::Result<Arc<AppState>> {
        Self::open_with(config, CancellationToken::new())
    }

    /// As `open`; the background threads also stop when `cancel` is cancelled.
    pub fn open_with(config: Config, cancel: CancellationToken) -> anyhow::Result<Arc<AppState>> {
        let cancel = cancel.child_token();
        let mut table = GroupTable::default();
        table
            .extend(config.conductor.groups.clone())
            .map_err(|e| anyhow::anyhow!("conductor.groups: {e}"))?;
        let db = Database::open(
            &config.data_dir,
            &DbConfig::from(&config.memory),
            cancel.child_token(),
        )?;
        let memory = Arc::new(MemoryStore::open(
            db.clone(),
            &config.memory,
            cancel.child_token(),
        )?);
        memory.start_indexer()?;
        let embedder = embedder::from_config(&config.embedder, config.memory.dim);
        let mut metrics = Metrics::default();
        let pipeline = Pipeline::new(
            config.pipeline.clone(),
            &config.providers,
            table.clone(),
            memory.clone(),
            db.clone(),
            embedder.clone(),
            &mut metrics.registry,
        );
        let redis = match &config.redis_url {
            Some(url) => Some(
                redis::Client::open(url.as_str()).map_err(|e| anyhow::anyhow!("redis_url: {e}"))?,
            ),
            None => None,
        };
        let metrics = Arc::new(metrics);
        let keys = KeyStore::open(
            db.clone(),
            std::time::Duration::from_secs(config.defense.key_cache_secs),
        )?;
        let defense = Arc::new(Defense::new(
            &config.defense,
            keys,
            redis.clone(),
            metrics.clone(),
        )?);
        Ok(Arc::new(AppState {
            config,
            db,
            memory,
            embedder,
            conductor: Conductor::new(table),
            metrics,
            defense,
            pipeline,
            redis,
            redis_conn: Mutex::new(None),
            cancel,
        }))
    }

    /// Shutdown, in order, once no request is in flight: what the pattern engine learned is
    /// written, the memory's indexer stops and the index is persisted, then the database
    /// folds its WAL into the file (after every user of it). Blocking.
    pub fn close_blocking(&self) -> anyhow::Result<()> {
        self.pipeline.flush_blocking();
        self.memory.close_blocking()?;
        self.cancel.cancel();
        self.db.close()?;
        Ok(())
    }

    /// PING Redis if configured. `Ok(None)` when no Redis is configured.
    pub async fn redis_ping(&self) -> Result<Option<()>, String> {
        let Some(client) = &self.redis else {
            return Ok(None);
        };
        let mut guard = self.redis_conn.lock().await;
        if guard.is_none() {
            let cfg = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(std::time::Duration::from_secs(1))
                .set_response_timeout(std::time::Duration::from_secs(1))
                .set_number_of_retries(0);
            let cm = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                redis::aio::ConnectionManager::new_with_config(client.clone(), cfg),
            )
            .await
            .map_err(|_| "timed out connecting".to_string())?
            .map_err(|e| e.to_string())?;
            *guard = Some(cm);
        }
        let mut conn = guard.as_ref().cloned().ok_or("no connection")?;
        drop(guard);
        let pong: Result<String, String> = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map_err(|_| "PING timed out".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        match pong {
            Ok(_) => Ok(Some(())),
            Err(e) => {
                // Start afresh next time rather than wait on the manager's own reconnect.
                *self.redis_conn.lock().await = None;
                Err(e)
            }
        }
    }
}
