//! A backfill end to end on LocalStack, with the workers, the simulated
//! runner and the CLI as real processes (docs/semantics.md, "Backfills"):
//! the dry run's plan, 50 points of a metric and 50 of a downstream one in
//! order within `--max-in-flight 3`, kill -9 of both workers mid-backfill
//! with every point requested once, live updates served while it runs, the
//! alert, every backfill request read as the reference runner reads it, and
//! a second backfill canceled.

use std::time::Duration;

use chrono::{DateTime, Utc};
use orchestrator_tests::aws::{alerts_until, Stack};
use orchestrator_tests::fixtures::{apply, base_catalog, request_text, update_body};
use orchestrator_tests::process::{cli, Process};
use orchestrator_tests::reference::as_the_runner_reads;
use orchestrator_tests::{eventually, TestDb};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(180);

/// m.down reads m.single's output (series "m.single" of dataset d9).
fn catalog() -> Value {
    let mut c = base_catalog();
    c["datasets"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "d9", "name": "Outputs", "series": ["m.single"]}));
    c["series"]
        .as_array_mut()
        .unwrap()
        .push(json!({"code": "m.single"}));
    c["metrics"].as_array_mut().unwrap().push(json!({
        "id": "m9", "code": "m.down", "expression_type": "series_math",
        "expression_json": {"op": "ratio", "left": {"seriesCode": "m.single"}, "right": {"seriesCode": "S1"}}
    }));
    c
}

/// The fleet's log: d1 and d9 updated every day at noon for 60 days.
async fn history(db: &TestDb) {
    db.exec(
        "INSERT INTO dataset_updates (id, dataset_id, version_manifest_path, projections_path, bucket, event_key, created_at)
         SELECT gen_random_uuid()::text, d, d || '/day' || n || '/manifest.json', d || '/day' || n || '/p/', 'b',
                d || '-day-' || n, date_trunc('day', now()) - make_interval(days => n) + interval '12 hours'
           FROM unnest(ARRAY['d1', 'd9']) AS d, generate_series(1, 60) AS n",
    )
    .await;
}

/// (metric, as_of, status, created_at, finished_at, attempt) of a backfill's runs.
type RunRow = (
    String,
    DateTime<Utc>,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    i32,
);

async fn runs_of(db: &TestDb, backfill: &str) -> Vec<RunRow> {
    db.client()
        .await
        .query(
            "SELECT metric_code, as_of, status, created_at, finished_at, attempt FROM metric_runs
              WHERE backfill_id = $1 ORDER BY created_at, id",
            &[&backfill],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

/// Waits until `n` of the backfill's runs succeeded; how many did.
async fn succeeded_at_least(db: &TestDb, backfill: &str, n: usize) -> usize {
    eventually(WAIT, &format!("{n} points of {backfill} done"), || async {
        let done = succeeded(db, backfill).await;
        (done >= n).then_some(done)
    })
    .await
}

async fn succeeded(db: &TestDb, backfill: &str) -> usize {
    runs_of(db, backfill)
        .await
        .iter()
        .filter(|x| x.2 == "succeeded")
        .count()
}

async fn status(db: &TestDb, backfill: &str) -> String {
    db.client()
        .await
        .query_one("SELECT status FROM backfills WHERE id = $1", &[&backfill])
        .await
        .unwrap()
        .get(0)
}

fn id_in(created: &str) -> String {
    created
        .split_whitespace()
        .find(|w| w.starts_with("bf-"))
        .unwrap_or_else(|| panic!("no backfill id in {created}"))
        .trim_end_matches(':')
        .to_string()
}

/// (metric, as_of, requested_at, finished_at) of a backfill's requested
/// points, as the workers recorded them: both times are their ticks'
/// transaction times, so a point settled and another requested in one tick
/// do not overlap.
type PointTimes = (String, DateTime<Utc>, DateTime<Utc>, DateTime<Utc>);

async fn point_times(db: &TestDb, backfill: &str) -> Vec<PointTimes> {
    db.client()
        .await
        .query(
            "SELECT m.code, p.as_of, p.requested_at, p.finished_at FROM backfill_points p
               JOIN metrics m ON m.id = p.metric_id
              WHERE p.backfill_id = $1 AND p.requested_at IS NOT NULL ORDER BY p.requested_at",
            &[&backfill],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Most points in flight at once.
fn most_at_once(points: &[PointTimes]) -> usize {
    points
        .iter()
        .map(|a| points.iter().filter(|b| b.2 <= a.2 && b.3 > a.2).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_backfill_runs_in_order_within_its_bound_survives_kill_9_and_leaves_live_updates_alone() {
    let db = TestDb::new("bf_e2e").await;
    apply(&db, &catalog()).await;
    history(&db).await;
    let stack = Stack::new("bf", false).await;
    let env = stack.env(&db);
    let spawn_workers = || {
        [
            Process::spawn("projection-update-worker", &env, &[]),
            Process::spawn("run-lifecycle-worker", &env, &[]),
        ]
    };
    let mut workers = spawn_workers();
    let _runner = Process::spawn(
        "orchestrator",
        &env,
        &["simulate-runner", "--duration-ms", "300"],
    );
    let range = ["--from", "55d", "--to", "5d", "--points", "daily"];
    let dry = cli(
        &env,
        &[
            &[
                "backfill",
                "create",
                "--metric",
                "m.single",
                "--downstream",
                "--max-in-flight",
                "3",
                "--dry-run",
            ][..],
            &range[..],
        ]
        .concat(),
    );
    assert!(
        dry.contains("METRIC\tAS OF\tFOUND\tACTION\tINPUTS"),
        "{dry}"
    );
    assert!(
        dry.contains("plan: 100 point(s) of m.down, m.single: missing 100; 100 to compute"),
        "{dry}"
    );
    assert!(dry.contains("dry run: nothing written"), "{dry}");
    assert_eq!(db.count("SELECT count(*) FROM backfills").await, 0);
    let created = cli(
        &env,
        &[
            &[
                "backfill",
                "create",
                "--metric",
                "m.single",
                "--downstream",
                "--max-in-flight",
                "3",
            ][..],
            &range[..],
        ]
        .concat(),
    );
    let id = id_in(&created);
    assert!(
        created.contains("100 point(s) to compute, at most 3 at once"),
        "{created}"
    );

    succeeded_at_least(&db, &id, 3).await;
    // Live updates are served while the backfill runs: their run is
    // requested before the backfill finishes.
    for body in [update_body("d2", "live"), update_body("d3", "live")] {
        stack
            .send(&stack.names.projection_updates_queue_url, &body)
            .await;
    }
    let (latency, before_end) = eventually(WAIT, "the live run of m.nodays to succeed", || async {
        let rows = db
            .client()
            .await
            .query(
                "SELECT r.status, EXTRACT(EPOCH FROM r.requested_at - r.request_source_sent_at)::float8,
                        r.requested_at < COALESCE(b.finished_at, 'infinity')
                   FROM metric_runs r, backfills b
                  WHERE r.metric_code = 'm.nodays' AND b.id = $1",
                &[&id],
            )
            .await
            .ok()?;
        let row = rows.first()?;
        (row.get::<_, &str>(0) == "succeeded").then(|| (row.get::<_, Option<f64>>(1), row.get::<_, bool>(2)))
    })
    .await;
    assert!(before_end, "the live run waited for the backfill");
    eprintln!(
        "live update sent → its run requested, during the backfill: {:.0} ms",
        latency.unwrap_or_default().max(0.0) * 1000.0
    );

    // Mid-backfill, both workers die without a word and come back.
    let so_far = succeeded(&db, &id).await;
    succeeded_at_least(&db, &id, so_far + 5).await;
    for w in &mut workers {
        w.child.kill().expect("SIGKILL");
        w.child.wait().unwrap();
    }
    assert_eq!(status(&db, &id).await, "running", "killed mid-backfill");
    let _workers = spawn_workers();

    eventually(WAIT, "the backfill to complete", || async {
        (status(&db, &id).await == "completed").then_some(())
    })
    .await;
    let runs = runs_of(&db, &id).await;
    assert_eq!(
        runs.len(),
        100,
        "each point requested once, no retry needed"
    );
    let mut points: Vec<(String, DateTime<Utc>)> =
        runs.iter().map(|r| (r.0.clone(), r.1)).collect();
    points.sort();
    points.dedup();
    assert_eq!(points.len(), 100, "no point requested twice");
    assert!(
        runs.iter().all(|r| r.2 == "succeeded" && r.5 == 1),
        "{runs:?}"
    );
    // In time order per metric.
    for metric in ["m.single", "m.down"] {
        let moments: Vec<DateTime<Utc>> =
            runs.iter().filter(|r| r.0 == metric).map(|r| r.1).collect();
        assert!(
            moments.windows(2).all(|w| w[0] < w[1]),
            "{metric}: {moments:?}"
        );
    }
    let points = point_times(&db, &id).await;
    assert_eq!(points.len(), 100);
    assert!(
        most_at_once(&points) <= 3,
        "at most 3 in flight: {}",
        most_at_once(&points)
    );
    // A downstream point is requested once its upstream points are done.
    for down in points.iter().filter(|p| p.0 == "m.down") {
        for up in points.iter().filter(|p| p.0 == "m.single" && p.1 <= down.1) {
            assert!(
                up.3 <= down.2,
                "m.down at {} before m.single at {} was done",
                down.1,
                up.1
            );
        }
    }
    let shown = cli(&env, &["backfill", "show", &id]);
    assert!(shown.contains(&format!("{id} completed [##############################] 100% 100 done / 0 running / 0 failed / 0 left")), "{shown}");
    let alerts = alerts_until(&stack, WAIT, |a| {
        a.iter().any(|x| x["type"] == "backfill_completed")
    })
    .await;
    let done = alerts
        .iter()
        .find(|a| a["type"] == "backfill_completed")
        .unwrap();
    assert_eq!(done["backfillId"], id.as_str());
    assert_eq!(done["points"]["done"], 100);

    // Every backfill request, as the reference runner reads it.
    let mut bodies = Vec::new();
    for run_id in db
        .client()
        .await
        .query(
            "SELECT id FROM metric_runs WHERE backfill_id = $1 ORDER BY as_of LIMIT 10",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
    {
        bodies.push(request_text(&db, &run_id).await.expect("a request"));
    }
    assert!(
        bodies[0].contains(&format!("\"backfillId\":\"{id}\"")),
        "{}",
        bodies[0]
    );
    let (ok, verdicts) = as_the_runner_reads(&bodies);
    assert!(ok, "{verdicts}");
    assert_eq!(
        verdicts.lines().filter(|l| l.starts_with("ok ")).count(),
        10,
        "{verdicts}"
    );

    // A second backfill, canceled midway: nothing more is requested.
    let again = cli(
        &env,
        &[
            "backfill",
            "create",
            "--metric",
            "m.single",
            "--from",
            "55d",
            "--to",
            "5d",
            "--points",
            "daily",
            "--reprocess",
            "all",
            "--max-in-flight",
            "2",
        ],
    );
    let second = id_in(&again);
    succeeded_at_least(&db, &second, 2).await;
    let canceled = cli(&env, &["backfill", "cancel", &second]);
    assert!(
        canceled.contains(&format!("backfill {second}: canceled")),
        "{canceled}"
    );
    let at_cancel = runs_of(&db, &second).await.len();
    // The workers keep ticking (a live update is served end to end) and
    // request nothing more of it.
    stack
        .send(
            &stack.names.projection_updates_queue_url,
            &update_body("d2", "after-cancel"),
        )
        .await;
    eventually(WAIT, "the live run after the cancel", || async {
        let n = db
            .count("SELECT count(*) FROM metric_runs WHERE metric_code = 'm.nodays' AND status = 'succeeded'")
            .await;
        (n >= 2).then_some(())
    })
    .await;
    assert_eq!(runs_of(&db, &second).await.len(), at_cancel);
    assert_eq!(status(&db, &second).await, "canceled");
    let listed = cli(&env, &["backfill", "list"]);
    assert!(
        listed.contains(&format!("{second} canceled")) && listed.contains("2 backfill(s)"),
        "{listed}"
    );
}
