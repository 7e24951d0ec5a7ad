//! Pure logic shared by the Heady edge Worker (wasm32) and the origin daemon.
//!
//! Nothing here does I/O or reads a clock: time and inputs are parameters, so the same
//! decision runs in workerd and in the daemon and is tested without either.
//!
//! The contracts both sides speak are defined here once: the request [`Subject`], the
//! [`ErrorCode`]s and JSON [`ErrorBody`], the [`IdentityAnswer`], the tunnel [`wire`] format,
//! the [`api_paths`] and the default [`embedding`] model, the [`tunnel`] session handshake, and
//! the HTTP Message Signatures of PQC API keys ([`http_sig`]).

#![forbid(unsafe_code)]

pub mod account;
pub mod api_paths;
pub mod breaker;
pub mod cache;
pub mod classification;
pub mod critique;
pub mod discord;
pub mod drift;
pub mod embedding;
pub mod error_code;
pub mod groups;
pub mod hex;
pub mod http_sig;
pub mod identity;
pub mod limiter;
pub mod page;
pub mod properties;
pub mod readiness;
pub mod retry;
pub mod sliding_log;
pub mod subject;
pub mod tiers;
pub mod token_bucket;
pub mod tunnel;
pub mod wire;
pub mod zone;

pub use account::{AccountId, AccountStatus};
pub use api_paths::is_api_path;
pub use classification::Classification;
pub use error_code::{ApiError, ErrorBody, ErrorCode};
pub use groups::{GroupTable, Route, RouteError, ServiceGroup};
pub use identity::IdentityAnswer;
pub use subject::{Subject, SubjectError};
pub use tiers::{Feature, Tier, TierLimits};
pub use zone::{Zone, ZoneCoordinates};
