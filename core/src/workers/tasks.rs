//! A worker's periodic tasks (the outbox, freshness, trigger-policy, backlog
//! and timeout sweeps, the handoff drain, definition changes, the state and
//! staleness gauges), each a named task the worker's supervisor runs
//! (its failure stops the worker) on one loop, [`periodic`]: the tick runs at
//! once, then every interval after it ends, until shutdown; a failed tick is
//! logged here, once, and the next tick is the retry. Whatever a tick
//! commits is handed to the worker's [`PublishQueue`], so that the
//! consumer's backpressure counts it; what the queue cannot take, the outbox
//! sweep publishes. The use cases each tick calls live in `app`, without
//! loops.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::sweeper::Timeouts;
use crate::app::{backfill_run, backlog, definition_changes, freshness, policy, sweeper, Context};
use crate::outbox::{PublishQueue, Publisher, Relay};
use crate::store::StoreError;

/// A task of a worker: its name (in logs and in a failure) and what it runs.
pub type Task = (&'static str, Pin<Box<dyn Future<Output = ()> + Send>>);

/// Runs `tick` every `interval` until `shutdown` as the task `name`.
pub fn periodic<F, Fut>(
    name: &'static str,
    interval: Duration,
    shutdown: CancellationToken,
    mut tick: F,
) -> Task
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), StoreError>> + Send + 'static,
{
    let every = crate::ground::shutdown::every(interval, shutdown, move || {
        let ticked = tick();
        async move {
            if let Err(e) = ticked.await {
                tracing::warn!(task = name, error = %crate::ground::errors::chain(&e), "periodic task failed; it runs again at its next tick");
            }
        }
    });
    (name, Box::pin(every))
}

/// `work`, dropped if shutdown comes first (`None`). Only for ticks whose
/// work may be cut at any point: a transaction dropped before its commit is
/// rolled back, and what one committed is in the outbox for the next sweep.
/// The other ticks finish, so that a sweep in the middle of publishing
/// marks what it sent.
async fn until_shutdown<T>(
    shutdown: &CancellationToken,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        _ = shutdown.cancelled() => None,
        out = work => Some(out),
    }
}

/// Publishes every outbox row that is due (crash recovery, failed
/// publishes, what no queue took), every `RelayConfig::sweep_interval`.
pub fn outbox_sweep<P: Publisher + 'static>(
    relay: Arc<Relay<P>>,
    shutdown: CancellationToken,
) -> Task {
    let interval = relay.config().sweep_interval;
    periodic("outbox sweep", interval, shutdown, move || {
        let relay = relay.clone();
        async move {
            let r = relay.sweep_once().await?;
            if r.published + r.failed > 0 {
                tracing::info!(published = r.published, failed = r.failed, "outbox sweep");
            }
            Ok(())
        }
    })
}

/// Refreshes the database-state gauges of `/metrics` (outbox backlog,
/// freshness states, runs by status, backfill points) every 15 s, dropped at
/// shutdown; a failed read keeps the
/// gauge's last value (logged at debug by [`crate::ops::refresh_state_gauges`]).
pub fn state_gauges(pool: crate::store::Pool, shutdown: CancellationToken) -> Task {
    let stop = shutdown.clone();
    periodic("state gauges", STATE_GAUGES_INTERVAL, shutdown, move || {
        let (pool, stop) = (pool.clone(), stop.clone());
        // Reads only: dropped at shutdown rather than waited for.
        async move {
            until_shutdown(&stop, async {
                crate::ops::refresh_backfill_gauges(&pool).await;
                crate::ops::refresh_state_gauges(pool.clone()).await;
            })
            .await;
            Ok(())
        }
    })
}

/// How often the database-state gauges are read.
const STATE_GAUGES_INTERVAL: Duration = Duration::from_secs(15);

/// Judges the freshness expectations (`FRESHNESS_SWEEP_SECS`) and queues the
/// alerts of the transitions.
pub fn freshness_sweep(
    ctx: Context,
    publish: PublishQueue,
    interval: Duration,
    shutdown: CancellationToken,
) -> Task {
    periodic("freshness sweep", interval, shutdown, move || {
        let (ctx, publish) = (ctx.clone(), publish.clone());
        async move {
            let r = freshness::sweep(&ctx, None).await?;
            if r.changed > 0 {
                tracing::info!(
                    changed = r.changed,
                    alerts = r.outbox_ids.len(),
                    late_datasets = r.late_datasets,
                    failing_metrics = r.failing_metrics,
                    "freshness sweep"
                );
            }
            publish.submit(r.outbox_ids);
            Ok(())
        }
    })
}

/// Evaluates the metrics whose trigger-policy timer (grace, settle,
/// cooldown) is due, at the freshness sweep's interval.
pub fn policy_sweep(
    ctx: Context,
    publish: PublishQueue,
    interval: Duration,
    shutdown: CancellationToken,
) -> Task {
    periodic("trigger policy sweep", interval, shutdown, move || {
        let (ctx, publish) = (ctx.clone(), publish.clone());
        async move {
            let r = policy::sweep(&ctx).await?;
            if r.due > 0 {
                tracing::info!(
                    due = r.due,
                    claimed = r.claimed,
                    runs_queued = r.evaluated.runs_queued,
                    "trigger policy sweep"
                );
            }
            publish.submit_requests(r.evaluated.requests);
            Ok(())
        }
    })
}

/// Acts on catalog definition changes (alerts, re-runs), at most
/// `per_sec` a second: one batch a second.
pub fn definition_changes(
    ctx: Context,
    publish: PublishQueue,
    per_sec: u32,
    shutdown: CancellationToken,
) -> Task {
    let stop = shutdown.clone();
    periodic(
        "definition changes",
        Duration::from_secs(1),
        shutdown,
        move || {
            let (ctx, publish, stop) = (ctx.clone(), publish.clone(), stop.clone());
            async move {
                let drained =
                    until_shutdown(&stop, definition_changes::drain(&ctx, i64::from(per_sec)));
                let Some(r) = drained.await.transpose()? else {
                    return Ok(());
                };
                if r.done + r.later > 0 {
                    tracing::info!(
                        done = r.done,
                        later = r.later,
                        runs_requested = r.requested.len(),
                        "definition changes"
                    );
                }
                publish.submit(r.outbox_ids);
                Ok(())
            }
        },
    )
}

/// Advances the running backfills: settles the points whose runs ended and
/// requests the next ones (`app::backfill_run`), every
/// [`backfill_run::TICK`].
pub fn backfills(ctx: Context, publish: PublishQueue, shutdown: CancellationToken) -> Task {
    let stop = shutdown.clone();
    periodic("backfills", backfill_run::TICK, shutdown, move || {
        let (ctx, publish, stop) = (ctx.clone(), publish.clone(), stop.clone());
        async move {
            let advanced =
                until_shutdown(&stop, backfill_run::advance(&ctx, backfill_run::PER_TICK));
            let Some(r) = advanced.await.transpose()? else {
                return Ok(());
            };
            if !r.requested.is_empty() || r.settled > 0 {
                tracing::info!(
                    backfills = r.backfills,
                    settled = r.settled,
                    runs_requested = r.requested.len(),
                    "backfills"
                );
            }
            publish.submit(r.outbox_ids);
            Ok(())
        }
    })
}

/// Counts the metrics whose outputs are stale, by reason, every minute (it
/// reads every metric, so less often than the other gauges).
pub fn staleness_gauges(pool: crate::store::Pool, shutdown: CancellationToken) -> Task {
    let stop = shutdown.clone();
    periodic(
        "staleness gauges",
        Duration::from_secs(60),
        shutdown,
        move || {
            let (pool, stop) = (pool.clone(), stop.clone());
            async move {
                until_shutdown(&stop, crate::ops::refresh_staleness_gauges(&pool)).await;
                Ok(())
            }
        },
    )
}

/// Evaluates the metric backlog rows older than `interval` (left by a
/// handler that stopped after its commit, or behind a trigger or apply).
pub fn backlog_sweep(
    ctx: Context,
    publish: PublishQueue,
    interval: Duration,
    shutdown: CancellationToken,
) -> Task {
    periodic("backlog sweep", interval, shutdown, move || {
        let (ctx, publish) = (ctx.clone(), publish.clone());
        async move {
            let s = backlog::sweep(&ctx, interval).await?;
            if s.backlog_evaluated > 0 {
                tracing::info!(
                    evaluated = s.backlog_evaluated,
                    queued = s.runs_queued,
                    "backlog sweep"
                );
            }
            publish.submit_requests(s.requests);
            Ok(())
        }
    })
}

/// Drains the metrics handed off by this worker's handlers that no update
/// took within [`backlog::HANDOFF_WAIT`]; what is left at shutdown is in the
/// database, for the backlog sweep of any replica.
pub fn handoff_drain(ctx: Context, publish: PublishQueue, shutdown: CancellationToken) -> Task {
    let wait = backlog::HANDOFF_WAIT;
    periodic("handed_off backlog", wait, shutdown, move || {
        let (ctx, publish) = (ctx.clone(), publish.clone());
        async move {
            let d = backlog::drain_handoff_now(&ctx, wait).await?;
            publish.submit_requests(d.requests);
            Ok(())
        }
    })
}

/// Times out runs past their deadlines and queues their retries.
pub fn timeout_sweep(
    ctx: Context,
    publish: PublishQueue,
    timeouts: Timeouts,
    interval: Duration,
    shutdown: CancellationToken,
) -> Task {
    periodic("timeout/retry sweep", interval, shutdown, move || {
        let (ctx, publish) = (ctx.clone(), publish.clone());
        async move {
            let s = sweeper::sweep(&ctx, timeouts).await?;
            if !s.timed_out.is_empty() {
                metrics::counter!(crate::ground::prometheus::RUN_TIMEOUTS)
                    .increment(s.timed_out.len() as u64);
                metrics::counter!(crate::ground::prometheus::RUN_RETRIES)
                    .increment(s.retries.len() as u64);
                tracing::info!(
                    timed_out = s.timed_out.len(),
                    retries = s.retries.len(),
                    "timeout sweep"
                );
            }
            publish.submit(s.outbox_ids);
            Ok(())
        }
    })
}

/// Test builds only (`test-support`, never in the shipped binaries, which
/// CI checks): with `ORCHESTRATOR_TEST_PANIC_AFTER_MS` set, a task that
/// panics after that long, so that a test can see a real worker process stop
/// with the task's name and exit non-zero when a background task dies.
#[cfg(feature = "test-support")]
pub fn injected_fault() -> Option<Task> {
    let ms: u64 = std::env::var("ORCHESTRATOR_TEST_PANIC_AFTER_MS")
        .ok()?
        .parse()
        .ok()?;
    let fault = async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        panic!("injected fault: ORCHESTRATOR_TEST_PANIC_AFTER_MS={ms}");
    };
    Some(("injected fault", Box::pin(fault)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A failing tick is retried at the next tick, and the task ends with
    /// shutdown, not with the failure.
    #[tokio::test(start_paused = true)]
    async fn a_failed_tick_is_retried_at_the_next_and_shutdown_ends_the_task() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counted = ticks.clone();
        let (name, task) = periodic("probe", Duration::from_secs(5), stop.clone(), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n % 2 == 0 {
                    Err(StoreError::Corrupt("tick failed".into()))
                } else {
                    Ok(())
                }
            }
        });
        assert_eq!(name, "probe");
        let running = tokio::spawn(task);
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3, "at 0 s, 5 s and 10 s");
        stop.cancel();
        running.await.unwrap();
    }

    /// Work that may be cut is dropped at shutdown instead of holding the
    /// worker's exit (a tick waiting on an unreachable database would hold
    /// it for the pool's whole wait); work that ends first is returned.
    #[tokio::test(start_paused = true)]
    async fn cuttable_work_is_dropped_at_shutdown() {
        let stop = CancellationToken::new();
        let quick = until_shutdown(&stop, async { 7 }).await;
        assert_eq!(quick, Some(7));
        let waiting = tokio::spawn({
            let stop = stop.clone();
            async move { until_shutdown(&stop, tokio::time::sleep(Duration::from_secs(3600))).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.cancel();
        assert_eq!(waiting.await.unwrap(), None);
    }
}
