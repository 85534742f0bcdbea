//! `loadgen bench-messaging`: the projection-update worker through
//! LocalStack, measured against what the broker itself carries. In one run,
//! on fresh databases and uniquely named resources:
//! - (a) the broker's ceiling: run-request-sized messages through SNS
//!   PublishBatch → SQS, no worker; and again for run requests exactly as
//!   the worker publishes them (with their message attributes);
//! - (b) the worker's publish rate at scenario A's fan-out (~33 run requests
//!   per update), as a share of (a);
//! - (c) SendMessage → run-request arrival latency at a steady update rate
//!   that offers 25% of (a), in several consecutive runs, each starting with
//!   the broker idle; and the worker's own part of it (receipt → start of the
//!   publish call), read from its `/metrics`; with two bounds measured at
//!   the same rate: the broker alone (publish → arrival), and, before each
//!   run, the worker's whole path without a database (the same updates,
//!   received and forwarded as run requests through the worker's
//!   publisher);
//! - (d) a fan-out-1 catalog (each update completes one run) drained by the
//!   worker, against the broker's bound for the same path: a consumer on the
//!   same SQS runtime, without a database, that receives, publishes one run
//!   request per message (the worker's publisher, the same body and
//!   attributes) and deletes; and a do-nothing consumer (receive + delete);
//! - (e) the worker's peak RSS (VmHWM) over all of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use orchestrator_core::app::{catalog_apply, projection_update};
use orchestrator_core::messaging::sns::SnsPublisher;
use orchestrator_core::messaging::sqs::{
    Consumer, ConsumerConfig, Handler, HandlerError, InboundMessage, Outcome,
};
use orchestrator_core::messaging::AwsClients;
use orchestrator_core::outbox::Publisher;
use orchestrator_core::store::outbox::{self, OutboxMessage};
use orchestrator_core::store::stats;
use orchestrator_tests::aws::{unique_suffix, Stack};
use orchestrator_tests::process::Process;
use orchestrator_tests::synth::{self, Shape};
use orchestrator_tests::TestDb;
use tokio_util::sync::CancellationToken;

use crate::bench_latency::{self, CeilingMessage};
use crate::db_work;
use crate::worker_metrics::Histogram;
use crate::ServerArgs;

#[derive(Args)]
pub struct BenchMessagingArgs {
    /// Queued updates for the drain measurement.
    #[arg(long, default_value_t = 2000)]
    updates: usize,
    /// Share of the broker's ceiling that the latency measurement offers
    /// (its update rate is this × ceiling / run requests per update).
    #[arg(long, default_value_t = 0.25)]
    offered_share: f64,
    /// Duration of each latency measurement.
    #[arg(long, default_value_t = 20)]
    latency_secs: u64,
    /// Consecutive latency measurements, each starting with the broker idle.
    #[arg(long, default_value_t = 3)]
    latency_runs: usize,
    /// Messages for the broker-ceiling measurement.
    #[arg(long, default_value_t = 5000)]
    ceiling_messages: usize,
    /// WORKER_CONCURRENCY of the worker and of the do-nothing consumer.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Only (d) and its worker's (e): the fan-out-1 drain against the
    /// broker's bound, in about a minute instead of five.
    #[arg(long)]
    fan_out_one_only: bool,
    /// (d)'s worker drains, each on a fresh database and between two drains
    /// of its bound (B W B W … B): each ratio is taken against the bounds
    /// on either side, and the median is printed with them.
    #[arg(long, default_value_t = 1)]
    fan_out_one_repeats: usize,
    /// A server where the user may create databases.
    #[command(flatten)]
    db: ServerArgs,
}

struct Nothing;

impl Handler for Nothing {
    async fn handle(&self, _: &InboundMessage) -> Result<Outcome, HandlerError> {
        Ok(Outcome::processed(""))
    }
}

/// The broker's bound for fan-out 1: receive, publish one run request per
/// message through the worker's publisher (one PublishBatch per receive, as
/// the worker's relay does), delete. No database.
#[derive(Clone)]
struct PublishOne {
    publisher: SnsPublisher,
    sample: OutboxMessage,
}

impl PublishOne {
    async fn publish(&self, n: usize) -> Vec<Result<Outcome, HandlerError>> {
        let batch: Vec<OutboxMessage> = (0..n)
            .map(|i| OutboxMessage {
                id: orchestrator_core::domain::ids::OutboxId::new(i as i64),
                ..self.sample.clone()
            })
            .collect();
        self.publisher
            .publish(&batch)
            .await
            .into_iter()
            .map(|r| match r {
                Ok(()) => Ok(Outcome::processed("")),
                Err(e) => Err(HandlerError::Transient(e.0.into())),
            })
            .collect()
    }
}

impl Handler for PublishOne {
    async fn handle(&self, _: &InboundMessage) -> Result<Outcome, HandlerError> {
        self.publish(1)
            .await
            .pop()
            .unwrap_or_else(|| Err(HandlerError::Transient("no answer".into())))
    }

    fn batches(&self) -> bool {
        true
    }

    async fn handle_batch(
        &self,
        msgs: &[(&InboundMessage, &tracing::Span)],
    ) -> Vec<Result<Outcome, HandlerError>> {
        self.publish(msgs.len()).await
    }
}

pub async fn run(args: BenchMessagingArgs) -> Result<()> {
    if !(args.offered_share > 0.0 && args.offered_share <= 1.0)
        || args.updates == 0
        || args.latency_runs == 0
    {
        bail!("--offered-share must be in (0, 1], --updates and --latency-runs at least 1");
    }
    let aws = AwsClients::from_env().await;
    let id = &unique_suffix()[..12];
    let bucket = format!("bench-out-{id}");
    let stack = Stack::provision(aws.clone(), &format!("bench-{id}-"), &bucket, false).await?;
    let noop = Stack::provision(aws.clone(), &format!("bench-noop-{id}-"), &bucket, false).await?;
    let bound =
        Stack::provision(aws.clone(), &format!("bench-bound-{id}-"), &bucket, false).await?;
    // (d)'s bound drains queues of its own. (c)'s forwarding consumer
    // long-polls the bound stack's update queue for up to 20 s; a poll still
    // open at the broker after that consumer stopped takes messages sent
    // later, which then stay invisible for the visibility timeout: (d)'s
    // first drain took 30 s instead of 10.
    let bound_one =
        Stack::provision(aws.clone(), &format!("bench-bound1-{id}-"), &bucket, false).await?;
    let db_a = TestDb::create(&args.db.database_url, "bench_msg").await?;
    catalog_apply::apply(&db_a.pool, &synth::catalog(Shape::SCENARIO_A)).await?;
    let updates: Vec<String> = synth::updates(Shape::SCENARIO_A, args.updates + 100_000)
        .iter()
        .map(|u| u.to_json().to_string())
        .collect();
    let first = &updates[..args.updates];
    let publisher = |topic: &str| SnsPublisher {
        sns: aws.sns.clone(),
        s3: aws.s3.clone(),
        topic_arn: topic.to_string(),
        alerts_topic_arn: None,
        large_payload_bucket: bucket.clone(),
    };
    let sample_one = sample_request(
        &args.db.database_url,
        synth::fan_out_one_catalog(Shape::SCENARIO_A),
    )
    .await?;
    let fan_out_one = FanOutOne {
        aws: &aws,
        worker_prefix: format!("bench-one-{id}-"),
        bucket: &bucket,
        bound_stack: &bound_one,
        server_url: &args.db.database_url,
        concurrency: args.concurrency,
        publish_one: PublishOne {
            publisher: publisher(&bound_one.names.run_requests_topic_arn),
            sample: sample_one,
        },
    };
    if args.fan_out_one_only {
        noop.send_all(&noop.names.projection_updates_queue_url, first)
            .await?;
        let noop_secs = drain(&aws, &noop, args.concurrency, Nothing).await?;
        let one = fan_out_one
            .measure(first, noop_secs, args.fan_out_one_repeats)
            .await?;
        println!(
            "bench-messaging: (d) and (e) only, {} updates, concurrency {}",
            args.updates, args.concurrency
        );
        FanOutOneResult::print_all(&one, args.updates);
        print_rss(one.iter().filter_map(|r| r.rss).max());
        return Ok(());
    }

    // (a) The broker's ceiling first, while nothing else loads it: for
    // bodies of the size the worker publishes, and for run requests exactly
    // as the worker publishes them (the same body and message attributes,
    // through the worker's publisher).
    let sample = sample_request(&args.db.database_url, synth::catalog(Shape::SCENARIO_A)).await?;
    let body_len = sample.payload.len();
    let ceiling_of = |m: CeilingMessage| {
        bench_latency::broker_ceiling(
            &noop,
            &noop.names.run_requests_topic_arn,
            &noop.names.run_requests_queue_url,
            args.ceiling_messages,
            Arc::new(m),
        )
    };
    let ceiling = ceiling_of(CeilingMessage::Body(sample.payload.clone())).await?;
    let ceiling_published = ceiling_of(CeilingMessage::AsPublished(
        Arc::new(publisher(&noop.names.run_requests_topic_arn)),
        sample.clone(),
    ))
    .await?;

    // The first yardstick for (d): a do-nothing consumer.
    noop.send_all(&noop.names.projection_updates_queue_url, first)
        .await?;
    let noop_secs = drain(&aws, &noop, args.concurrency, Nothing).await?;

    // (b) The worker drains scenario-A updates; its publish rate is counted
    // from its start until every run request it published is on the
    // subscribed queue, as the ceiling is (LocalStack accepts a PublishBatch
    // before it delivers it).
    stack
        .send_all(&stack.names.projection_updates_queue_url, first)
        .await?;
    let counters_a = orchestrator_core::store::pool::build_pool(&db_a.url, 1)?;
    let before_a = db_work::snapshot(&counters_a).await?;
    let (worker, ops_port) = start_worker(&stack, &db_a, args.concurrency)?;
    let started = Instant::now();
    wait_processed(&db_a, args.updates).await?;
    let drain_secs = started.elapsed().as_secs_f64();
    wait_outbox_empty(&db_a).await?;
    // The worker goes on to (c): its transactions are counted as far as
    // its backends have flushed them (within a second); the WAL is exact.
    let cpu_a = db_work::backend_cpu(&counters_a).await?;
    let after_a = db_work::snapshot(&counters_a).await?;
    let work_a = db_work::difference(&counters_a, &before_a, &after_a, &cpu_a).await?;
    let published = stats::outbox_counts(&db_a.pool).await?.written;
    wait_delivered(&stack, published).await?;
    let publish_secs = started.elapsed().as_secs_f64();
    let publish_rate = published as f64 / publish_secs;
    let fan_out = published as f64 / args.updates as f64;

    // (c) Latency at an update rate offering `offered_share` of the ceiling,
    // in consecutive runs, each once the broker has delivered everything.
    let rate = args.offered_share * ceiling / fan_out.max(1.0);
    let total = ((rate * args.latency_secs as f64) as usize).max(1);
    if args.updates + total * args.latency_runs > updates.len() {
        bail!("--latency-runs x --latency-secs ask for more updates than were generated");
    }
    // The broker's own latency for the same requests at the same rate, with
    // no worker: the bound of (c) on this machine.
    purge(&aws, &noop.names.run_requests_queue_url).await?;
    let bare = bench_latency::broker_latencies(
        &aws,
        Arc::new(publisher(&noop.names.run_requests_topic_arn)),
        &sample,
        &noop.names.run_requests_queue_url,
        (total, fan_out.round() as usize),
        rate,
        Duration::from_secs(args.latency_secs + 30),
    )
    .await?;
    // Before each run, the bound for the worker's whole path (SendMessage,
    // receive, publish, arrival) at the same rate: the same updates
    // forwarded by a consumer without a database.
    let forward = bench_latency::Forward::new(
        Arc::new(publisher(&bound.names.run_requests_topic_arn)),
        sample.clone(),
        fan_out.round() as usize,
    )?;
    let mut runs = Vec::new();
    let mut forwarded = Vec::new();
    for k in 0..args.latency_runs {
        let start = args.updates + k * total;
        purge(&aws, &bound.names.run_requests_queue_url).await?;
        forwarded.push(
            bench_latency::forwarded_latencies(
                &aws,
                &bound,
                forward.clone(),
                updates[start..start + total].to_vec(),
                rate,
                Duration::from_secs(args.latency_secs + 30),
            )
            .await?,
        );
        wait_idle(&stack, &db_a).await?;
        purge(&aws, &stack.names.run_requests_queue_url).await?;
        let before = worker_histograms(ops_port).await?;
        let from = std::time::SystemTime::now();
        let l = bench_latency::latencies(
            &aws,
            &stack.names.projection_updates_queue_url,
            &stack.names.run_requests_queue_url,
            updates[start..start + total].to_vec(),
            rate,
            Duration::from_secs(args.latency_secs + 30),
        )
        .await?;
        wait_outbox_empty(&db_a).await?;
        let after = worker_histograms(ops_port).await?;
        let own = (after.0.since(&before.0), after.1.since(&before.1));
        let split = stats::publish_latency(&db_a.pool, from, std::time::SystemTime::now()).await?;
        runs.push((l, own, split));
    }
    // The forwarded requests are not read again: the broker need not keep
    // them through (d).
    purge(&aws, &bound.names.run_requests_queue_url).await?;
    let rss_a = worker.peak_rss_kib();
    drop(worker);

    let one = fan_out_one
        .measure(first, noop_secs, args.fan_out_one_repeats)
        .await?;

    let n = args.updates;
    println!(
        "bench-messaging: {n} updates, concurrency {}, LocalStack {}",
        args.concurrency,
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "(AWS)".into())
    );
    println!(
        "(a) broker ceiling, SNS PublishBatch -> SQS, {} messages of {body_len} bytes, no worker: {ceiling:.0} msg/s; \
         the same run requests with the worker's message attributes, through its publisher: {ceiling_published:.0} msg/s",
        args.ceiling_messages,
    );
    println!(
        "(b) worker at scenario A's fan-out: {n} updates processed in {drain_secs:.2}s; {published} run requests \
         ({fan_out:.1} per update) published and delivered in {publish_secs:.2}s = {publish_rate:.0} msg/s = {:.2} of the ceiling \
         (target >= 0.9); {:.2} of the ceiling for run requests with their attributes",
        publish_rate / ceiling,
        publish_rate / ceiling_published
    );
    println!("(b) {}", work_a.per_message(n));
    let pct = |l: &[Duration], p: f64| {
        l.get(((l.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    };
    println!(
        "(c) the broker's own latency at that rate, no worker: {} groups of {:.0} run requests published through the \
         worker's publisher, each from the start of its publish call to its first arrival on the queue: p50 {:.1} ms, \
         p99 {:.1} ms ({} of {total} seen)",
        total,
        fan_out.round(),
        pct(&bare, 0.5),
        pct(&bare, 0.99),
        bare.len()
    );
    for (k, ((l, own, split), bound)) in runs.iter().zip(&forwarded).enumerate() {
        println!(
            "(c) run {}, its bound: the same updates at the same rate through the worker's path without a database \
             (a consumer on the worker's SQS runtime that forwards each as {:.0} run requests through its publisher): \
             SendMessage -> run request p50 {:.1} ms, p99 {:.1} ms ({} of {total} seen)",
            k + 1,
            fan_out.round(),
            pct(bound, 0.5),
            pct(bound, 0.99),
            bound.len()
        );
        let pct = |p: f64| pct(l, p);
        let (own, handler) = own;
        let ms = |h: &Histogram, q: f64| h.quantile(q).map_or(f64::NAN, |s| s * 1e3);
        println!(
            "(c) run {}: latency SendMessage -> run request at {rate:.1} updates/s ({:.0} msg/s offered, {:.0}% of the \
             ceiling), the broker idle at the start: {} of {total} updates seen; p50 {:.1} ms, p99 {:.1} ms \
             (target p99 < 100 ms)",
            k + 1,
            rate * fan_out,
            args.offered_share * 100.0,
            l.len(),
            pct(0.5),
            pct(0.99)
        );
        println!(
            "(c) run {}: the worker's own part, receipt -> start of the publish call ({:.0} updates, its \
             /metrics histograms): p50 {:.1} ms, p99 {:.1} ms (interpolated in its bucket); {:.1}% within 20 ms \
             (target p99 < 20 ms); of which the handler (receipt -> its transaction committed) p50 {:.1} / p99 {:.1} ms, \
             the rest the relay's claim of the rows",
            k + 1,
            own.count(),
            ms(own, 0.5),
            ms(own, 0.99),
            own.share_within(0.02).unwrap_or(f64::NAN) * 100.0,
            ms(handler, 0.5),
            ms(handler, 0.99),
        );
        println!(
            "(c) run {}: where the time goes, per update ({} updates, outbox clock): SendMessage -> the handler's \
             transaction p50 {:.1} / p99 {:.1} ms; transaction -> first run request published p50 {:.1} / p99 {:.1} ms; \
             the rest is the broker's delivery to the queue",
            k + 1,
            split.updates,
            split.to_transaction.0,
            split.to_transaction.1,
            split.to_published.0,
            split.to_published.1
        );
    }
    FanOutOneResult::print_all(&one, n);
    print_rss(
        rss_a
            .into_iter()
            .chain(one.iter().filter_map(|r| r.rss))
            .max(),
    );
    Ok(())
}

/// (e): the larger of the workers' peak RSS.
fn print_rss(kib: Option<u64>) {
    match kib {
        Some(kib) => println!(
            "(e) worker peak RSS (VmHWM), the larger of the two workers: {:.1} MiB (target < 64 MiB)",
            kib as f64 / 1024.0
        ),
        None => println!("(e) worker peak RSS: not available (no /proc)"),
    }
}

/// (d)'s stage: its stacks, database and consumers.
struct FanOutOne<'a> {
    aws: &'a AwsClients,
    /// Each worker drain gets queues of its own: a worker's long polls stay
    /// open at the broker for up to 20 s after it stops, and take messages
    /// sent meanwhile out of sight for the visibility timeout.
    worker_prefix: String,
    bucket: &'a str,
    bound_stack: &'a Stack,
    /// Where each worker drain gets a fresh database.
    server_url: &'a str,
    concurrency: usize,
    publish_one: PublishOne,
}

/// What (d) measured.
struct FanOutOneResult {
    noop_secs: f64,
    one_secs: f64,
    one_published_secs: f64,
    one_published: i64,
    work: db_work::DbWork,
    bound_before: f64,
    bound_after: f64,
    rss: Option<u64>,
}

impl FanOutOne<'_> {
    /// (d) Fan-out 1: the worker drains `updates` `repeats` times, each
    /// between two measures of the broker's bound for its path (receive,
    /// publish one, delete): the broker's rate drifts as LocalStack ages, so
    /// each worker drain is compared with the bound on either side of it.
    async fn measure(
        &self,
        updates: &[String],
        noop_secs: f64,
        repeats: usize,
    ) -> Result<Vec<FanOutOneResult>> {
        let mut before = self.bound_drain(updates).await?;
        let mut out = Vec::new();
        for k in 0..repeats.max(1) {
            let drained = self.worker_drain(updates, k).await?;
            let after = self.bound_drain(updates).await?;
            out.push(FanOutOneResult {
                noop_secs,
                bound_before: before,
                bound_after: after,
                ..drained
            });
            before = after;
        }
        Ok(out)
    }

    /// The worker drains `updates` on a fresh database with the fan-out-1
    /// catalog and fresh queues (the `k`th); the bounds are left at zero.
    async fn worker_drain(&self, updates: &[String], k: usize) -> Result<FanOutOneResult> {
        let n = updates.len();
        let prefix = format!("{}{k}-", self.worker_prefix);
        let stack = Stack::provision(self.aws.clone(), &prefix, self.bucket, false).await?;
        let db = TestDb::create(self.server_url, "bench_msg_one").await?;
        catalog_apply::apply(&db.pool, &synth::fan_out_one_catalog(Shape::SCENARIO_A)).await?;
        stack
            .send_all(&stack.names.projection_updates_queue_url, updates)
            .await?;
        let counters = orchestrator_core::store::pool::build_pool(&db.url, 1)?;
        let before = db_work::snapshot(&counters).await?;
        let (worker, _) = start_worker(&stack, &db, self.concurrency)?;
        let started = Instant::now();
        wait_processed(&db, n).await?;
        let one_secs = started.elapsed().as_secs_f64();
        wait_outbox_empty(&db).await?;
        let one_published_secs = started.elapsed().as_secs_f64();
        let one_published = stats::outbox_counts(&db.pool).await?.written;
        let rss = worker.peak_rss_kib();
        let cpu = db_work::backend_cpu(&counters).await?;
        drop(worker);
        // Backends flush their counters when they exit, idle ones after 10 s.
        db_work::wait_for_backends_to_exit(&counters, Duration::from_secs(11)).await?;
        let after = db_work::snapshot(&counters).await?;
        let work = db_work::difference(&counters, &before, &after, &cpu).await?;
        Ok(FanOutOneResult {
            noop_secs: 0.0,
            one_secs,
            one_published_secs,
            one_published,
            work,
            bound_before: 0.0,
            bound_after: 0.0,
            rss,
        })
    }

    /// Sends `updates` to the bound's stack and drains them with the
    /// publish-one consumer; returns the seconds the drain took.
    async fn bound_drain(&self, updates: &[String]) -> Result<f64> {
        let queue = &self.bound_stack.names.projection_updates_queue_url;
        self.bound_stack.send_all(queue, updates).await?;
        drain(
            self.aws,
            self.bound_stack,
            self.concurrency,
            self.publish_one.clone(),
        )
        .await
    }
}

impl FanOutOneResult {
    /// The worker's drain, processed and published, over its bound.
    fn ratio(&self, n: usize) -> f64 {
        let bound_rate = 2.0 * n as f64 / (self.bound_before + self.bound_after);
        (n as f64 / self.one_published_secs) / bound_rate
    }

    /// Each alternation, then (when there are several) the medians.
    fn print_all(all: &[FanOutOneResult], n: usize) {
        for (k, one) in all.iter().enumerate() {
            if all.len() > 1 {
                println!("(d) alternation {} of {}:", k + 1, all.len());
            }
            one.print(n);
        }
        if all.len() > 1 {
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                let m = v.len() / 2;
                if v.len() % 2 == 1 {
                    v[m]
                } else {
                    (v[m - 1] + v[m]) / 2.0
                }
            };
            let ratios: Vec<f64> = all.iter().map(|r| r.ratio(n)).collect();
            let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            println!(
                "(d) {} alternations: worker / its bound {} ; median {:.2} (target >= 0.8); median worker {:.0} \
                 updates/s, median bound {:.0} updates/s",
                all.len(),
                shown.join(" "),
                median(ratios.clone()),
                median(all.iter().map(|r| n as f64 / r.one_published_secs).collect()),
                median(
                    all.iter()
                        .map(|r| 2.0 * n as f64 / (r.bound_before + r.bound_after))
                        .collect()
                ),
            );
        }
    }

    fn print(&self, n: usize) {
        let Self {
            noop_secs,
            one_secs,
            one_published_secs,
            one_published,
            bound_before,
            bound_after,
            ..
        } = *self;
        let noop_rate = n as f64 / noop_secs;
        let bound_rate = 2.0 * n as f64 / (bound_before + bound_after);
        println!(
            "(d) fan-out 1: worker drained {n} updates in {one_secs:.2}s = {:.0} updates/s ({one_published} run requests \
             published in {one_published_secs:.2}s); do-nothing consumer {n} in {noop_secs:.2}s = {noop_rate:.0} msg/s; \
             ratio {:.2} (target >= 0.5)",
            n as f64 / one_secs,
            noop_secs / one_secs
        );
        println!("(d) {}", self.work.per_message(n));
        println!(
            "(d) the broker's own bound for that path, measured just before and just after the worker: a consumer \
             without a database that receives, publishes one run request per message (the worker's publisher, one \
             PublishBatch per receive) and deletes drained {n} in {bound_before:.2}s and {bound_after:.2}s = \
             {bound_rate:.0} updates/s together ({:.2} of the do-nothing consumer); the worker, processed and \
             published, {:.0} updates/s = {:.2} of the bound (target >= 0.8)",
            bound_rate / noop_rate,
            n as f64 / one_published_secs,
            self.ratio(n)
        );
    }
}

/// Runs `handler` on the worker's SQS runtime until the stack's update queue
/// is empty; returns the seconds it took.
async fn drain<H: Handler + 'static>(
    aws: &AwsClients,
    stack: &Stack,
    concurrency: usize,
    handler: H,
) -> Result<f64> {
    let queue = &stack.names.projection_updates_queue_url;
    let mut cfg = ConsumerConfig::new(queue);
    cfg.concurrency = concurrency;
    cfg.wait_time = Duration::from_secs(1);
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(
        Consumer::new(aws.sqs.clone(), aws.s3.clone(), cfg, handler).run(stop.clone()),
    );
    let started = Instant::now();
    while stack.total_depth(queue).await? > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = consumer.await;
    Ok(secs)
}

/// The worker, and the port of its ops endpoints.
fn start_worker(stack: &Stack, db: &TestDb, concurrency: usize) -> Result<(Process, u16)> {
    // The stack's worker environment, then this benchmark's settings.
    let port = orchestrator_tests::http::free_port();
    let mut env = stack.env(db);
    env.extend([
        ("WORKER_CONCURRENCY".into(), concurrency.to_string()),
        ("OPS_ADDR".into(), format!("127.0.0.1:{port}")),
        (
            "RUST_LOG".into(),
            std::env::var("BENCH_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
        ),
    ]);
    let worker =
        Process::try_spawn("projection-update-worker", &env, &[]).map_err(|e| anyhow!(e))?;
    Ok((worker, port))
}

/// The worker's receipt → publish and handler histograms, from its
/// `/metrics`.
async fn worker_histograms(port: u16) -> Result<(Histogram, Histogram)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(text) = orchestrator_tests::http::get(port, "/metrics").await {
            use orchestrator_core::ground::prometheus::{
                HANDLER_SECONDS, RECEIPT_TO_PUBLISH_SECONDS,
            };
            return Ok((
                Histogram::parse(&text, RECEIPT_TO_PUBLISH_SECONDS)?,
                Histogram::parse(&text, HANDLER_SECONDS)?,
            ));
        }
        if Instant::now() > deadline {
            bail!("the worker's /metrics on port {port}: no answer in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the broker has nothing left to deliver: the outbox is empty
/// and the run-requests queue has stopped growing for a second.
async fn wait_idle(stack: &Stack, db: &TestDb) -> Result<()> {
    wait_outbox_empty(db).await?;
    let queue = &stack.names.run_requests_queue_url;
    let mut last = (stack.total_depth(queue).await?, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let depth = stack.total_depth(queue).await?;
        if depth != last.0 {
            last = (depth, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(1) {
            return Ok(());
        }
    }
}

/// Polls `done` every 50 ms until it holds; fails after `limit`, saying `what`.
async fn poll_until<F, Fut>(limit: Duration, what: &str, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = Instant::now();
    while !done().await? {
        if started.elapsed() > limit {
            bail!("{what}: not reached in {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn wait_processed(db: &TestDb, updates: usize) -> Result<()> {
    let what = format!("the worker processing all {updates} updates");
    poll_until(Duration::from_secs(600), &what, || async {
        Ok(stats::processed_updates(&db.pool).await? as usize >= updates)
    })
    .await
}

async fn wait_outbox_empty(db: &TestDb) -> Result<()> {
    poll_until(Duration::from_secs(900), "an empty outbox", || async {
        Ok(stats::outbox_counts(&db.pool).await?.unpublished == 0)
    })
    .await
}

/// Waits until the stack's run-requests queue holds `n` messages.
async fn wait_delivered(stack: &Stack, n: i64) -> Result<()> {
    let what = format!("{n} run requests on the queue");
    poll_until(Duration::from_secs(900), &what, || async {
        Ok(stack
            .total_depth(&stack.names.run_requests_queue_url)
            .await?
            >= n)
    })
    .await
}

/// A run request as the worker writes it, from one scenario-A update
/// processed on a throwaway database.
/// A run request the engine wrote for scenario A, as the worker's publisher
/// receives it from the outbox, with a trace context as the worker's carry.
async fn sample_request(server_url: &str, catalog: serde_json::Value) -> Result<OutboxMessage> {
    let db = TestDb::create(server_url, "bench_msg_sample").await?;
    catalog_apply::apply(&db.pool, &catalog).await?;
    let ctx = db.ctx();
    for u in synth::updates(Shape::SCENARIO_A, Shape::SCENARIO_A.datasets) {
        projection_update::process(&ctx, &u).await?;
    }
    let mut client = db.pool.get().await?;
    let tx = client.transaction().await?;
    let claimed = outbox::claim(&tx, outbox::Claim::Due, 1, Duration::from_secs(60)).await?;
    tx.commit().await?;
    let mut m = claimed
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("a scenario-A update queued no run request"))?;
    m.traceparent
        .get_or_insert_with(|| "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    Ok(m)
}

async fn purge(aws: &AwsClients, queue_url: &str) -> Result<()> {
    aws.sqs.purge_queue().queue_url(queue_url).send().await?;
    // A purge takes effect within a moment; messages sent meanwhile may go.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}
