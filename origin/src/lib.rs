//! heady-origin: the bare-metal daemon behind the Heady edge.
//!
//! Layering: `server` -> `defense` -> `api` -> `pipeline` -> `conductor` / `providers` /
//! `memory`; nothing below calls back up. `memory`, the API keys (`defense::keys`) and the
//! pattern engine keep their tables in one `db::Database`.
//!
//! Unsafe code is confined to `sys` (the Linux syscalls).

#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod conductor;
pub mod config;
pub mod db;
pub mod defense;
pub mod error;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod providers;
pub mod server;
pub mod state;
#[allow(unsafe_code)]
pub mod sys;
pub mod tunnel_config;
