//! heady-xtask: code generators run by developers, not shipped. `edge_config` derives the
//! wrangler.toml routes and the edge landing pages from `deploy/properties.toml`; the
//! `heady-edge-config` binary writes or checks them, and heady-tests' drift tests use it.
#![forbid(unsafe_code)]

pub mod edge_config;
