//! Prometheus metrics: requests and latency by route and status, memory size.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Method {
    GET,
    POST,
    OTHER,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub method: Method,
    pub status: u16,
}

/// Labels of the defense decision counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DefenseLabels {
    /// allowed, metered, limited, banned, unauthenticated, forbidden, upgrade_required
    pub outcome: &'static str,
    pub tier: &'static str,
}

/// Labels of the failed-authentication counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailedAuthLabels {
    /// failed (a bad key counted), refused (429 before lookup)
    pub outcome: &'static str,
}

/// Labels of counters that only have an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Labels of the Stripe API call counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StripeLabels {
    /// customers.create, customers.retrieve, checkout.sessions.create,
    /// billing_portal.sessions.create, billing.meter_events.create
    pub call: &'static str,
    /// ok, refused (4xx), failed (5xx), unreachable, malformed
    pub outcome: &'static str,
}

/// Labels of the Stripe webhook counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// The event type billing acts on, or `other`; `unknown` before the body is verified.
    pub event: &'static str,
    /// applied, duplicate, skipped, ignored (a type billing does not act on),
    /// invalid_signature, invalid, failed
    pub outcome: &'static str,
}

/// Labels of the MCP message counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct McpLabels {
    /// initialize, ping, tools/list, tools/call, other (an unknown method), notification,
    /// response, delete, malformed (not one JSON-RPC message), post (refused before parsing)
    pub method: &'static str,
    /// The tool of a tools/call that named a known one; empty otherwise.
    pub tool: &'static str,
    /// ok, tool_error (a result with isError), rpc_error (a JSON-RPC error),
    /// unauthenticated, no_session, bad_version, malformed
    pub outcome: &'static str,
}

/// Labels of the mesh listener's request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MeshLabels {
    pub route: String,
    pub status: u16,
}

pub struct Metrics {
    pub registry: Registry,
    pub mesh_handshakes: Family<OutcomeLabels, Counter>,
    pub mesh_requests: Family<MeshLabels, Counter>,
    pub mesh_cert_expiry: Gauge,
    pub requests: Family<HttpLabels, Counter>,
    pub latency: Family<HttpLabels, Histogram>,
    pub memory_vectors: Gauge,
    pub index_vectors: Gauge,
    pub wal_bytes: Gauge,
    pub index_bytes: Gauge,
    pub index_ready: Gauge,
    pub resident_bytes: Gauge,
    pub limiter_degraded: Gauge,
    pub nonces_degraded: Gauge,
    pub defense: Family<DefenseLabels, Counter>,
    pub bans_imposed: Counter,
    pub failed_auth: Family<FailedAuthLabels, Counter>,
    pub tunnel_handshakes: Family<OutcomeLabels, Counter>,
    pub stripe_calls: Family<StripeLabels, Counter>,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub grace_expired: Counter,
    pub mcp_messages: Family<McpLabels, Counter>,
    pub mcp_sessions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<HttpLabels, Counter>::default();
        let latency = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register(
            "heady_http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "heady_http_request_duration_seconds",
            "HTTP request latency by route, method and status",
            latency.clone(),
        );
        let memory_vectors = Gauge::default();
        registry.register(
            "heady_memory_vectors",
            "Rows in conversation_vectors",
            memory_vectors.clone(),
        );
        let index_vectors = Gauge::default();
        registry.register(
            "heady_memory_index_vectors",
            "Vectors in the HNSW index",
            index_vectors.clone(),
        );
        let wal_bytes = Gauge::default();
        registry.register(
            "heady_memory_wal_bytes",
            "Bytes in DuckDB's write-ahead log (folded into the file when writes pause)",
            wal_bytes.clone(),
        );
        let index_bytes = Gauge::default();
        registry.register(
            "heady_memory_index_bytes",
            "Memory used by the HNSW index",
            index_bytes.clone(),
        );
        let index_ready = Gauge::default();
        registry.register(
            "heady_memory_index_ready",
            "1 when searches use the HNSW index, 0 while exact",
            index_ready.clone(),
        );
        let resident_bytes = Gauge::default();
        registry.register(
            "heady_process_resident_memory_bytes",
            "Resident set size of the daemon",
            resident_bytes.clone(),
        );
        let limiter_degraded = Gauge::default();
        registry.register(
            "heady_limiter_degraded",
            "1 while Redis is unreachable and the rate limiter decides in-process",
            limiter_degraded.clone(),
        );
        let nonces_degraded = Gauge::default();
        registry.register(
            "heady_nonces_degraded",
            "1 while Redis is unreachable and edge nonces are checked in-process",
            nonces_degraded.clone(),
        );
        let defense = Family::<DefenseLabels, Counter>::default();
        registry.register(
            "heady_defense_decisions",
            "Defense decisions on /api and /v1 requests by outcome and tier",
            defense.clone(),
        );
        let bans_imposed = Counter::default();
        registry.register(
            "heady_bans_imposed",
            "Subjects banned by the abuse rule",
            bans_imposed.clone(),
        );
        let failed_auth = Family::<FailedAuthLabels, Counter>::default();
        registry.register(
            "heady_failed_auth",
            "Bad API keys counted per client address, and requests refused for too many",
            failed_auth.clone(),
        );
        let tunnel_handshakes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "heady_tunnel_handshakes",
            "Tunnel session handshakes by outcome (accepted, unknown_identity, bad_transcript, replayed, stale, malformed, not_configured)",
            tunnel_handshakes.clone(),
        );
        let stripe_calls = Family::<StripeLabels, Counter>::default();
        registry.register(
            "heady_stripe_calls",
            "Calls to Stripe's API by call and outcome",
            stripe_calls.clone(),
        );
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "heady_billing_webhooks",
            "Stripe webhook deliveries by event type and outcome",
            webhooks.clone(),
        );
        let grace_expired = Counter::default();
        registry.register(
            "heady_billing_grace_expired",
            "Accounts moved to Free because their past_due grace ran out",
            grace_expired.clone(),
        );
        let mesh_handshakes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "heady_mesh_handshakes",
            "Mesh listener TLS handshakes by outcome (accepted, no_certificate, unknown_issuer, expired, revoked, bad_certificate, incompatible, timeout, tls_error, io_error)",
            mesh_handshakes.clone(),
        );
        let mesh_requests = Family::<MeshLabels, Counter>::default();
        registry.register(
            "heady_mesh_requests",
            "Mesh listener requests by route and status",
            mesh_requests.clone(),
        );
        let mesh_cert_expiry = Gauge::default();
        registry.register(
            "heady_mesh_cert_expiry_timestamp_seconds",
            "When this node's mesh certificate expires (Unix time; 0: no mesh)",
            mesh_cert_expiry.clone(),
        );
        let mcp_messages = Family::<McpLabels, Counter>::default();
        registry.register(
            "heady_mcp_messages",
            "MCP messages on /mcp by JSON-RPC method, tool and outcome",
            mcp_messages.clone(),
        );
        let mcp_sessions = Gauge::default();
        registry.register(
            "heady_mcp_sessions",
            "Open MCP sessions (idle ones not yet swept included)",
            mcp_sessions.clone(),
        );
        Metrics {
            registry,
            mcp_messages,
            mcp_sessions,
            mesh_cert_expiry,
            mesh_handshakes,
            mesh_requests,
            tunnel_handshakes,
            stripe_calls,
            webhooks,
            grace_expired,
            failed_auth,
            limiter_degraded,
            nonces_degraded,
            defense,
            bans_imposed,
            requests,
            latency,
            memory_vectors,
            index_vectors,
            wal_bytes,
            index_bytes,
            index_ready,
            resident_bytes,
        }
    }
}

impl Metrics {
    pub fn mesh_handshake(&self, outcome: &'static str) {
        self.mesh_handshakes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn mesh_request(&self, route: String, status: u16) {
        self.mesh_requests
            .get_or_create(&MeshLabels { route, status })
            .inc();
    }

    pub fn mcp_message(&self, method: &'static str, tool: &'static str, outcome: &'static str) {
        self.mcp_messages
            .get_or_create(&McpLabels {
                method,
                tool,
                outcome,
            })
            .inc();
    }

    pub fn observe(&self, route: &'static str, method: &http::Method, status: u16, secs: f64) {
        let method = match *method {
            http::Method::GET => Method::GET,
            http::Method::POST => Method::POST,
            _ => Method::OTHER,
        };
        let labels = HttpLabels {
            route,
            method,
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(secs);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Resident set size from /proc (Linux); 0 elsewhere.
pub fn resident_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<i64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}
