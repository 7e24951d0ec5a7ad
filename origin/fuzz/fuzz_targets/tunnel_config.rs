//! Arbitrary bytes as a cloudflared config.yml (and as a properties file to render): parsing,
//! validation, matching and rendering must never panic and must agree. The checks are
//! `heady_tunnel_config::fuzz::tunnel_config`, which the crate's tests also run on the seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| heady_tunnel_config::fuzz::tunnel_config(data));
