//! The Heady edge Worker.
//!
//! The pure modules decide (routing plan, defense rules, conductor dispatch, landing pages)
//! and build and test natively; `shell` is the workers-rs I/O around them and exists only on
//! wasm32. The contracts it shares with the origin (subject, error codes and body, identity
//! answer, wire format, API paths, embedding model) are heady-shared's.

pub mod conductor;
pub mod defense;
pub mod router;
pub mod site;

#[cfg(target_arch = "wasm32")]
mod shell;
