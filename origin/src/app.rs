//! The App: everything a request handler shares, and the owner of every background task.
//!
//! `App::open` builds the parts (database, index, embedder, pipeline, defense, Redis);
//! `App::start` spawns the background tasks through one [`Background`]; `App::shutdown` runs
//! after the HTTP server has stopped accepting and drained its connections, in this order:
//! cancel background loops and wait for every task (response streams finish), flush what
//! the pipeline learned, close memory (stop the indexer, persist the index), then close the
//! database (stop the checkpointer, fold the WAL into the file).

use crate::accounts::AccountStore;
use crate::billing::Billing;
use crate::conductor::Conductor;
use crate::config::Config;
use crate::db::{Database, DbConfig};
use crate::defense::Defense;
use crate::lifecycle::Background;
use crate::memory::embedder::{self, Embedder};
use crate::memory::MemoryStore;
use crate::metrics::Metrics;
use crate::pg::PgTarget;
use crate::pipeline::Pipeline;
use crate::redis::{Redis, RedisError};
use crate::usage::{TokenLimiter, Usage, UsageMetrics, UsageStore};
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
    /// Stripe billing, when `[billing]` is configured.
    pub billing: Option<Arc<Billing>>,
    /// The Discord bot, when `[discord]` is configured.
    pub discord: Option<Arc<crate::discord::Discord>>,
    /// Usage recording, its store, and the token limiter.
    pub usage: Arc<Usage>,
    /// The MCP server's sessions (`/mcp`).
    pub mcp: crate::mcp::Sessions,
    pub background: Background,
    /// The mesh's TLS and this node's name in it, when `[mesh]` is configured.
    pub mesh: Option<(crate::mesh::MeshTls, String)>,
    /// Where the mesh listener listens, once it does (`mesh.listen` may ask for port 0).
    pub mesh_addr: std::sync::OnceLock<std::net::SocketAddr>,
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
        let redis = match &config.redis_url {
            Some(url) => Some(Arc::new(Redis::open_with_files(
                url.as_str(),
                &config.redis_tls,
                Duration::from_millis(config.defense.redis_timeout_ms),
            )?)),
            None => None,
        };
        let pg = config
            .database_url
            .as_ref()
            .map(|url| PgTarget::new(url, &config.database_tls))
            .transpose()?;
        let accounts = Arc::new(
            AccountStore::open(
                pg.as_ref(),
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
        let mesh = if config.mesh.enabled() {
            let tls = crate::mesh::MeshTls::load(&config.mesh)?;
            let name = crate::mesh::tls::own_name(&config.mesh)?;
            if !config.mesh.peers.is_empty() {
                let client = crate::mesh::MeshClient::new(&tls, Duration::from_secs(2))?;
                accounts.set_peers(Arc::new(crate::mesh::Peers::new(
                    client,
                    config.mesh.peers.clone(),
                )));
            }
            let expires = crate::mesh::tls::own_expiry(&config.mesh)?;
            let days_left = (expires - crate::accounts::now_secs()) / 86_400;
            tracing::info!(node = %name, peers = config.mesh.peers.len(), days_left, "mesh: this node's certificate loaded");
            if days_left < 14 {
                tracing::warn!(node = %name, days_left, "mesh: this node's certificate expires soon: issue a new one (heady-origin mesh issue) and restart");
            }
            Some((tls, name, expires))
        } else {
            None
        };
        // Rows stored before memory had owners go to the account named `legacy`, made only
        // when there are such rows.
        let legacy = if MemoryStore::unowned_rows(&db)? > 0 {
            let (account, _) = accounts
                .ensure_account_blocking(
                    heady_shared::account::LEGACY_ACCOUNT_NAME,
                    // Enterprise keeps rows for ever by default (`memory.retention_days`); the
                    // account has no keys, so its tier grants nothing else.
                    heady_shared::Tier::Enterprise,
                    heady_shared::Classification::Public,
                    crate::accounts::now_secs(),
                )
                .map_err(|e| anyhow::anyhow!("the legacy account: {e}"))?;
            Some(account.id)
        } else {
            None
        };
        let memory = Arc::new(MemoryStore::open(
            db.clone(),
            &config.memory,
            legacy.as_ref(),
            storage.child_token(),
        )?);
        let embedder::Selected { embedder, why } = embedder::select(
            &config.embedder,
            config.memory.dim,
            &config.data_dir,
            &db,
            memory.len(),
        )?;
        tracing::info!(embedder = embedder.name(), model = embedder.model(), why = %why, "memory: embedder in use");
        memory.start_indexer()?;
        let mut metrics = Metrics::default();
        let mesh = mesh.map(|(tls, name, expires)| {
            metrics.mesh_cert_expiry.set(expires);
            (tls, name)
        });
        let usage_store = UsageStore::open(pg.as_ref(), Some(db.clone()), Duration::from_secs(5))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let usage_metrics = UsageMetrics::register(&mut metrics.registry);
        let usage = Arc::new(Usage::new(
            config.usage.clone(),
            usage_store,
            Arc::new(TokenLimiter::new(
                redis.clone(),
                usage_metrics.limiter_degraded.clone(),
                background.clone(),
            )),
            usage_metrics,
            config.defense.enabled,
            background.clone(),
        ));
        let pipeline = Pipeline::new(
            config.pipeline.clone(),
            crate::pipeline::Parts {
                providers: &config.providers,
                groups: table.clone(),
                memory: memory.clone(),
                db: db.clone(),
                embedder: embedder.clone(),
                background: background.clone(),
                redis: redis.clone(),
            },
            &mut metrics.registry,
        );
        let billing = Billing::new(&config.billing, &metrics)?;
        let discord =
            crate::discord::Discord::new(&config.discord, redis.clone(), &mut metrics.registry)?;
        let metrics = Arc::new(metrics);
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
            billing,
            discord,
            usage,
            mcp: crate::mcp::Sessions::new(crate::mcp::SessionLimits::default()),
            background,
            mesh,
            mesh_addr: std::sync::OnceLock::new(),
            storage,
        }))
    }

    /// Starts the background tasks: the pattern flusher, the usage flusher, the memory
    /// retention sweeper, the billing grace sweeper and the Enterprise meter reporter (with
    /// billing) and the operator socket; loads the tokenizer's tables.
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        self.background.spawn(
            "usage flusher",
            crate::usage::flush_every(self.usage.clone(), self.background.token()),
        );
        self.background.spawn_to_end(async {
            let _ = tokio::task::spawn_blocking(crate::usage::tokens::warm_up).await;
        });
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
                self.account_tiers(),
                self.background.token(),
            ),
        );
        if let Some(billing) = &self.billing {
            self.background.spawn(
                "billing grace sweeper",
                crate::billing::grace::sweep_every(
                    billing.clone(),
                    self.defense.accounts.clone(),
                    self.background.token(),
                ),
            );
            let sink: Arc<dyn crate::usage::meter::MeterSink> = billing.clone();
            crate::usage::meter::spawn_reporter(
                &self.usage,
                self.defense.accounts.clone(),
                sink,
                &self.background,
            );
        }
        if let Some(path) = self.config.admin_socket_path() {
            crate::defense::admin::serve(&path, self.defense.clone(), &self.background).await?;
        }
        Ok(())
    }

    /// This node's name in the mesh (its certificate's CN), if it has one.
    pub fn mesh_name(&self) -> Option<&str> {
        self.mesh.as_ref().map(|(_, n)| n.as_str())
    }

    /// Every account's tier, for the retention sweeper (`None` when the store does not
    /// answer: that sweep is skipped).
    pub fn account_tiers(self: &Arc<Self>) -> crate::memory::retention::Tiers {
        let app = Arc::downgrade(self);
        Arc::new(move || {
            let app = app.clone();
            Box::pin(async move {
                let app = app.upgrade()?;
                match app.defense.accounts.accounts().await {
                    Ok(all) => Some(all.into_iter().map(|a| (a.id, a.tier)).collect()),
                    Err(e) => {
                        tracing::warn!(error = %e, "retention: could not list accounts; keeping rows");
                        None
                    }
                }
            })
        })
    }

    /// The last usage flush, after every request and stream has ended: retried a few times,
    /// then what could not be written is logged (its request count) and lost.
    async fn flush_usage(&self) {
        for attempt in 1..=5u64 {
            match self.usage.flush().await {
                Ok(()) => return,
                Err(e) if attempt == 5 => {
                    tracing::error!(error = %e, requests = self.usage.recorder.pending_requests(), "could not write recorded usage at shutdown; it is lost");
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "could not write recorded usage at shutdown; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
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
        self.flush_usage().await;
        let app = self.clone();
        tokio::task::spawn_blocking(move || app.close_storage()).await??;
        tracing::info!("index persisted and database checkpointed; bye");
        Ok(())
    }
}
