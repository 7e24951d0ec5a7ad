//! The one place a handler's reply or an error becomes an HTTP response.

use super::body::{full, Body, ChannelBody};
use crate::api::{Reply, ReplyBody};
use crate::error::Error;
use http::{header, HeaderValue, Response, StatusCode};

/// Adds `(name, value)` fields; a value that is not a valid header is dropped (they are ours).
pub fn add_headers(resp: &mut Response<Body>, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().append(*name, v);
        }
    }
}

/// Adds the request limiter's fields in front of any the handler set (the token limit's), so
/// `RateLimit-Policy` and `RateLimit` list the request policy first, then the token policy.
pub fn add_limit_headers(resp: &mut Response<Body>, headers: &[(&'static str, String)]) {
    let names: Vec<&'static str> = headers.iter().map(|(n, _)| *n).collect();
    let mut theirs: Vec<(&'static str, HeaderValue)> = Vec::new();
    for name in &names {
        if theirs.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        // Retry-After is one value: the handler's (its own refusal) wins.
        if name.eq_ignore_ascii_case("retry-after") && resp.headers().contains_key(*name) {
            continue;
        }
        let values: Vec<HeaderValue> = resp.headers().get_all(*name).iter().cloned().collect();
        resp.headers_mut().remove(*name);
        theirs.extend(values.into_iter().map(|v| (*name, v)));
    }
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("retry-after") && resp.headers().contains_key(*name) {
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().append(*name, v);
        }
    }
    for (name, v) in theirs {
        resp.headers_mut().append(name, v);
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub fn reply(r: Reply) -> Response<Body> {
    let body = match r.body {
        ReplyBody::Bytes(b) => full(b),
        ReplyBody::Events(rx) => ChannelBody::boxed(rx),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status(r.status);
    if let Ok(v) = HeaderValue::from_str(r.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    add_headers(&mut resp, &r.headers);
    resp
}

/// `{"error":{...}}` with the code's status, its headers, the request id, and `Retry-After`
/// whenever the body says `retry_after`. The body carries the error's public message only.
pub fn error(e: &Error, request_id: &str) -> Response<Body> {
    let bytes = serde_json::to_vec(&e.body(Some(request_id)))
        .unwrap_or_else(|_| b"{\"error\":{\"code\":\"internal\",\"message\":\"\"}}".to_vec());
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status(e.status());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_headers(&mut resp, &e.headers);
    if let Some(secs) = e.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn retry_after_is_in_the_header_and_the_body_together() {
        let e = Error::new(ErrorCode::Overloaded, "busy")
            .with_retry_after(7)
            .with_headers(vec![("server-timing", "entry;dur=0.010".into())]);
        let resp = error(&e, "r1");
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "7");
        assert_eq!(resp.headers()["server-timing"], "entry;dur=0.010");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["retry_after"], 7);
        assert_eq!(v["error"]["code"], "overloaded");
        assert_eq!(v["error"]["request_id"], "r1");
    }
}
