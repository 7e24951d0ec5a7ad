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
