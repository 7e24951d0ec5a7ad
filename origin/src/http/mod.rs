//! The HTTP layer: the server (accept, drain), bodies, the routes table, the MCP transport
//! (`mcp`, which calls routes through the table), the OpenAPI document of the table and its
//! rendered reference (`openapi`, `reference`), and the one place an error or a reply
//! becomes a response (`respond`). It calls `api` handlers; nothing below it
//! imports it.

pub mod body;
pub(crate) mod conn;
pub mod discord;
pub mod mcp;
pub mod mesh;
pub mod openapi;
pub mod reference;
pub mod respond;
pub mod routes;
mod server;

pub(crate) use server::drive;
pub use server::{serve, shutdown_signal};

use crate::app::App;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The daemon's life: start the app's background tasks, serve until `shutdown`, stop
/// accepting and drain (up to `drain`), then the app's ordered shutdown.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> anyhow::Result<()> {
    app.start().await?;
    mesh::start(&app).await?;
    let served = serve(listener, app.clone(), shutdown, drain).await;
    let closed = app.shutdown().await;
    served.and(closed)
}
