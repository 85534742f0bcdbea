//! The two queue-consuming workers, wired from what their `main` builds:
//! each serves the ops endpoints, consumes its queue, publishes what it
//! commits, and runs its periodic tasks ([`tasks`]), every one named and
//! supervised here: on both workers the state gauges and the outbox,
//! freshness and trigger-policy sweeps; on the projection-update worker the backlog sweep and the handoff
//! drain; on the run-lifecycle worker the timeout/retry sweep.

pub mod handlers;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::sweeper::Timeouts;
use crate::app::Context;
use crate::config::{ConfigError, Env};
use crate::domain::events::ProgressScale;
use crate::ground::backpressure::Backpressure;
use crate::ground::supervise::{Supervisor, TaskFailure};
use crate::messaging::sns::SnsPublisher;
use crate::messaging::sqs::{Consumer, ConsumerConfig, Handler};
use crate::messaging::AwsClients;
use crate::outbox::{PublishQueue, Publisher, Relay};
use crate::workers::handlers::{LifecycleHandler, ProjectionUpdateHandler};
use tasks::Task;

/// Which worker a process is: it names the environment variables it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    ProjectionUpdates,
    RunLifecycle,
}

impl WorkerKind {
    /// The queue it consumes.
    pub fn queue_var(self) -> &'static str {
        match self {
            Self::ProjectionUpdates => "PROJECTION_UPDATES_QUEUE_URL",
            Self::RunLifecycle => "RUN_LIFECYCLE_QUEUE_URL",
        }
    }

    /// Where its dead letters go when not the queue's RedrivePolicy target.
    pub fn dlq_var(self) -> &'static str {
        match self {
            Self::ProjectionUpdates => "PROJECTION_UPDATES_DLQ_URL",
            Self::RunLifecycle => "RUN_LIFECYCLE_DLQ_URL",
        }
    }

    /// `OPS_ADDR` when unset: distinct, so both run side by side on one host.
    pub fn default_ops_addr(self) -> &'static str {
        match self {
            Self::ProjectionUpdates => "0.0.0.0:9090",
            Self::RunLifecycle => "0.0.0.0:9091",
        }
    }

    /// Tasks publishing what its handlers commit: an update can queue dozens
    /// of runs, a lifecycle event at most one retry.
    fn publishers(self) -> usize {
        match self {
            Self::ProjectionUpdates => 4,
            Self::RunLifecycle => 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Consumer(#[from] crate::messaging::sqs::consumer::ConsumerError),
    /// A background task stopped: the worker stops too (exit non-zero).
    #[error(transparent)]
    Task(#[from] TaskFailure),
    #[error("cannot serve the ops endpoints on {addr}")]
    Ops {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pool(#[from] crate::store::pool::StartPoolError),
}

/// A worker's default connection pool (`DATABASE_POOL_SIZE`).
pub const WORKER_POOL_SIZE: u32 = 16;

/// A worker's pool: statements bounded well above the slowest sweep's.
pub const WORKER_POOL_DEFAULTS: crate::config::PoolDefaults = crate::config::PoolDefaults {
    size: WORKER_POOL_SIZE,
    statement_timeout_secs: 60,
    idle_in_transaction_timeout_secs: 60,
};

/// What a queue-consuming worker needs.
pub struct ConsumerDeps<P> {
    pub kind: WorkerKind,
    pub ops_addr: std::net::SocketAddr,
    pub ctx: Context,
    pub aws: AwsClients,
    pub consumer: ConsumerConfig,
    pub relay: Arc<Relay<P>>,
    /// Run requests committed and not yet published at which the consumer
    /// stops receiving (`PUBLISH_BACKLOG_LIMIT`).
    pub publish_backlog_limit: usize,
    /// How often the freshness expectations are judged
    /// (`FRESHNESS_SWEEP_SECS`; one replica of either worker at a time does)
    /// and the trigger policies' timers are looked at (every replica).
    pub freshness_interval: Duration,
    /// Definition changes acted on per second at most
    /// (`DEFINITION_CHANGES_PER_SEC`): the bound that keeps a change applied
    /// to many metrics from starving projection updates.
    pub definition_changes_per_sec: u32,
}

/// Definition changes acted on per second by default: a change to 10,000
/// metrics is acted on in under two minutes (BENCHMARKS.md).
pub const DEFINITION_CHANGES_PER_SEC: u32 = 100;

impl ConsumerDeps<SnsPublisher> {
    /// Everything worker `kind` builds at start-up from the environment.
    pub async fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        kind: WorkerKind,
    ) -> Result<Self, StartError> {
        let pool = crate::store::pool::start_pool(
            &env.database_url()?,
            &env.pool_options(WORKER_POOL_DEFAULTS)?,
        )
        .await?;
        let alerts_topic_arn = env.alerts_topic_arn();
        if alerts_topic_arn.is_none() {
            tracing::info!("ALERTS_TOPIC_ARN is not set: no alerts are written or published");
        }
        let ctx = Context::new(pool.clone(), env.request_settings()?)
            .with_alerts(alerts_topic_arn.is_some());
        let aws = AwsClients::from_env().await;
        let publisher = SnsPublisher {
            sns: aws.sns.clone(),
            s3: aws.s3.clone(),
            topic_arn: env.topic_arn()?,
            alerts_topic_arn,
            large_payload_bucket: env.large_payload_bucket()?,
        };
        let relay = Arc::new(Relay::new(
            pool,
            publisher,
            crate::outbox::RelayConfig::default(),
        ));
        Ok(Self {
            kind,
            ops_addr: env.ops_addr(kind.default_ops_addr())?,
            consumer: env.consumer(kind.queue_var(), kind.dlq_var())?,
            ctx,
            aws,
            relay,
            publish_backlog_limit: env.count(
                "PUBLISH_BACKLOG_LIMIT",
                crate::ground::backpressure::DEFAULT_LIMIT as u32,
                10_000_000,
            )? as usize,
            freshness_interval: env.freshness_sweep_interval()?,
            definition_changes_per_sec: env.count(
                "DEFINITION_CHANGES_PER_SEC",
                DEFINITION_CHANGES_PER_SEC,
                10_000,
            )?,
        })
    }
}

/// What a worker runs besides its consumer: the handler, and background tasks
/// that publish through the same queue (so that the consumer's backpressure
/// counts what they commit too) and stop on shutdown.
struct WorkerParts<H> {
    handler: H,
    tasks: Vec<Task>,
}

/// Serves the ops endpoints, consumes the queue with the handler `make`
/// builds, publishes what it commits and sweeps the outbox, until `shutdown`.
async fn serve_queue<P, H, F>(
    deps: ConsumerDeps<P>,
    make: F,
    shutdown: CancellationToken,
) -> Result<(), WorkerError>
where
    P: Publisher + 'static,
    H: Handler,
    F: FnOnce(Context, PublishQueue) -> WorkerParts<H>,
{
    let state = crate::ops::OpsState {
        pool: deps.ctx.pool.clone(),
        sqs: deps.aws.sqs.clone(),
        queue_url: deps.consumer.queue_url.clone(),
        metrics: crate::ground::prometheus::install(),
    };
    let addr = deps.ops_addr;
    let ops = crate::ops::start(addr, state, shutdown.clone())
        .await
        .map_err(|source| WorkerError::Ops { addr, source })?;
    let waiting = Backpressure::new(deps.publish_backlog_limit);
    metrics::gauge!(crate::ground::prometheus::PUBLISH_LIMIT)
        .set(deps.publish_backlog_limit as f64);
    let (publish, publisher) = PublishQueue::start(
        deps.relay.clone(),
        1024,
        deps.kind.publishers(),
        waiting.clone(),
    );
    let interval = deps.freshness_interval;
    let common = [
        tasks::state_gauges(deps.ctx.pool.clone(), shutdown.clone()),
        tasks::outbox_sweep(deps.relay.clone(), shutdown.clone()),
        tasks::freshness_sweep(
            deps.ctx.clone(),
            publish.clone(),
            interval,
            shutdown.clone(),
        ),
        tasks::policy_sweep(
            deps.ctx.clone(),
            publish.clone(),
            interval,
            shutdown.clone(),
        ),
        tasks::definition_changes(
            deps.ctx.clone(),
            publish.clone(),
            deps.definition_changes_per_sec,
            shutdown.clone(),
        ),
        tasks::staleness_gauges(deps.ctx.pool.clone(), shutdown.clone()),
        tasks::backfills(deps.ctx.clone(), publish.clone(), shutdown.clone()),
    ];
    let served = make(deps.ctx, publish);
    let consumer = Consumer::new(deps.aws.sqs, deps.aws.s3, deps.consumer, served.handler)
        .with_backpressure(waiting);
    let mut tasks = Supervisor::new(shutdown.clone());
    tasks.adopt("ops endpoints", ops);
    tasks.adopt("publisher", publisher);
    #[cfg(feature = "test-support")]
    let common = common.into_iter().chain(tasks::injected_fault());
    for (name, task) in common.into_iter().chain(served.tasks) {
        tasks.spawn_infallible(name, task);
    }
    let consuming = consumer.run(shutdown.clone());
    tokio::pin!(consuming);
    let (result, failed) = tokio::select! {
        result = &mut consuming => (result, None),
        failure = tasks.first_failure() => {
            tracing::error!(task = failure.task, error = %failure, "a background task stopped; stopping the worker so that it is restarted");
            shutdown.cancel();
            (consuming.await, Some(failure))
        }
    };
    shutdown.cancel();
    // The publisher stops once every queue handle is gone: the consumer's went
    // with it, the background tasks' go as they end.
    let wound_down = tasks.finish().await;
    if let Some(failure) = failed {
        return Err(failure.into());
    }
    result?;
    if let Err(failure) = &wound_down {
        tracing::error!(task = failure.task, error = %failure, "a background task failed while the worker stopped");
    }
    Ok(wound_down?)
}

/// The projection-update worker: consumes updates, publishes run requests,
/// and drains metric backlogs no handler took.
pub async fn run_projection_updates<P: Publisher + 'static>(
    mut deps: ConsumerDeps<P>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    deps.ctx = deps.ctx.with_backlog_handoff();
    let stop = shutdown.clone();
    serve_queue(
        deps,
        |ctx, publish| WorkerParts {
            tasks: vec![
                tasks::backlog_sweep(
                    ctx.clone(),
                    publish.clone(),
                    BACKLOG_SWEEP_INTERVAL,
                    stop.clone(),
                ),
                tasks::handoff_drain(ctx.clone(), publish.clone(), stop),
            ],
            // The handler's relay publishes its run requests at the commit:
            // they are written leased to it (nothing to claim).
            handler: ProjectionUpdateHandler {
                ctx: ctx.with_publish_lease(publish.lease()),
                publish,
            },
        },
        shutdown,
    )
    .await
}

/// How often the projection-update worker takes metric backlog rows left
/// behind (by a handler that stopped after its commit, or behind a trigger or
/// catalog apply): rare, so a few seconds' delay is the only cost.
const BACKLOG_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What the run-lifecycle worker needs besides its queue.
pub struct RunLifecycleDeps<P> {
    pub queue: ConsumerDeps<P>,
    pub timeouts: Timeouts,
    pub reaper_interval: Duration,
    /// How runners report heartbeat progress.
    pub progress_scale: ProgressScale,
}

impl RunLifecycleDeps<SnsPublisher> {
    pub async fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, StartError> {
        Ok(Self {
            queue: ConsumerDeps::from_env(env, WorkerKind::RunLifecycle).await?,
            timeouts: env.timeouts()?,
            reaper_interval: env.reaper_interval()?,
            progress_scale: env.progress_scale()?,
        })
    }
}

/// The run-lifecycle worker: consumes started / heartbeat / completed, and
/// runs the timeout/retry sweep every `reaper_interval`.
pub async fn run_lifecycle<P: Publisher + 'static>(
    deps: RunLifecycleDeps<P>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let RunLifecycleDeps {
        queue,
        timeouts,
        reaper_interval,
        progress_scale,
    } = deps;
    let stop = shutdown.clone();
    serve_queue(
        queue,
        |ctx, publish| WorkerParts {
            tasks: vec![tasks::timeout_sweep(
                ctx.clone(),
                publish.clone(),
                timeouts,
                reaper_interval,
                stop,
            )],
            handler: LifecycleHandler {
                ctx,
                publish,
                progress_scale,
            },
        },
        shutdown,
    )
    .await
}
