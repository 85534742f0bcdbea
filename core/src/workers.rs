//! The long-running loops each worker binary runs, wired from dependencies
//! built by its `main`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::sweeper::{self, Timeouts};
use crate::app::Context;

/// What the run-lifecycle worker needs.
pub struct RunLifecycleDeps {
    pub ctx: Context,
    pub timeouts: Timeouts,
    pub reaper_interval: Duration,
}

/// The run-lifecycle worker: the timeout/retry sweep every `reaper_interval`
/// until `shutdown`. (Its SQS consumer joins here with the messaging work.)
pub async fn run_lifecycle(deps: RunLifecycleDeps, shutdown: CancellationToken) {
    tracing::info!(
        heartbeat_timeout_s = deps.timeouts.heartbeat.as_secs(),
        start_timeout_s = deps.timeouts.start.as_secs(),
        "run-lifecycle worker started"
    );
    loop {
        match sweeper::sweep(&deps.ctx, deps.timeouts).await {
            Ok(s) if !s.timed_out.is_empty() => {
                tracing::info!(
                    timed_out = s.timed_out.len(),
                    retries = s.retries.len(),
                    "timeout sweep"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "timeout sweep failed; will retry"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(deps.reaper_interval) => {}
        }
    }
    tracing::info!("run-lifecycle worker stopped");
}

/// Cancels the token on SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}
