//! heady-origin: the bare-metal daemon behind the Heady edge.
//!
//! Layers, each importing only those below it (a test, `tests/layers.rs`, checks this):
//!
//! ```text
//! cli                          the binary's subcommands
//! http                         server, bodies, routes table, the one place errors become responses
//! api                          one file per resource: decode -> call the domain -> render a Reply
//! app                          App: the parts, their background tasks, the shutdown order
//! domain                       conductor, pipeline, providers, memory, defense, accounts, billing, usage, mcp
//! infrastructure               redis, pg, tls, lifecycle, metrics, config, error, rt, sys
//! ```

#![deny(unsafe_code)]
// The OpenAPI document's schema table is one `json!` literal (http/openapi.rs).
#![recursion_limit = "512"]

pub mod accounts;
pub mod api;
pub mod app;
pub mod billing;
pub mod cache;
pub mod cli;
pub mod conductor;
pub mod config;
pub mod db;
pub mod defense;
pub mod discord;
pub mod error;
pub mod http;
pub mod lifecycle;
pub mod mcp;
pub mod memory;
pub mod mesh;
pub mod metrics;
pub mod pg;
pub mod pipeline;
pub mod providers;
pub mod redis;
pub mod rt;
pub mod settings;
pub mod tls;
pub mod usage;
// Linux syscalls (thread priority, allocator tuning): the one module with `unsafe`.
#[allow(unsafe_code)]
pub mod sys;
