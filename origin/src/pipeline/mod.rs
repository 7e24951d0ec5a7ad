//! The HCFP pipeline: nine stages behind one trait, run by a small engine.
//!
//! Like pingora's proxy phases, each stage is a set of hooks and the engine only sequences
//! them: `run` on the request path (stages 3-5 repeat while a stage asks for another attempt),
//! `finish` once a streamed answer has been delivered, `fail` when the request fails. Every
//! hook is timed into the stage's total, which goes to `Server-Timing`, the `heady` object and
//! the `heady_pipeline_stage_seconds` histogram.

pub mod admission;
pub mod config;
pub mod critique;
pub mod entry;
pub mod execute;
pub mod finalize;
pub mod health;
pub mod ingest;
pub mod metrics;
pub mod monitor;
pub mod optimize;
pub mod patterns;
pub mod plan;
pub mod recover;
pub mod stream;

use crate::conductor::Conductor;
use crate::db::Database;
use crate::error::ApiError;
use crate::memory::embedder::Embedder;
use crate::memory::MemoryStore;
use crate::providers::{self, ChatReply, EventSource, ProviderEntry, ProviderError};
use crate::server::{error_response, Body};
use admission::{Admission, Permit};
use config::PipelineConfig;
use heady_shared::critique::Critique;
use heady_shared::zone::splitmix64;
use heady_shared::{GroupTable, Route, Zone};
use health::ProviderHealth;
use http::{HeaderMap, HeaderValue, Response};
use metrics::PipelineMetrics;
use patterns::PatternEngine;
use serde::Serialize;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type StageFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The nine stages, in order; the index is the stage number.
pub const STAGE_NAMES: [&str; 9] = [
    "entry", "ingest", "plan", "execute", "recover", "critique", "optimize", "finalize", "monitor",
];

/// One stage of the pipeline. Hooks have defaults so a stage implements only its phases.
pub trait Stage: Send + Sync {
    /// The stage number (0-8), the index into `STAGE_NAMES`.
    fn number(&self) -> usize;

    /// The request path. An error ends the request (after every stage's `fail`).
    fn run<'a>(
        &'a self,
        _p: &'a Pipeline,
        _job: &'a mut Job,
    ) -> StageFuture<'a, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }

    /// After a streamed answer has been sent (or the stream broke off).
    fn finish<'a>(&'a self, _p: &'a Pipeline, _job: &'a mut Job) -> StageFuture<'a, ()> {
        Box::pin(async {})
    }

    /// The request failed with `err`: undo, record, report.
    fn fail<'a>(
        &'a self,
        _p: &'a Pipeline,
        _job: &'a mut Job,
        _err: &'a ApiError,
    ) -> StageFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Which API the request came in on; it decides defaults (recall, required fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    /// `POST /api/brain/chat`
    Brain,
    /// `POST /v1/chat/completions`
    OpenAi,
    /// `POST /api/{action}`
    Action,
}

/// Validated request (stage 1).
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The OpenAI request body sent upstream (our own fields removed).
    pub body: serde_json::Map<String, serde_json::Value>,
    pub model: Option<String>,
    pub stream: bool,
    pub json_expected: bool,
    /// Text of the last user message (memory, zone, critique context).
    pub last_user_text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub provider: String,
    #[serde(skip)]
    pub index: usize,
    pub ms: f64,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critique: Option<Critique>,
    #[serde(skip)]
    pub ok: bool,
    /// The provider refused the request itself (4xx): says nothing about its health.
    #[serde(skip)]
    pub client_error: bool,
    #[serde(skip)]
    pub probe: bool,
    #[serde(skip)]
    pub recorded: bool,
}

/// Undo actions for side effects of a request that may still fail.
#[derive(Debug, Clone)]
pub enum Compensation {
    /// Memory rows written for this request.
    DeleteMemoryRows(Vec<String>),
}

/// What the plan stage decided, shown in the `heady` object and in `Server-Timing`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PlanTrace {
    pub decision: String,
    pub deadline_ms: u64,
    pub order: Vec<String>,
    pub estimates: Vec<ProviderEstimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderEstimate {
    pub provider: String,
    /// P(answer within the deadline); null until the provider has enough history.
    pub p: Option<f64>,
    pub observations: usize,
}

/// How a streamed answer ended (filled by the pump, read by `finish` hooks).
#[derive(Debug, Default)]
pub struct StreamOutcome {
    pub text: String,
    pub finish_reason: Option<String>,
    pub error: Option<ProviderError>,
    pub client_gone: bool,
    pub ms: f64,
}

/// Everything one request carries through the stages.
pub struct Job {
    pub request_id: String,
    pub surface: Surface,
    pub action: String,
    pub started: Instant,
    pub headers: HeaderMap,
    pub raw: bytes::Bytes,
    pub deadline_ms: u64,
    pub seed: u64,
    pub request: Option<ChatRequest>,
    pub session_id: Option<String>,
    pub embedding: Option<Vec<f32>>,
    pub route: Option<Route>,
    pub zone: Option<Zone>,
    pub recalled: usize,
    pub stored: Vec<String>,
    pub candidates: VecDeque<usize>,
    pub plan: PlanTrace,
    pub attempts: Vec<Attempt>,
    /// The answer of the attempt just made (non-streaming).
    pub reply: Option<ChatReply>,
    /// The best answer so far and its score.
    pub best: Option<(usize, ChatReply, f64)>,
    pub critique_retried: bool,
    pub source: Option<Box<dyn EventSource>>,
    pub stream: Option<StreamOutcome>,
    pub permit: Option<Permit>,
    pub compensations: Vec<Compensation>,
    pub retry: bool,
    pub retry_after_secs: Option<u64>,
    pub timings: [Duration; 9],
    pub ran: [bool; 9],
    pub response: Option<Response<Body>>,
}

impl Job {
    pub fn new(
        surface: Surface,
        action: &str,
        request_id: String,
        headers: HeaderMap,
        raw: bytes::Bytes,
    ) -> Job {
        Job {
            request_id,
            surface,
            action: action.to_string(),
            started: Instant::now(),
            headers,
            raw,
            deadline_ms: 0,
            seed: 0,
            request: None,
            session_id: None,
            embedding: None,
            route: None,
            zone: None,
            recalled: 0,
            stored: Vec::new(),
            candidates: VecDeque::new(),
            plan: PlanTrace::default(),
            attempts: Vec::new(),
            reply: None,
            best: None,
            critique_retried: false,
            source: None,
            stream: None,
            permit: None,
            compensations: Vec::new(),
            retry: false,
            retry_after_secs: None,
            timings: [Duration::ZERO; 9],
            ran: [false; 9],
            response: None,
        }
    }

    pub fn streaming(&self) -> bool {
        self.request.as_ref().is_some_and(|r| r.stream)
    }

    /// Milliseconds per stage that ran, in stage order.
    pub fn stage_ms(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        for i in 0..9 {
            if self.ran[i] {
                let ms = (self.timings[i].as_secs_f64() * 1e6).round() / 1e3;
                m.insert(STAGE_NAMES[i].into(), serde_json::json!(ms));
            }
        }
        m
    }

    /// `Server-Timing: entry;dur=0.012, ...` with the plan's estimate as its description.
    pub fn server_timing(&self) -> String {
        use std::fmt::Write;
        // Integer formatting (ms with three decimals from whole microseconds): float
        // formatting showed up in the overhead profile.
        let mut out = String::with_capacity(256);
        for i in 0..9 {
            if !self.ran[i] {
                continue;
            }
            if !out.is_empty() {
                out.push_str(", ");
            }
            let us = self.timings[i].as_micros();
            let _ = write!(out, "{};dur={}.{:03}", STAGE_NAMES[i], us / 1000, us % 1000);
            if i == 2 && !self.plan.decision.is_empty() {
                let _ = write!(out, ";desc=\"{}", self.plan.decision);
                if let Some(p) = self.plan.chain_p {
                    let milli = (p.clamp(0.0, 1.0) * 1000.0).round() as u32;
                    let _ = write!(out, " p={}.{:03}", milli / 1000, milli % 1000);
                }
                out.push('"');
            }
        }
        out
    }
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
    stages: [Box<dyn Stage>; 9],
    requests: AtomicU64,
    epoch: Instant,
}

impl Pipeline {
    pub fn new(
        config: PipelineConfig,
        provider_configs: &[providers::config::ProviderConfig],
        table: GroupTable,
        memory: Arc<MemoryStore>,
        db: Database,
        embedder: Arc<dyn Embedder>,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Arc<Pipeline> {
        let providers = providers::build(provider_configs);
        let health = providers
            .iter()
            .map(|_| Mutex::new(ProviderHealth::new(&config)))
            .collect();
        let patterns = PatternEngine::new(config.patterns.clone(), db);
        let p = Arc::new(Pipeline {
            admission: Arc::new(Admission::new(config.max_concurrency, config.queue_max_len)),
            metrics: PipelineMetrics::register(registry),
            patterns,
            providers,
            health,
            conductor: Conductor::new(table),
            memory,
            embedder,
            stages: [
                Box::new(entry::Entry),
                Box::new(ingest::Ingest),
                Box::new(plan::Plan),
                Box::new(execute::Execute),
                Box::new(recover::Recover),
                Box::new(critique::SelfCritique),
                Box::new(optimize::Optimize),
                Box::new(finalize::Finalize),
                Box::new(monitor::Monitor),
            ],
            requests: AtomicU64::new(0),
            epoch: Instant::now(),
            config,
        });
        patterns::start_flusher(&p);
        p
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

    async fn timed_run(&self, i: usize, job: &mut Job) -> Result<(), ApiError> {
        let t = Instant::now();
        let r = self.stages[i].run(self, job).await;
        job.timings[i] += t.elapsed();
        job.ran[i] = true;
        r
    }

    async fn run_stages(&self, job: &mut Job) -> Result<(), ApiError> {
        for i in 0..3 {
            self.timed_run(i, job).await?;
        }
        loop {
            for i in 3..6 {
                self.timed_run(i, job).await?;
            }
            if !std::mem::take(&mut job.retry) {
                break;
            }
        }
        for i in 6..9 {
            self.timed_run(i, job).await?;
        }
        Ok(())
    }

    fn observe_stages(&self, job: &Job) {
        for i in 0..9 {
            if job.ran[i] {
                self.metrics
                    .observe_stage(STAGE_NAMES[i], job.timings[i].as_secs_f64());
            }
        }
    }

    /// Runs a request through the nine stages. Errors come back as responses too, because
    /// they carry `Server-Timing` and, for 503s, `Retry-After`.
    pub async fn handle(self: &Arc<Self>, mut job: Job) -> Response<Body> {
        match self.run_stages(&mut job).await {
            Ok(()) => {
                if let Some(source) = job.source.take() {
                    let resp = stream::start(self.clone(), job, source);
                    return resp;
                }
                let mut resp = job.response.take().unwrap_or_else(|| {
                    error_response(&ApiError::internal("no response was built"))
                });
                self.observe_stages(&job);
                set_header(resp.headers_mut(), "server-timing", &job.server_timing());
                resp
            }
            Err(e) => {
                for i in 0..9 {
                    let t = Instant::now();
                    self.stages[i].fail(self, &mut job, &e).await;
                    job.timings[i] += t.elapsed();
                }
                self.observe_stages(&job);
                if e.status.is_server_error() {
                    tracing::warn!(request_id = %job.request_id, status = e.status.as_u16(), code = e.code, message = %e.message, "pipeline request failed");
                } else {
                    tracing::info!(request_id = %job.request_id, status = e.status.as_u16(), code = e.code, message = %e.message, "pipeline request refused");
                }
                let mut resp = error_response(&e);
                set_header(resp.headers_mut(), "server-timing", &job.server_timing());
                if let Some(s) = job.retry_after_secs {
                    set_header(resp.headers_mut(), "retry-after", &s.to_string());
                }
                resp
            }
        }
    }

    /// Runs every stage's `finish` hook (the end of a stream), timed into the histogram.
    pub async fn finish(&self, job: &mut Job) {
        for i in 0..9 {
            let t = Instant::now();
            self.stages[i].finish(self, job).await;
            job.timings[i] += t.elapsed();
        }
        self.observe_stages(job);
    }

    /// Writes what the pattern engine learned to DuckDB (shutdown, and the flusher).
    pub fn flush_blocking(&self) {
        if let Err(e) = self.patterns.flush_blocking() {
            tracing::warn!(error = %e, "could not persist learned paths");
        }
    }
}

pub fn set_header(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}
