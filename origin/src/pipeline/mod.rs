//! The HCFP pipeline: nine stages, run in order by a small engine.
//!
//! Each stage is a function whose signature says what it needs and what it hands on
//! (`stages/`): entry -> [`Entered`], ingest -> [`Ingested`], plan -> [`Planned`], then
//! execute -> recover -> critique repeat while a fallback or a critique retry asks for another
//! attempt, and optimize, finalize and monitor close the request. What outlives one stage
//! (the attempts made, the rows written and how to undo them, the stage timings) is the
//! request's [`Ledger`]. The pipeline returns an [`Outcome`] (an answer or a stream, with its
//! `Server-Timing`) or a [`Failure`] (a typed error with the same timing); making an HTTP
//! response of either is the http layer's job.

pub mod admission;
pub mod caching;
pub mod config;
pub mod health;
pub mod metering;
pub mod metrics;
pub mod patterns;
pub mod stages;
pub mod stream;
pub mod trace;

use crate::cache::ResponseCache;
use crate::conductor::Conductor;
use crate::db::Database;
use crate::error::Error;
use crate::lifecycle::Background;
use crate::memory::embedder::Embedder;
use crate::memory::MemoryStore;
use crate::providers::{self, ProviderEntry};
use admission::Admission;
use bytes::Bytes;
use config::PipelineConfig;
use heady_shared::zone::splitmix64;
use heady_shared::GroupTable;
use health::ProviderHealth;
use http::HeaderMap;
use metrics::PipelineMetrics;
use patterns::PatternEngine;
use serde::Serialize;
use stages::{Answered, Attempt, Compensation, Stage};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;
pub use trace::{PlanTrace, ProviderEstimate, Trace};

/// Which API the request came in on; it decides defaults (recall, required fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    /// `POST /api/brain/chat`
    Brain,
    /// `POST /v1/chat/completions`
    OpenAi,
    /// `POST /api/{action}`
    Action,
}

/// Whose memory a request may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryAccess {
    /// The caller's account, and how many rows it may keep (`None`: no limit).
    Account {
        owner: heady_shared::AccountId,
        max_rows: Option<u64>,
    },
    /// Anonymous callers have no memory: nothing is recalled or stored.
    Anonymous,
}

/// What the API hands the pipeline: the request as received, not yet validated.
pub struct Inbound {
    pub surface: Surface,
    pub action: String,
    pub request_id: String,
    pub memory: MemoryAccess,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The request's charge: settled with what its provider calls used when it ends.
    pub meter: crate::usage::Meter,
    /// The caller's account opted in to the semantic cache.
    pub semantic_cache: bool,
}

/// A finished request.
pub struct Outcome {
    pub answer: Answer,
    /// `Server-Timing`: every stage's time, the plan's decision as the plan entry's description.
    pub server_timing: String,
    /// Whether the answer came from the response cache (`X-Heady-Cache`).
    pub cache: heady_shared::cache::Status,
}

pub enum Answer {
    /// OpenAI's `chat.completion` object plus the `heady` trace object.
    Json {
        body: serde_json::Value,
        provider: String,
        group: String,
    },
    /// Server-sent events (`data: {...}\n\n` ... `data: [DONE]\n\n`), fed by a pump task.
    Stream {
        events: mpsc::Receiver<Bytes>,
        provider: String,
        group: String,
    },
}

/// A failed request: what went wrong, and how long each stage took to find out.
pub struct Failure {
    pub error: Error,
    pub server_timing: String,
}

/// What a request accumulates across stages.
#[derive(Default)]
pub struct Ledger {
    pub attempts: Vec<Attempt>,
    /// Ids of the memory rows this request wrote.
    pub stored: Vec<String>,
    /// How to undo those writes if the request fails.
    pub compensations: Vec<Compensation>,
    pub trace: Trace,
    /// What each provider answer used (a critique retry adds a second).
    pub used: Vec<crate::usage::Used>,
    /// What the response cache did for this request.
    pub cache: heady_shared::cache::Status,
    /// Where the fresh answer is stored (a cache miss that may be filled).
    pub cache_plan: Option<caching::CachePlan>,
}

pub struct Pipeline {
    pub config: PipelineConfig,
    pub providers: Vec<ProviderEntry>,
    pub health: Vec<Mutex<ProviderHealth>>,
    pub admission: Arc<Admission>,
    pub patterns: PatternEngine,
    pub metrics: PipelineMetrics,
    pub conductor: Conductor,
    pub memory: Arc<MemoryStore>,
    pub embedder: Arc<dyn Embedder>,
    pub cache: Arc<ResponseCache>,
    /// Stream pumps run here, so shutdown waits for them.
    background: Background,
    requests: AtomicU64,
    epoch: Instant,
}

/// What the pipeline is built on besides its own configuration.
pub struct Parts<'a> {
    pub providers: &'a [providers::config::ProviderConfig],
    pub groups: GroupTable,
    pub memory: Arc<MemoryStore>,
    /// Where the pattern engine keeps what it learned.
    pub db: Database,
    pub embedder: Arc<dyn Embedder>,
    /// Where stream pumps run.
    pub background: Background,
    /// The response cache's shared store (`None`: in this process).
    pub redis: Option<Arc<crate::redis::Redis>>,
}

impl Pipeline {
    pub fn new(
        config: PipelineConfig,
        parts: Parts<'_>,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Arc<Pipeline> {
        let Parts {
            providers: provider_configs,
            groups: table,
            memory,
            db,
            embedder,
            background,
            redis,
        } = parts;
        let providers = providers::build(provider_configs);
        let health = providers
            .iter()
            .map(|_| Mutex::new(ProviderHealth::new(&config)))
            .collect();
        let patterns = PatternEngine::new(config.patterns.clone(), db);
        let cache = Arc::new(ResponseCache::new(
            config.cache.clone(),
            redis,
            embedder.dim(),
            background.clone(),
            registry,
        ));
        Arc::new(Pipeline {
            cache,
            admission: Arc::new(Admission::new(config.max_concurrency, config.queue_max_len)),
            metrics: PipelineMetrics::register(registry),
            patterns,
            providers,
            health,
            conductor: Conductor::new(table),
            memory,
            embedder,
            background,
            requests: AtomicU64::new(0),
            epoch: Instant::now(),
            config,
        })
    }

    /// Milliseconds on the pipeline's own monotonic clock (breakers, windows).
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A fresh seed per request: reproducible from the configured seed and the request count.
    pub fn next_seed(&self) -> u64 {
        splitmix64(self.config.readiness.seed ^ self.requests.fetch_add(1, Ordering::Relaxed))
    }

    pub fn lock_health(&self, i: usize) -> std::sync::MutexGuard<'_, ProviderHealth> {
        self.health[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a request through the nine stages.
    pub async fn run(self: &Arc<Self>, mut inbound: Inbound) -> Result<Outcome, Failure> {
        let mut ledger = Ledger::default();
        match stages::run(self, &inbound, &mut ledger).await {
            Ok(Answered::Json {
                body,
                provider,
                group,
            }) => {
                inbound.meter.take().finish(&ledger.used).await;
                self.observe(&ledger.trace);
                Ok(Outcome {
                    answer: Answer::Json {
                        body,
                        provider,
                        group,
                    },
                    server_timing: ledger.trace.server_timing(),
                    cache: ledger.cache,
                })
            }
            Ok(Answered::Replay {
                frames,
                provider,
                group,
            }) => {
                inbound.meter.take().finish(&ledger.used).await;
                self.observe(&ledger.trace);
                let (tx, events) = mpsc::channel::<Bytes>(frames.len().max(1));
                for f in frames {
                    // The channel holds every frame: nothing waits.
                    let _ = tx.try_send(f);
                }
                Ok(Outcome {
                    answer: Answer::Stream {
                        events,
                        provider,
                        group,
                    },
                    server_timing: ledger.trace.server_timing(),
                    cache: ledger.cache,
                })
            }
            Ok(Answered::Stream(opened)) => {
                let server_timing = ledger.trace.server_timing();
                let cache = ledger.cache;
                let (provider, group) = (opened.provider.clone(), opened.group.clone());
                let events = stream::start(self.clone(), &self.background, inbound, ledger, opened);
                Ok(Outcome {
                    answer: Answer::Stream {
                        events,
                        provider,
                        group,
                    },
                    server_timing,
                    cache,
                })
            }
            Err(error) => {
                stages::fail(self, &inbound, &mut ledger, &error).await;
                inbound.meter.take().finish(&ledger.used).await;
                self.observe(&ledger.trace);
                if error.is_server_error() {
                    tracing::warn!(request_id = %inbound.request_id, code = %error.code, message = %error.message, "pipeline request failed");
                } else {
                    tracing::info!(request_id = %inbound.request_id, code = %error.code, message = %error.message, "pipeline request refused");
                }
                Err(Failure {
                    error,
                    server_timing: ledger.trace.server_timing(),
                })
            }
        }
    }

    fn observe(&self, trace: &Trace) {
        for stage in Stage::ALL {
            if let Some(d) = trace.time_of(stage) {
                self.metrics.observe_stage(stage.name(), d.as_secs_f64());
            }
        }
    }

    /// Writes what the pattern engine learned to DuckDB (the flusher, and shutdown).
    pub fn flush_blocking(&self) {
        if let Err(e) = self.patterns.flush_blocking() {
            tracing::warn!(error = %e, "could not persist learned paths");
        }
    }
}
