//! Cross-component tests live in `tests/`; the library holds the edge file generator they
//! and `heady-edge-config` share.

pub mod edge_config;
