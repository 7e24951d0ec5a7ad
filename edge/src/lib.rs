//! The Heady edge Worker.
//!
//! The pure modules decide (routing plan, defense rules, conductor dispatch, landing pages)
//! and build and test natively; `shell` is the workers-rs I/O around them and exists only on
//! wasm32. The contracts it shares with the origin (subject, error codes and body, identity
//! answer, wire format, API paths, embedding model) are heady-shared's.

// The shared error body (`heady_shared::ApiError`) carries a provider's `type`, `param` and
// code when the origin passes a refusal on, which makes `Result<_, ApiError>` large; errors are
// the edge's cold path, where moving 144 bytes instead of a box costs nothing measurable.
#![allow(clippy::result_large_err)]

pub mod conductor;
pub mod defense;
pub mod router;
pub mod site;

#[cfg(target_arch = "wasm32")]
mod shell;
