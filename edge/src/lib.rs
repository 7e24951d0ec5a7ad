//! The Heady edge Worker.
//!
//! The pure modules decide (routing plan, defense rules, conductor dispatch, landing pages)
//! and build and test natively; `shell` is the workers-rs I/O around them and exists only on
//! wasm32.

pub mod conductor;
pub mod defense;
pub mod error;
pub mod router;
pub mod site;

#[cfg(target_arch = "wasm32")]
mod shell;
