//! Pure logic shared by the Heady edge Worker (wasm32) and the origin daemon.
//!
//! Nothing here does I/O or reads a clock: time and inputs are parameters, so the same
//! decision runs in workerd and in the daemon and is tested without either.

pub mod breaker;
pub mod classification;
pub mod critique;
pub mod drift;
pub mod groups;
pub mod limiter;
pub mod properties;
pub mod readiness;
pub mod sliding_log;
pub mod tiers;
pub mod wire;
pub mod zone;

pub use classification::Classification;
pub use groups::{GroupTable, Route, RouteError, ServiceGroup};
pub use tiers::{Feature, Tier, TierLimits};
pub use zone::{Zone, ZoneCoordinates};
