//! The long-running loops each worker binary runs, wired from dependencies
//! built by its `main`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::handlers::{LifecycleHandler, ProjectionUpdateHandler};
use crate::app::sweeper::{self, Timeouts};
use crate::app::Context;
use crate::messaging::sqs::{Consumer, ConsumerConfig, Handler};
use crate::relay::{PublishQueue, Publisher, Relay};

/// AWS clients a worker uses.
#[derive(Clone)]
pub struct AwsClients {
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub s3: aws_sdk_s3::Client,
}

impl AwsClients {
    pub async fn from_env() -> Self {
        let config = crate::messaging::aws_config().await;
        Self {
            sqs: aws_sdk_sqs::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
            s3: crate::messaging::s3_client(&config),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Consumer(#[from] crate::messaging::sqs::consumer::ConsumerError),
    #[error("cannot serve the ops endpoints on {addr}: {source}")]
    Ops {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

async fn start_ops(
    addr: std::net::SocketAddr,
    ctx: &Context,
    aws: &AwsClients,
    queue_url: &str,
    shutdown: &CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, WorkerError> {
    let state = crate::ops::OpsState {
        pool: ctx.pool.clone(),
        sqs: aws.sqs.clone(),
        queue_url: queue_url.to_string(),
        metrics: crate::metrics::install(),
    };
    tokio::spawn(refresh_state_gauges(ctx.pool.clone(), shutdown.clone()));
    crate::ops::serve(addr, state, shutdown.clone())
        .await
        .map_err(|source| WorkerError::Ops { addr, source })
}

/// Refreshes the gauges read from the database (outbox backlog, runs by
/// status) every 15 s; every replica reports the same values.
async fn refresh_state_gauges(pool: crate::store::Pool, shutdown: CancellationToken) {
    loop {
        let backlog = crate::in_transaction!(pool, crate::store::StoreError, |tx| {
            crate::store::outbox::backlog(&tx).await?
        });
        match backlog {
            Ok(b) => {
                metrics::gauge!(crate::metrics::OUTBOX_BACKLOG).set(b.unpublished as f64);
                metrics::gauge!(crate::metrics::OUTBOX_OLDEST_AGE_SECONDS).set(b.oldest_age_secs);
            }
            Err(e) => tracing::debug!(error = %e, "could not read the outbox backlog"),
        }
        match crate::app::runs_admin::counts(&pool).await {
            Ok(counts) => {
                for status in crate::domain::run_state::RunStatus::ALL {
                    let n = counts
                        .iter()
                        .find(|(s, _)| *s == status)
                        .map_or(0, |(_, n)| *n);
                    metrics::gauge!(crate::metrics::RUNS, "status" => status.as_str())
                        .set(n as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not count runs"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
        }
    }
}

/// Runs the relay's sweeper beside `work`, stopping both on `shutdown`.
async fn with_relay<P: Publisher + 'static, F>(
    relay: Arc<Relay<P>>,
    shutdown: CancellationToken,
    work: F,
) -> Result<(), WorkerError>
where
    F: std::future::Future<Output = Result<(), WorkerError>>,
{
    let sweeper = {
        let (relay, stop) = (relay.clone(), shutdown.clone());
        tokio::spawn(async move { relay.run(stop).await })
    };
    let result = work.await;
    shutdown.cancel();
    let _ = sweeper.await;
    result
}

/// What a queue-consuming worker needs.
pub struct ConsumerDeps<P> {
    pub ops_addr: std::net::SocketAddr,
    pub ctx: Context,
    pub aws: AwsClients,
    pub consumer: ConsumerConfig,
    pub relay: Arc<Relay<P>>,
}

/// Serves the ops endpoints, consumes the queue with the handler `make`
/// builds, publishes what it commits (`publishers` tasks) and sweeps the
/// outbox, until `shutdown`.
async fn serve_queue<P, H, F>(
    deps: ConsumerDeps<P>,
    publishers: usize,
    make: F,
    shutdown: CancellationToken,
) -> Result<(), WorkerError>
where
    P: Publisher + 'static,
    H: Handler,
    F: FnOnce(Context, PublishQueue) -> H,
{
    let ops = start_ops(
        deps.ops_addr,
        &deps.ctx,
        &deps.aws,
        &deps.consumer.queue_url,
        &shutdown,
    )
    .await?;
    let (publish, publisher) = PublishQueue::start(deps.relay.clone(), 1024, publishers);
    let consumer = Consumer::new(
        deps.aws.sqs,
        deps.aws.s3,
        deps.consumer,
        make(deps.ctx, publish),
    );
    let result = with_relay(deps.relay, shutdown.clone(), async {
        Ok(consumer.run(shutdown).await?)
    })
    .await;
    let _ = publisher.await;
    let _ = ops.await;
    result
}

/// The projection-update worker: consumes updates, publishes run requests.
pub async fn run_projection_updates<P: Publisher + 'static>(
    deps: ConsumerDeps<P>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    serve_queue(
        deps,
        4,
        |ctx, publish| ProjectionUpdateHandler { ctx, publish },
        shutdown,
    )
    .await
}

/// What the run-lifecycle worker needs.
pub struct RunLifecycleDeps<P> {
    pub queue: ConsumerDeps<P>,
    pub timeouts: Timeouts,
    pub reaper_interval: Duration,
}

/// The run-lifecycle worker: consumes started / heartbeat / completed, and
/// runs the timeout/retry sweep every `reaper_interval`.
pub async fn run_lifecycle<P: Publisher + 'static>(
    deps: RunLifecycleDeps<P>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let q = &deps.queue;
    let reaper = tokio::spawn(reap(
        q.ctx.clone(),
        q.relay.clone(),
        deps.timeouts,
        deps.reaper_interval,
        shutdown.clone(),
    ));
    let result = serve_queue(
        deps.queue,
        2,
        |ctx, publish| LifecycleHandler { ctx, publish },
        shutdown,
    )
    .await;
    let _ = reaper.await;
    result
}

async fn reap<P: Publisher + 'static>(
    ctx: Context,
    relay: Arc<Relay<P>>,
    timeouts: Timeouts,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match sweeper::sweep(&ctx, timeouts).await {
            Ok(s) if !s.timed_out.is_empty() => {
                metrics::counter!(crate::metrics::RUN_TIMEOUTS).increment(s.timed_out.len() as u64);
                metrics::counter!(crate::metrics::RUN_RETRIES).increment(s.retries.len() as u64);
                tracing::info!(
                    timed_out = s.timed_out.len(),
                    retries = s.retries.len(),
                    "timeout sweep"
                );
                if let Err(e) = relay.publish_now(&s.outbox_ids).await {
                    tracing::warn!(error = %e, "publishing retries failed; the outbox sweeper will retry");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "timeout sweep failed; will retry"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
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

/// What every worker builds at start-up from the environment.
pub struct Common {
    pub ctx: Context,
    pub aws: AwsClients,
    pub relay: Arc<Relay<crate::messaging::sns::SnsPublisher>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Pool(#[from] crate::store::pool::PoolConfigError),
}

impl Common {
    pub async fn from_env<F: Fn(&str) -> Option<String>>(
        env: &crate::config::Env<F>,
    ) -> Result<Self, StartError> {
        let pool_size = env.count("DATABASE_POOL_SIZE", 16, 1000)? as usize;
        let pool = crate::store::pool::build_pool(&env.database_url()?, pool_size)?;
        let ctx = Context::new(pool.clone(), env.request_settings()?);
        let aws = AwsClients::from_env().await;
        let publisher = crate::messaging::sns::SnsPublisher {
            sns: aws.sns.clone(),
            s3: aws.s3.clone(),
            topic_arn: env.topic_arn()?,
            large_payload_bucket: env.large_payload_bucket()?,
        };
        let relay = Arc::new(Relay::new(
            pool,
            publisher,
            crate::relay::RelayConfig::default(),
        ));
        Ok(Self { ctx, aws, relay })
    }
}

impl Common {
    /// Dependencies of a worker consuming the queue named by `queue_var`.
    pub fn consumer_deps<F: Fn(&str) -> Option<String>>(
        self,
        env: &crate::config::Env<F>,
        queue_var: &'static str,
        dlq_var: &'static str,
        default_ops_addr: &str,
    ) -> Result<ConsumerDeps<crate::messaging::sns::SnsPublisher>, StartError> {
        Ok(ConsumerDeps {
            ops_addr: env.ops_addr(default_ops_addr)?,
            consumer: env.consumer(queue_var, dlq_var)?,
            ctx: self.ctx,
            aws: self.aws,
            relay: self.relay,
        })
    }
}
