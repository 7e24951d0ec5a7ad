//! Cross-component tests live in `tests/`; the library holds the edge file generator they
//! and `heady-edge-config` share.

#![forbid(unsafe_code)]

pub mod edge_config;
