//! Liveness, readiness and metrics.

use super::{Ctx, Reply};
use crate::app::App;
use crate::error::Error;
use heady_shared::identity::PqKeyAnswer;
use heady_shared::{ErrorCode, IdentityAnswer, Subject};
use serde_json::json;
use std::sync::Arc;

pub async fn health(_s: Arc<App>, _c: Ctx) -> Result<Reply, Error> {
    Reply::ok(&json!({"status": "ok"}))
}

/// Who the origin takes the caller to be (heady-shared's `IdentityAnswer`): the edge asks
/// this on a session-cache miss.
/// The answer carries `defense.session_ttl_secs` (at most 60): how long the edge may use it,
/// so a tier change reaches the edge within that. The origin still checks the key on every
/// tunnelled request, so a revocation is exact here.
pub async fn identity(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let who = &c.identity;
    let answer = IdentityAnswer::new(
        who.subject.clone(),
        who.tier,
        who.clearance,
        who.key_id.clone(),
        s.config.defense.session_ttl_secs,
    );
    Reply::ok(&answer)
}

/// `GET /api/identity/pq-keys/{keyid}`: the account and public key of a PQC API key
/// (heady-shared's `PqKeyAnswer`), so the edge verifies a signed request itself and limits it
/// as the key's account. Answered only to the edge (a request its tunnel signature vouches
/// for; the edge passes no client's request here): 401 `edge_required` otherwise. Unknown,
/// revoked or expired keys get the 401 a request signed with them gets.
pub async fn pq_key(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    if !c.identity.via_edge {
        return Err(Error::unauthorized(
            ErrorCode::EdgeRequired,
            "the holder of a PQC API key is told only to the Heady edge",
        ));
    }
    let keyid = c.path.rsplit('/').next().unwrap_or_default();
    let now = crate::defense::limiter::now_ms() / 1000;
    let found = s
        .defense
        .pq_key_holder(keyid, c.identity.client_ip, now)
        .await?;
    let account = found.grant.account;
    let answer = PqKeyAnswer::new(
        IdentityAnswer::new(
            Subject::account(&account.id),
            account.tier,
            account.clearance,
            Some(found.grant.key.id),
            s.config.defense.session_ttl_secs,
        ),
        &found.public_key,
    );
    Reply::ok(&answer)
}

/// Ready when DuckDB answers, and Redis and PostgreSQL (the account store) too when
/// configured. The answer names what is down (`"down"`); the error text goes to the log only.
pub async fn ready(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let memory = s.memory.clone();
    let duck = crate::rt::blocking(move || memory.ping_blocking()).await?;
    let redis = s.redis_ping().await;
    if let Err(e) = &duck {
        tracing::warn!(request_id = %c.request_id, error = %e, "readiness: DuckDB is down");
    }
    if let Err(e) = &redis {
        tracing::warn!(request_id = %c.request_id, error = %e, "readiness: Redis is down");
    }
    let duck_ok = duck.is_ok();
    let redis_ok = redis.is_ok();
    let accounts = s.defense.accounts.ping().await;
    if let Err(e) = &accounts {
        tracing::warn!(request_id = %c.request_id, error = %e, "readiness: the account store is down");
    }
    let ok = duck_ok && redis_ok && accounts.is_ok();
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": {
            "duckdb": if duck_ok { "ok" } else { "down" },
            "redis": match &redis { Ok(Some(())) => "ok", Ok(None) => "not configured", Err(_) => "down" },
            "accounts": if accounts.is_ok() { s.defense.accounts.backend_name() } else { "down" },
            "index": s.memory.index_stats().state,
            "limiter": if !s.defense.limiter.uses_redis() { "in-process" } else if s.defense.limiter.is_degraded() { "degraded (in-process)" } else { "redis" },
            "nonces": s.defense.nonce_store(),
            "token_limiter": s.usage.limiter.store(),
        }
    });
    Reply::json(if ok { 200 } else { 503 }, &body)
}

pub async fn metrics(s: Arc<App>, _c: Ctx) -> Result<Reply, Error> {
    let m = &s.metrics;
    m.memory_vectors.set(s.memory.len() as i64);
    let idx = s.memory.index_stats();
    m.index_vectors.set(idx.size as i64);
    m.wal_bytes.set(s.db.wal_bytes() as i64);
    m.index_bytes.set(idx.memory_bytes as i64);
    m.index_ready.set(i64::from(s.memory.index_ready()));
    m.resident_bytes.set(crate::metrics::resident_bytes());
    Ok(Reply::bytes(
        200,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        m.encode(),
    ))
}
