//! The mesh: origins (and operators) that trust one another through a private CA.
//!
//! - [`ca`]: `heady-origin mesh ca init` and `mesh issue` (rcgen).
//! - [`tls`]: mutual TLS 1.3 with X25519MLKEM768 preferred, revocation by serial.
//! - the mesh listener (`mesh.listen`) and its routes are in `http::mesh`, beside the public
//!   listener.
//! - [`client`]: calls to peers (key-cache invalidation) and the CLI's `--remote`.

pub mod ca;
pub mod client;
pub mod config;
pub mod tls;

pub use client::{MeshClient, Peers};
pub use config::MeshConfig;
pub use tls::MeshTls;
