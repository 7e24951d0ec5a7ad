//! Running blocking work (DuckDB, the index) off the async runtime.

use crate::error::Error;

/// Runs `f` on tokio's blocking pool; a panic in it is a 500, not a dead connection.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("worker failed: {e}")))
}
