//! Building responses: JSON errors, pages, and the headers every edge answer carries.

use crate::site::{self, SECURITY_HEADERS};
use heady_shared::{ApiError, ErrorCode};
use worker::{Headers, Response, ResponseBuilder};

/// Headers every answer gets, plus `extra` (RateLimit fields, `x-heady-*`).
pub fn headers(content_type: Option<&str>, extra: &[(&str, String)]) -> Headers {
    let headers = Headers::new();
    for (name, value) in SECURITY_HEADERS {
        let _ = headers.set(name, value);
    }
    if let Some(ct) = content_type {
        let _ = headers.set("content-type", ct);
    }
    for (name, value) in extra {
        let _ = headers.set(name, value);
    }
    headers
}

pub fn json(status: u16, body: &impl serde::Serialize, extra: &[(&str, String)]) -> Response {
    let mut extra = extra.to_vec();
    extra.push(("cache-control", "no-store".to_owned()));
    // Values and plain structs of strings and numbers: serialising them cannot fail.
    let text = serde_json::to_vec(body).unwrap_or_default();
    ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers(Some("application/json"), &extra))
        .fixed(text)
}

/// The error's status and `{"error":{...}}` body (heady-shared's `ErrorBody`).
pub fn error(err: &ApiError, extra: &[(&str, String)]) -> Response {
    let mut extra = extra.to_vec();
    if let Some(secs) = err.retry_after {
        extra.push(("retry-after", secs.to_string()));
    }
    json(err.status(), &err.body(), &extra)
}

pub fn not_found(host: &str, json_wanted: bool) -> Response {
    if json_wanted {
        error(
            &ApiError::new(
                ErrorCode::NotFound,
                format!("nothing is served at this path on host {host:?}"),
            ),
            &[],
        )
    } else {
        ResponseBuilder::new()
            .with_status(404)
            .with_headers(headers(Some("text/html; charset=utf-8"), &[]))
            .fixed(site::not_found_page(host).into_bytes())
    }
}

/// Re-emits an upstream response (assets, origin) with the edge's headers added; the body is
/// passed through as a stream, never buffered.
pub fn rewrap(upstream: Response, extra: &[(&str, String)]) -> Response {
    let status = upstream.status_code();
    let merged = Headers::new();
    for (name, value) in upstream.headers().entries() {
        let _ = merged.append(&name, &value);
    }
    for (name, value) in SECURITY_HEADERS {
        let _ = merged.set(name, value);
    }
    for (name, value) in extra {
        let _ = merged.set(name, value);
    }
    let (_, body) = upstream.into_parts();
    ResponseBuilder::new()
        .with_status(status)
        .with_headers(merged)
        .body(body)
}
