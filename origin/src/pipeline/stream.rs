//! Streaming: the provider's events are sent on as they arrive (`data: {...}\n\n`), through
//! a small channel that gives backpressure, ending `data: [DONE]`. When the stream is over,
//! the stages' `finish` hooks run (breaker, critique, pattern engine, memory, drift).

use super::{set_header, Job, Pipeline};
use crate::providers::{EventSource, ProviderError};
use crate::server::Body;
use bytes::{BufMut, Bytes, BytesMut};
use http::Response;
use http_body_util::BodyExt;
use hyper::body::Frame;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::mpsc;

/// A response body fed by a channel.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn sse(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(data);
    b.put_slice(b"\n\n");
    b.freeze()
}

fn error_event(e: &ProviderError) -> Bytes {
    let v = serde_json::json!({"error": {"message": e.to_string(), "type": "upstream_error", "code": "upstream_failed"}});
    sse(v.to_string().as_bytes())
}

/// Sends the response head now and pumps the stream in a task.
pub fn start(p: Arc<Pipeline>, mut job: Job, source: Box<dyn EventSource>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let head = job
        .response
        .take()
        .unwrap_or_else(|| Response::new(crate::server::full(Bytes::new())));
    let (mut parts, _) = head.into_parts();
    set_header(&mut parts.headers, "server-timing", &job.server_timing());
    let started = Instant::now();
    tokio::spawn(pump(p, job, source, tx, started));
    Response::from_parts(parts, ChannelBody { rx }.boxed_unsync())
}

async fn pump(
    p: Arc<Pipeline>,
    mut job: Job,
    mut source: Box<dyn EventSource>,
    tx: mpsc::Sender<Bytes>,
    started: Instant,
) {
    let mut out = super::StreamOutcome::default();
    loop {
        match source.next().await {
            Ok(Some(ev)) => {
                out.text.push_str(&ev.delta_text);
                if ev.finish_reason.is_some() {
                    out.finish_reason = ev.finish_reason.clone();
                }
                if tx.send(sse(&ev.data)).await.is_err() {
                    out.client_gone = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(request_id = %job.request_id, error = %e, "stream broke off");
                let _ = tx.send(error_event(&e)).await;
                out.error = Some(e);
                break;
            }
        }
    }
    if !out.client_gone {
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    }
    drop(tx);
    drop(source);
    job.permit = None;
    // Time from the provider call to the end of the stream, the latency a client saw.
    let opened_ms = job.attempts.last().map(|a| a.ms).unwrap_or(0.0);
    out.ms = opened_ms + started.elapsed().as_secs_f64() * 1e3;
    job.stream = Some(out);
    p.finish(&mut job).await;
}
