//! Stopping: a cancellation token canceled on SIGTERM or SIGINT, and the one
//! "do this every interval until shutdown" loop the background tasks share.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Cancels the token on SIGTERM or SIGINT.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs `tick` at once, then every `interval` after each run ends, until
/// `shutdown`; a tick in progress is finished, not interrupted.
pub async fn every<F, Fut>(interval: Duration, shutdown: CancellationToken, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        tick().await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_ticks_at_once_then_per_interval_until_shutdown() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let task = {
            let (ticks, stop) = (ticks.clone(), stop.clone());
            tokio::spawn(every(Duration::from_secs(10), stop, move || {
                let ticks = ticks.clone();
                async move {
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            }))
        };
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3, "at 0, 10 and 20 s");
        stop.cancel();
        task.await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3, "no tick after shutdown");
    }

    #[tokio::test]
    async fn every_does_not_start_after_shutdown() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut ran = false;
        every(Duration::from_secs(1), stop, || {
            ran = true;
            async {}
        })
        .await;
        assert!(!ran);
    }
}
