//! heady-tunnel-config: the origin's Cloudflare Tunnel configuration, as operators manage it
//! with `heady-origin tunnel ...`: render cloudflared's `config.yml` from
//! `deploy/properties.toml`, validate a config by cloudflared's own ingress rules, and show
//! which rule a URL reaches.
//!
//! The rules are re-stated from cloudflared's `ingress` and `config` packages (validation
//! in `validateIngress`/`validateHostname`, matching in `FindMatchingRule`/`matchHost`,
//! option types in `OriginRequestConfig`). Everything here but `commands` (which reads and
//! writes files) is pure. `fuzz` is the entry point of the cargo-fuzz target in `origin/fuzz`.
#![forbid(unsafe_code)]

pub mod commands;
mod config;
pub mod fuzz;
mod matching;
mod render;
mod validate;

pub use config::{
    parse, Access, Config, DurationSetting, IngressRule, IpRule, OriginRequest, ParseError,
    Warning, WarningKind,
};
pub use matching::{match_rule, RequestUrl, RequestUrlError};
pub use render::{render, RenderSettings};
pub use validate::{parse_service, validate, Problem, ProblemKind, Service};
