//! What stops a long-running command: Ctrl-C (SIGINT) from a terminal, or SIGTERM from a process
//! manager (systemd, Kubernetes, `kill`). Both finish writes and exit cleanly.

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

/// Resolves at the first SIGINT or SIGTERM, naming which one came.
pub async fn requested() -> Result<&'static str> {
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}
