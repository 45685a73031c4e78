//! What stops a long-running command: Ctrl-C (SIGINT) from a terminal, or SIGTERM from a process
//! manager (systemd, Kubernetes, `kill`). Both finish writes and exit cleanly.

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

/// Resolves at the first SIGINT or SIGTERM, naming which one came.
pub async fn requested() -> Result<&'static str> {
    Ok(Listener::install()?.wait().await)
}

/// SIGINT and SIGTERM caught from the moment it is installed, so that a signal during a long
/// setup stops it cleanly instead of killing the process by the default action.
pub struct Listener {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Listener {
    pub fn install() -> Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    /// The next signal, by name.
    pub async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
