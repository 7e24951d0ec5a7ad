//! Streaming: the provider's events are sent on as they arrive (`data: {...}\n\n`), through
//! a small channel that gives backpressure, ending `data: [DONE]`. When the stream is over,
//! the stages learn its outcome (breaker, critique, pattern engine, memory, drift).

use super::stages::{critique, finalize, monitor, optimize, recover, Opened, Stage};
use super::{Inbound, Ledger, Pipeline};
use crate::lifecycle::Background;
use crate::providers::ProviderError;
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// How a stream ended.
#[derive(Debug, Default)]
pub struct StreamEnd {
    pub text: String,
    pub finish_reason: Option<String>,
    pub error: Option<ProviderError>,
    pub client_gone: bool,
    /// From the provider call to the end of the stream: the latency a client saw.
    pub ms: f64,
    /// The model the chunks named.
    pub model: Option<String>,
    /// The provider's usage report (its last chunk, asked for with `include_usage`).
    pub usage: Option<serde_json::Value>,
    /// Cut at `pipeline.stream_max_secs`.
    pub time_limited: bool,
    /// The first choice's tool calls, put back together from their pieces.
    pub tool_calls: Vec<crate::providers::ToolUse>,
}

fn sse(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(data);
    b.put_slice(b"\n\n");
    b.freeze()
}

fn error_event(e: &ProviderError) -> Bytes {
    // The provider's own text (URLs, account ids) goes to the log, not the client.
    let v = serde_json::json!({"error": {"message": format!("the provider's stream broke off: {}", e.summary()), "type": "upstream_error", "code": heady_shared::ErrorCode::UpstreamFailed.as_str()}});
    sse(v.to_string().as_bytes())
}

fn time_limit_event(secs: u64) -> Bytes {
    let v = serde_json::json!({"error": {"message": format!("the stream reached its time limit of {secs} s (pipeline.stream_max_secs)"), "type": "timeout", "code": heady_shared::ErrorCode::RequestTimeout.as_str()}});
    sse(v.to_string().as_bytes())
}

/// Pumps the stream in a background task that shutdown waits for; the receiver yields the
/// SSE frames.
pub fn start(
    p: Arc<Pipeline>,
    background: &Background,
    inbound: Inbound,
    ledger: Ledger,
    opened: Box<Opened>,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    background.spawn_to_end(pump(p, inbound, ledger, opened, tx));
    rx
}

async fn pump(
    p: Arc<Pipeline>,
    mut inbound: Inbound,
    mut ledger: Ledger,
    opened: Box<Opened>,
    tx: mpsc::Sender<Bytes>,
) {
    let started = Instant::now();
    let Opened {
        mut source,
        permit,
        ingested,
        ..
    } = *opened;
    let mut end = StreamEnd::default();
    let mut tools = crate::providers::ToolCallAssembler::default();
    // A cache miss that may be filled records the chunks as they pass.
    let cache_plan = ledger.cache_plan.take();
    let mut recorder = cache_plan
        .as_ref()
        .map(|_| super::caching::Recorder::new(p.cache.config.max_entry_bytes));
    let limit = std::time::Duration::from_secs(p.config.stream_max_secs);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, source.next()).await else {
            // The stream's whole time is up: the client gets what came so far and an error
            // event; the provider is not blamed (its breaker and drift see no failure).
            tracing::warn!(request_id = %inbound.request_id, secs = p.config.stream_max_secs, "stream cut at its time limit");
            let _ = tx.send(time_limit_event(p.config.stream_max_secs)).await;
            end.time_limited = true;
            break;
        };
        match next {
            Ok(Some(ev)) => {
                end.text.push_str(&ev.delta_text);
                ev.tool_deltas.iter().for_each(|d| tools.push(d));
                if ev.finish_reason.is_some() {
                    end.finish_reason = ev.finish_reason.clone();
                }
                if end.model.is_none() {
                    end.model = ev.model;
                }
                if ev.usage.is_some() {
                    end.usage = ev.usage;
                }
                if let Some(r) = recorder.as_mut() {
                    r.push(&ev.data, ev.usage_only);
                }
                // The usage chunk was asked for by us: only a client that asked sees it.
                if ev.usage_only && !ingested.chat.client_usage {
                    continue;
                }
                if tx.send(sse(&ev.data)).await.is_err() {
                    end.client_gone = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(request_id = %inbound.request_id, error = %e, "stream broke off");
                let _ = tx.send(error_event(&e)).await;
                end.error = Some(e);
                break;
            }
        }
    }
    end.tool_calls = tools.finish();
    // Recorded before the stream ends, so the usage API sees it once the client has [DONE].
    // A stream cut short (or whose provider sent no usage) is counted by the tokenizer.
    if let Some(a) = ledger.attempts.last() {
        let used = super::metering::of_stream(
            &p,
            &ingested,
            a.index,
            end.model.as_deref(),
            end.usage.as_ref(),
            &end.text,
        )
        .await;
        ledger.used.push(used);
    }
    inbound.meter.take().finish(&ledger.used).await;
    // Stored before [DONE], so a client that asks again at once finds it. Only a stream that
    // ended as the provider meant it to, with something in it.
    let clean = end.error.is_none()
        && !end.time_limited
        && !end.client_gone
        && end.finish_reason.is_some()
        && critique::critique(
            &ingested,
            &end.text,
            end.finish_reason.as_deref(),
            &end.tool_calls,
        )
        .score
            >= p.config.critique.threshold;
    if let (Some(plan), Some(r), true) = (cache_plan, recorder, clean) {
        let provider = ledger
            .attempts
            .last()
            .map(|a| a.provider.clone())
            .unwrap_or_default();
        let tokens = ledger.used.last().map(|u| u.total()).unwrap_or(0);
        if let Some(entry) = r.finish(&provider, &end.text, tokens) {
            super::caching::store(&p, plan, entry).await;
        }
    }
    if !end.client_gone {
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    }
    drop(tx);
    drop(source);
    drop(permit);
    let opened_ms = ledger.attempts.last().map(|a| a.ms).unwrap_or(0.0);
    end.ms = opened_ms + started.elapsed().as_secs_f64() * 1e3;
    let trace = &mut ledger.trace;
    let attempts = &mut ledger.attempts;
    trace.time(Stage::Recover, |_| {
        recover::record_stream_end(&p, attempts, &end)
    });
    trace.time(Stage::Critique, |_| {
        critique::score_stream(&ingested, attempts, &end)
    });
    trace.time(Stage::Optimize, |_| optimize::learn(&p, &inbound, attempts));
    if end.error.is_none() {
        let t = Instant::now();
        let text = std::mem::take(&mut end.text);
        finalize::remember(&p, &inbound, &ingested, &mut ledger, text).await;
        ledger.trace.add(Stage::Finalize, t);
    }
    ledger
        .trace
        .time(Stage::Monitor, |_| monitor::watch(&p, &ledger.attempts));
    p.observe(&ledger.trace);
}
