//! How often does the sliding-window counter decide differently from an exact sliding log?
//!
//! `cargo run --release -p heady-shared --example limiter_error [-- <min requests> <seed>]`
//!
//! Replays a seeded bursty trace (Free 30/min and Pro 120/min subjects; steady, bursty and
//! abusive clients) through both and prints wrong decisions, false admits and false denies
//! apart, next to the 0.003% Cloudflare reported for its counter.

use heady_shared::limiter::trace::{
    bursty_trace, replay, ClientKind, ErrorCounts, ReplayMode, Trace, TraceConfig,
};
use std::time::Instant;

const CLOUDFLARE_WRONG_PCT: f64 = 0.003;

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

fn row(label: &str, c: &ErrorCounts, mode: ReplayMode) {
    let peak = if mode == ReplayMode::CountEveryRequest {
        "-".to_string()
    } else {
        format!("{:.2}x", c.peak_permille as f64 / 1000.0)
    };
    println!(
        "  {label:<20} {:>9} {:>10.4}% {:>10.4}% {:>10.4}% {:>8.2}% {:>8.2}% {:>6}",
        c.decisions,
        pct(c.false_admits + c.false_denies, c.decisions),
        pct(c.false_admits, c.decisions),
        pct(c.false_denies, c.decisions),
        pct(c.counter_admits, c.decisions),
        pct(c.exact_admits, c.decisions),
        peak,
    );
}

fn sum<'a>(items: impl Iterator<Item = &'a ErrorCounts>) -> ErrorCounts {
    let mut total = ErrorCounts::default();
    items.for_each(|c| total.add(c));
    total
}

fn report(trace: &Trace, mode: ReplayMode, title: &str) -> ErrorCounts {
    let started = Instant::now();
    let per_subject = replay(trace, mode);
    let elapsed = started.elapsed();
    let total = sum(per_subject.iter());
    println!("\n{title}  ({:.2} s)", elapsed.as_secs_f64());
    println!(
        "  {:<20} {:>9} {:>11} {:>11} {:>11} {:>9} {:>9} {:>6}",
        "", "requests", "wrong", "false adm.", "false deny", "ctr adm.", "log adm.", "peak"
    );
    row("all", &total, mode);
    for limit in [30, 120] {
        for kind in [
            ClientKind::Quiet,
            ClientKind::Steady,
            ClientKind::Bursty,
            ClientKind::Abusive,
        ] {
            let part = sum(trace
                .subjects
                .iter()
                .zip(&per_subject)
                .filter(|(s, _)| s.limit == limit && s.kind == kind)
                .map(|(_, c)| c));
            row(&format!("{limit}/min {kind:?}"), &part, mode);
        }
    }
    total
}

fn main() {
    let mut args = std::env::args().skip(1);
    let defaults = TraceConfig::default();
    let min_events = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(defaults.min_events);
    let seed = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(defaults.seed);
    let config = TraceConfig {
        min_events,
        seed,
        ..defaults
    };

    let started = Instant::now();
    let trace = bursty_trace(&config);
    let count = |k: ClientKind| trace.subjects.iter().filter(|s| s.kind == k).count();
    println!(
        "trace: seed {seed:#x}, {} requests, {} subjects ({} quiet, {} steady, {} bursty, \
         {} abusive), {} min, window {} s, generated in {:.2} s",
        trace.events.len(),
        trace.subjects.len(),
        count(ClientKind::Quiet),
        count(ClientKind::Steady),
        count(ClientKind::Bursty),
        count(ClientKind::Abusive),
        config.duration_ms / 60_000,
        config.window_ms / 1000,
        started.elapsed().as_secs_f64(),
    );

    let every = report(
        &trace,
        ReplayMode::CountEveryRequest,
        "A. count every request, refused ones too (Cloudflare's setting; history-independent)",
    );
    let same = report(
        &trace,
        ReplayMode::SameHistory,
        "B. count admitted only (Heady); the log judges each request on the counter's history",
    );
    let own = report(
        &trace,
        ReplayMode::Independent,
        "C. count admitted only; counter and log each on their own history",
    );

    let wrong = |c: &ErrorCounts| pct(c.false_admits + c.false_denies, c.decisions);
    println!(
        "\nCloudflare reported {CLOUDFLARE_WRONG_PCT}% wrong decisions (400 M requests from 270 k \
         sources, counting every request). Under the same setting (A) this trace gives {:.4}% \
         ({:.4}% false admits, {:.4}% false denies): {:.0}x theirs.",
        wrong(&every),
        pct(every.false_admits, every.decisions),
        pct(every.false_denies, every.decisions),
        wrong(&every) / CLOUDFLARE_WRONG_PCT,
    );
    println!(
        "Counting admitted requests only (B): {:.4}% false admits (overshoots of the exact limit), \
         peak {:.2}x the limit in any sliding window; total admitted {} by the counter vs {} by \
         the exact log on its own (C, {:+.2}%).",
        pct(same.false_admits, same.decisions),
        same.peak_permille as f64 / 1000.0,
        own.counter_admits,
        own.exact_admits,
        pct(own.counter_admits, own.exact_admits) - 100.0,
    );
    println!(
        "The trace is adversarial by construction: every subject but the quiet ones sits near, \
         bursts through or hammers its limit, where the counter's even-spread assumption is \
         tested on each request; Cloudflare's traffic was mostly sources far below the threshold."
    );
}
