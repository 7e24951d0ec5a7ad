//! Liveness, readiness and metrics.

use crate::error::ApiError;
use crate::server::{json_response, Body, Ctx};
use crate::state::AppState;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;

pub async fn health(_s: Arc<AppState>, _c: Ctx) -> Result<Response<Body>, ApiError> {
    Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
}

/// Who the origin takes the caller to be: the edge asks this on a session-cache miss.
pub async fn identity(_s: Arc<AppState>, c: Ctx) -> Result<Response<Body>, ApiError> {
    let who = &c.identity;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "subject": who.subject,
            "tier": who.tier,
            "clearance": who.clearance.as_str().to_ascii_lowercase(),
            "key_id": who.key_id,
            "anonymous": who.anonymous,
            "limits": who.tier.limits(),
            "features": who.tier.features(),
            "ttl_secs": SESSION_TTL_SECS,
        }),
    ))
}

/// How long the edge may cache an identity answer in its KV session cache. The origin still
/// checks the key on every tunnelled request, so a revocation is exact here.
pub const SESSION_TTL_SECS: u64 = 60;

/// Ready when DuckDB answers, and Redis too when one is configured.
pub async fn ready(s: Arc<AppState>, _c: Ctx) -> Result<Response<Body>, ApiError> {
    let memory = s.memory.clone();
    let duck = super::blocking(move || memory.ping_blocking()).await?;
    let redis = s.redis_ping().await;
    let duck_ok = duck.is_ok();
    let redis_ok = redis.is_ok();
    let body = json!({
        "status": if duck_ok && redis_ok { "ready" } else { "not_ready" },
        "checks": {
            "duckdb": match &duck { Ok(()) => "ok".to_string(), Err(e) => e.to_string() },
            "redis": match &redis { Ok(Some(())) => "ok".to_string(), Ok(None) => "not configured".to_string(), Err(e) => e.clone() },
            "index": s.memory.index_stats().state,
            "limiter": if !s.defense.limiter.uses_redis() { "in-process" } else if s.defense.limiter.is_degraded() { "degraded (in-process)" } else { "redis" },
        }
    });
    if !(duck_ok && redis_ok) {
        tracing::warn!(checks = %body["checks"], "not ready");
    }
    let status = if duck_ok && redis_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(json_response(status, &body))
}

pub async fn metrics(s: Arc<AppState>, _c: Ctx) -> Result<Response<Body>, ApiError> {
    let m = &s.metrics;
    m.memory_vectors.set(s.memory.len() as i64);
    let idx = s.memory.index_stats();
    m.index_vectors.set(idx.size as i64);
    m.wal_bytes.set(s.db.wal_bytes() as i64);
    m.index_bytes.set(idx.memory_bytes as i64);
    m.index_ready.set(i64::from(s.memory.index_ready()));
    m.resident_bytes.set(crate::metrics::resident_bytes());
    let mut resp = Response::new(crate::server::full(m.encode()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(resp)
}
