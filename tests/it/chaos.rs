//! Fault scenarios through LocalStack with the workers as real processes;
//! each ends with the same checks ([`Fleet::settle_and_check`]).

use std::time::Duration;

use orchestrator_core::store::stats;

use orchestrator_tests::aws;
use orchestrator_tests::fleet::Fleet;
use orchestrator_tests::private_pg::PrivatePg;
use orchestrator_tests::process::Process;
use orchestrator_tests::proxy::TcpProxy;
use orchestrator_tests::{eventually, TestDb};

const SETTLE: Duration = Duration::from_secs(240);
const BURST: usize = 1000;

/// The environment with a few extra variables (later entries win).
fn with(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

async fn wait_processed(fleet: &Fleet, at_least: i64) {
    eventually(SETTLE, &format!("{at_least} updates processed"), || async {
        (fleet.processed().await >= at_least).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_projection_update_worker_mid_burst_then_restart_loses_nothing() {
    let mut fleet = Fleet::new("chaos_kill9").await;
    // A short visibility timeout: what the killed worker held comes back soon.
    let env = with(fleet.env(), &[("VISIBILITY_TIMEOUT_SECS", "5")]);
    fleet.send(&Fleet::updates(0, BURST), 1).await;
    let mut worker = Process::spawn("projection-update-worker", &env, &[]);
    wait_processed(&fleet, 300).await;
    worker.child.kill().expect("SIGKILL");
    worker.child.wait().unwrap();
    let done = fleet.processed().await;
    assert!(done < BURST as i64, "killed mid-burst ({done} done)");
    let _restarted = Process::spawn("projection-update-worker", &env, &[]);
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_burst_the_workers_recover_by_themselves() {
    let pg = PrivatePg::start();
    let db = TestDb::new_on(&pg.admin_url(), "chaos_pg_restart").await;
    let mut fleet = Fleet::on(db, "chaos_pgrestart").await;
    let env = with(fleet.env(), &[("MAX_RECEIVE_COUNT", "50")]);
    let _updates = Process::spawn("projection-update-worker", &env, &[]);
    let _lifecycle = Process::spawn("run-lifecycle-worker", &env, &[]);
    fleet.send(&Fleet::updates(0, BURST), 1).await;
    wait_processed(&fleet, 200).await;
    // Read while the server is up: a count read after the restart could be
    // a failed read, and prove nothing.
    let done = stats::processed_updates(&fleet.db.pool)
        .await
        .expect("the count before the restart");
    pg.ctl("restart");
    assert!(done < BURST as i64, "restarted mid-burst ({done} done)");
    fleet.settle_and_check(SETTLE).await;
    let dead = fleet
        .stack
        .depth(&fleet.stack.names.projection_updates_dlq_url)
        .await;
    assert_eq!(dead, Some((0, 0)), "nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstack_unavailable_for_10_seconds_mid_burst_loses_nothing() {
    let mut fleet = Fleet::new("chaos_localstack").await;
    let endpoint = aws::endpoint();
    let proxy = TcpProxy::start(endpoint.trim_start_matches("http://")).await;
    let via_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let env = with(
        fleet.env(),
        &[
            ("AWS_ENDPOINT_URL", &via_proxy),
            ("MAX_RECEIVE_COUNT", "50"),
        ],
    );
    let worker = Process::spawn("projection-update-worker", &env, &[]);
    fleet.send(&Fleet::updates(0, BURST), 1).await;
    wait_processed(&fleet, 200).await;
    proxy.cut();
    let cut_at = fleet.processed().await;
    // Ten seconds without SQS, SNS or S3 for the worker: it keeps retrying.
    let outage = tokio::time::Instant::now() + Duration::from_secs(10);
    tokio::time::sleep_until(outage).await;
    proxy.restore();
    assert!(cut_at < BURST as i64, "cut mid-burst ({cut_at} done)");
    let logs = std::fs::read_to_string(&worker.log).unwrap();
    assert!(
        logs.contains("receiving from SQS failed"),
        "the worker noticed the outage"
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test]
async fn every_message_delivered_three_times_is_processed_once() {
    let mut fleet = Fleet::new("chaos_triplicate").await;
    let _a = Process::spawn("projection-update-worker", &fleet.env(), &[]);
    let _b = Process::spawn("projection-update-worker", &fleet.env(), &[]);
    fleet.send(&Fleet::updates(0, 300), 3).await;
    fleet.settle_and_check(SETTLE).await;
    let queue = fleet.stack.names.projection_updates_queue_url.clone();
    eventually(SETTLE, "the 900 copies to be consumed", || async {
        (fleet.stack.depth(&queue).await == Some((0, 0))).then_some(())
    })
    .await;
}

/// Length of the mixed-load scenario (`CHAOS_SECS`, default 60: 600
/// updates, every dataset's many times over, with both replicas of each
/// worker and the runner's failures and retries well past their first
/// minute; set it higher for a soak).
fn chaos_secs() -> u64 {
    std::env::var("CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_of_each_kind_with_the_simulated_runner_for_minutes() {
    let mut fleet = Fleet::new("chaos_fleet").await;
    let env = fleet.env();
    let _u1 = Process::spawn("projection-update-worker", &env, &[]);
    let _u2 = Process::spawn("projection-update-worker", &env, &[]);
    let _l1 = Process::spawn("run-lifecycle-worker", &env, &[]);
    let _l2 = Process::spawn("run-lifecycle-worker", &env, &[]);
    let _runner = Process::spawn(
        "orchestrator",
        &env,
        &[
            "simulate-runner",
            "--duration-ms",
            "300",
            "--heartbeats",
            "1",
            "--failure-ratio",
            "0.1",
        ],
    );
    // Ten updates every second for CHAOS_SECS.
    let secs = chaos_secs();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for s in 0..secs as usize {
        tick.tick().await;
        fleet.send(&Fleet::updates(s * 10, 10), 1).await;
    }
    let sent_at = std::time::Instant::now();
    fleet.settle_and_check(SETTLE).await;
    let settled_at = std::time::Instant::now();
    // Every requested run ends: the runner reports on all of them. The
    // simulated runner, sharing two cores with LocalStack, is the slowest
    // part: its deadline is longer than the others'.
    eventually(SETTLE * 2, "every requested run to end", || async {
        let open = fleet
            .db
            .count("SELECT count(*) FROM metric_runs WHERE status IN ('queued', 'dispatched', 'running')")
            .await;
        (open == 0).then_some(())
    })
    .await;
    // Where the time went, for a slow CI machine's log.
    eprintln!(
        "chaos fleet: settled {:?} after the last update, every run ended {:?} later",
        settled_at - sent_at,
        settled_at.elapsed()
    );
    let ended = fleet
        .db
        .count("SELECT count(*) FROM metric_runs WHERE status IN ('succeeded', 'failed')")
        .await;
    assert!(ended > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_runner_goes_silent_ends_timed_out_and_is_retried_once() {
    let mut fleet = Fleet::new("chaos_silent").await;
    fleet.db.exec("UPDATE metrics SET max_attempts = 2").await;
    let env = with(
        fleet.env(),
        &[
            ("RUN_START_TIMEOUT_SECS", "2"),
            ("REAPER_INTERVAL_SECS", "1"),
        ],
    );
    let _updates = Process::spawn("projection-update-worker", &env, &[]);
    let _lifecycle = Process::spawn("run-lifecycle-worker", &env, &[]);
    let _runner = Process::spawn(
        "orchestrator",
        &env,
        &["simulate-runner", "--silent-ratio", "1"],
    );
    // One update of every dataset: metrics run as their datasets complete.
    fleet.send(&Fleet::updates(0, 10), 1).await;
    fleet.settle_and_check(SETTLE).await;
    let first_attempts = fleet
        .db
        .count("SELECT count(*) FROM metric_runs WHERE attempt = 1 AND requested_at IS NOT NULL")
        .await;
    assert!(first_attempts > 0, "the update requested runs");
    eventually(SETTLE, "each run and its one retry to time out", || async {
        let timed_out = fleet
            .db
            .count("SELECT count(*) FROM metric_runs WHERE status = 'timed_out'")
            .await;
        (timed_out == 2 * first_attempts).then_some(())
    })
    .await;
    assert_eq!(
        fleet
            .db
            .count(
                "SELECT count(*) FROM metric_runs r JOIN metric_runs o ON r.retry_of = o.id
                     WHERE r.attempt = 2 AND o.attempt = 1 AND r.status = 'timed_out'"
            )
            .await,
        first_attempts,
        "each timed-out run was retried exactly once"
    );
    assert_eq!(
        fleet
            .db
            .count("SELECT count(*) FROM metric_runs WHERE attempt > 2")
            .await,
        0,
        "max_attempts 2: no third attempt"
    );
    // The retries' requests reached the topic too.
    fleet.settle_and_check(SETTLE).await;
}
