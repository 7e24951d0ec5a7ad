//! Full TLS 1.3 handshakes per second, in memory on one thread, with X25519MLKEM768 against
//! the X25519 baseline in the same run, and the bytes of each ClientHello.
//!
//!   cargo run --release -p heady-pq-kx --example bench_handshake [-- HANDSHAKES]
//!
//! HANDSHAKES (default 2000, at most 100000) is the count per group. The two groups run in
//! alternating blocks so that load from other processes falls on both alike, and each rate is
//! given per second of wall clock and per second of this process's CPU time (Linux
//! /proc/self/stat), which a busy machine disturbs less.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{handshake, TestPki};
use rustls::{ClientConfig, NamedGroup, ServerConfig};

const DEFAULT_HANDSHAKES: u32 = 2_000;
const MAX_HANDSHAKES: u32 = 100_000;
const BLOCKS: u32 = 10;

struct Case {
    label: &'static str,
    group: NamedGroup,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    elapsed: Duration,
    /// CPU time in clock ticks (USER_HZ, 1/100 s); `None` where /proc is not there.
    cpu_ticks: Option<u64>,
    done: u32,
    client_hello_len: usize,
}

impl Case {
    fn run(&mut self, count: u32) -> Result<(), rustls::Error> {
        let start = Instant::now();
        let cpu_start = cpu_ticks();
        for _ in 0..count {
            let hs = handshake(&self.client, &self.server)?;
            if hs.server_group() != Some(self.group) {
                return Err(rustls::Error::General(format!(
                    "{} negotiated {:?}",
                    self.label,
                    hs.server_group()
                )));
            }
            self.client_hello_len = hs.client_hello_len;
        }
        self.elapsed += start.elapsed();
        self.cpu_ticks = match (self.cpu_ticks, cpu_start, cpu_ticks()) {
            (Some(total), Some(before), Some(after)) => Some(total + after.saturating_sub(before)),
            _ => None,
        };
        self.done += count;
        Ok(())
    }

    fn rate(&self) -> f64 {
        f64::from(self.done) / self.elapsed.as_secs_f64()
    }

    fn cpu_rate(&self) -> Option<f64> {
        let ticks = self.cpu_ticks.filter(|&t| t > 0)?;
        Some(f64::from(self.done) / (ticks as f64 / USER_HZ))
    }
}

/// Linux reports process times in /proc in units of USER_HZ, 100 per second.
const USER_HZ: f64 = 100.0;

/// This process's user + system CPU time so far, in USER_HZ ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name start at field 3; utime and stime are 14, 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn format_rate(rate: Option<f64>) -> String {
    rate.map_or_else(|| "n/a".to_string(), |r| format!("{r:.0}"))
}

fn main() -> ExitCode {
    let handshakes = match std::env::args().nth(1).map(|a| a.parse::<u32>()) {
        None => DEFAULT_HANDSHAKES,
        Some(Ok(n)) if (BLOCKS..=MAX_HANDSHAKES).contains(&n) => n,
        Some(_) => {
            eprintln!("HANDSHAKES must be a number from {BLOCKS} to {MAX_HANDSHAKES}");
            return ExitCode::FAILURE;
        }
    };
    let pki = TestPki::new();
    let mut cases = [
        Case {
            label: "X25519MLKEM768",
            group: NamedGroup::X25519MLKEM768,
            client: pki.client_config(heady_pq_kx::provider()),
            server: pki.server_config(heady_pq_kx::provider()),
            elapsed: Duration::ZERO,
            cpu_ticks: Some(0),
            done: 0,
            client_hello_len: 0,
        },
        Case {
            label: "X25519",
            group: NamedGroup::X25519,
            client: pki.client_config(heady_pq_kx::classical_provider()),
            server: pki.server_config(heady_pq_kx::classical_provider()),
            elapsed: Duration::ZERO,
            cpu_ticks: Some(0),
            done: 0,
            client_hello_len: 0,
        },
    ];
    let per_block = handshakes / BLOCKS;
    for block in 0..BLOCKS {
        let count = if block + 1 == BLOCKS {
            handshakes - per_block * (BLOCKS - 1)
        } else {
            per_block
        };
        for case in &mut cases {
            if let Err(e) = case.run(count) {
                eprintln!("handshake failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    println!(
        "full TLS 1.3 handshakes in memory, one thread, {handshakes} per group \
         (ECDSA P-256 certificate, no resumption)"
    );
    println!(
        "{:<16} {:>14} {:>16} {:>18}",
        "group", "handshakes/s", "per CPU-second", "ClientHello bytes"
    );
    for case in &cases {
        println!(
            "{:<16} {:>14.0} {:>16} {:>18}",
            case.label,
            case.rate(),
            format_rate(case.cpu_rate()),
            case.client_hello_len
        );
    }
    let [hybrid, classical] = &cases;
    let cpu_ratio = match (hybrid.cpu_rate(), classical.cpu_rate()) {
        (Some(h), Some(c)) => format!("{:.2}", h / c),
        _ => "n/a".to_string(),
    };
    println!(
        "ratio X25519MLKEM768 / X25519: {:.2} of the rate ({cpu_ratio} per CPU-second), \
         {:.2}x the ClientHello bytes",
        hybrid.rate() / classical.rate(),
        hybrid.client_hello_len as f64 / classical.client_hello_len as f64
    );
    ExitCode::SUCCESS
}
