//! Test-only crate: see `tests/interop.rs`. Nothing is exported.
