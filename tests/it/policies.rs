//! Trigger policies (docs/semantics.md, "Trigger policies"): input roles,
//! grace deadlines, settle windows, cooldowns and holds, in process against
//! a real PostgreSQL. Time is a clock the test drives: the evaluation and
//! the sweep decide at the context's clock, never by sleeping.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use orchestrator_core::app::catalog_apply::{self, ApplyError};
use orchestrator_core::app::lifecycle::{self, LifecycleOutcome};
use orchestrator_core::app::policy::{self, HoldOutcome};
use orchestrator_core::app::projection_update::process;
use orchestrator_core::app::Context;
use orchestrator_core::domain::events::{Completion, CompletionStatus, LifecycleEvent};
use orchestrator_tests::api::ApiServer;
use orchestrator_tests::fixtures::{apply, base_catalog, request_of, runs_of, update};
use orchestrator_tests::invariants::assert_invariants;
use orchestrator_tests::TestDb;
use serde_json::{json, Value};

/// A clock the test moves forward.
#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    fn new() -> Self {
        TestClock(Arc::new(Mutex::new(Utc::now())))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    fn ctx(&self, db: &TestDb) -> Context {
        let at = self.0.clone();
        db.ctx().with_clock(Arc::new(move || *at.lock().unwrap()))
    }
}

/// The base catalog with `trigger` set on the metric with this code.
fn with_policy(code: &str, policy: Value) -> Value {
    let mut c = base_catalog();
    for m in c["metrics"].as_array_mut().unwrap() {
        if m["code"] == code {
            m["trigger"] = policy.clone();
        }
    }
    c
}

async fn policy_db(label: &str, code: &str, policy: Value) -> TestDb {
    let db = TestDb::new(label).await;
    apply(&db, &with_policy(code, policy)).await;
    db
}

/// d2's only update is ten days old (stale for required_days 7), then d1
/// arrives: m.pair has a pending run waiting for a fresh d2 (m.single ran).
async fn m_pair_waits_for_a_stale_d2(db: &TestDb, ctx: &Context) {
    process(ctx, &update("d2", "old")).await.unwrap();
    db.exec("UPDATE dataset_updates SET created_at = now() - interval '10 days' WHERE dataset_id = 'd2'")
        .await;
    db.exec("DELETE FROM metric_runs").await;
    process(ctx, &update("d1", "v1")).await.unwrap();
}

fn statuses(runs: &[(String, String)]) -> Vec<&str> {
    runs.iter().map(|(_, s)| s.as_str()).collect()
}

/// The dataset ids of a request's inputs, sorted.
fn used(request: &Value) -> Vec<String> {
    let mut d: Vec<String> = request["catalog"]["datasets"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    d.sort();
    d
}

#[tokio::test]
async fn catalog_apply_sets_policies_names_foreign_inputs_and_a_dry_run_writes_nothing() {
    let db = TestDb::new("policy_catalog").await;
    apply(&db, &base_catalog()).await;
    let policy =
        json!({"inputs": {"d2": "optional"}, "settle": {"quiet": "5m", "max_wait": "30m"}});
    let doc = with_policy("m.pair", policy);
    let dry = catalog_apply::dry_run(&db.pool, &doc).await.unwrap();
    let listed: Vec<String> = dry.policies.iter().map(ToString::to_string).collect();
    assert_eq!(
        listed,
        ["metric m2: none → all inputs, d2 optional, settle 5m (at most 30m)"]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metrics WHERE trigger_policy IS NOT NULL")
            .await,
        0,
        "the dry run wrote"
    );
    let applied = catalog_apply::apply(&db.pool, &doc).await.unwrap();
    assert_eq!(applied.policies.len(), 1);
    let again = catalog_apply::apply(&db.pool, &doc).await.unwrap();
    assert!(again.policies.is_empty(), "{:?}", again.policies);

    // d3 is not an input of m.pair; a typo in a key is named.
    let mut bad = with_policy("m.pair", json!({"inputs": {"d3": "context"}}));
    bad["metrics"][0]["requried_days"] = json!(3);
    match catalog_apply::apply(&db.pool, &bad).await {
        Err(ApplyError::Invalid(p)) => {
            let text = p.to_string();
            assert!(
                text.contains("metrics[0].requried_days: unknown key; did you mean required_days?"),
                "{text}"
            );
        }
        other => panic!("applied: {other:?}"),
    }
    let bad = with_policy("m.pair", json!({"inputs": {"d3": "context"}}));
    match catalog_apply::apply(&db.pool, &bad).await {
        Err(ApplyError::Invalid(p)) => assert!(
            p.to_string()
                .contains("metrics[1].trigger.inputs.d3: d3 is not an input of this metric (its inputs: d1, d2)"),
            "{p}"
        ),
        other => panic!("applied: {other:?}"),
    }
    assert_eq!(
        db.string("SELECT trigger_policy::text FROM metrics WHERE id = 'm2'")
            .await,
        r#"{"inputs": {"d2": "optional"}, "settle": {"quiet": 300, "max_wait": 1800}}"#,
        "a refused catalog changed the stored policy"
    );
}

#[tokio::test]
async fn an_optional_input_is_not_waited_for_and_its_absence_is_recorded() {
    let db = policy_db(
        "policy_optional",
        "m.pair",
        json!({"inputs": {"d2": "optional"}}),
    )
    .await;
    let ctx = db.ctx();
    process(&ctx, &update("d1", "v1")).await.unwrap();
    let runs = runs_of(&db, "m.pair").await;
    assert_eq!(statuses(&runs), ["queued"], "m.pair ran without d2");
    let req = request_of(&db, &runs[0].0).await;
    assert_eq!(used(&req), ["d1"]);
    assert_eq!(req["trigger"]["missing"], json!(["d2"]));
    assert_eq!(req["trigger"]["degraded"], json!(true));
    assert_eq!(
        db.string(&format!(
            "SELECT degraded::text FROM metric_runs WHERE id = '{}'",
            runs[0].0
        ))
        .await,
        r#"{"stale": [], "missing": ["d2"]}"#
    );
    // d2 arrives: it triggers a run of its own, with d1's newest.
    process(&ctx, &update("d2", "v1")).await.unwrap();
    let runs = runs_of(&db, "m.pair").await;
    assert_eq!(statuses(&runs), ["queued", "queued"]);
    assert_eq!(used(&request_of(&db, &runs[1].0).await), ["d1", "d2"]);
    assert_invariants(&db).await;
}

/// A retry uses its first attempt's inputs, so its request says the same of
/// them (docs/contracts.md, `trigger`): a degraded run's retry, and that
/// retry's retry, are requested with the first attempt's note.
#[tokio::test]
async fn a_degraded_runs_retries_carry_its_trigger_note() {
    let db = TestDb::new("policy_degraded_retry").await;
    let mut cat = with_policy("m.pair", json!({"inputs": {"d2": "optional"}}));
    for m in cat["metrics"].as_array_mut().unwrap() {
        if m["code"] == "m.pair" {
            m["max_attempts"] = json!(3);
        }
    }
    apply(&db, &cat).await;
    let ctx = db.ctx();
    process(&ctx, &update("d1", "v1")).await.unwrap();
    let first = runs_of(&db, "m.pair").await[0].0.clone();
    let note = request_of(&db, &first).await["trigger"].clone();
    assert_eq!(note["missing"], json!(["d2"]), "{note}");
    let mut run = first;
    for attempt in [2, 3] {
        let failed = LifecycleEvent::Completed(Completion {
            code_version: None,
            run_id: run.as_str().into(),
            status: CompletionStatus::Failure,
            metric_code: Some("m.pair".into()),
            version_ts: None,
            output_manifest: None,
            row_count: None,
            error: Some("boom".into()),
        });
        let raw = json!({"type": "metric_run_completed", "runId": run, "attempt": attempt});
        let LifecycleOutcome::Applied {
            retry_run_id: Some(retry),
            ..
        } = lifecycle::handle(&ctx, &failed, &raw).await.unwrap()
        else {
            panic!("attempt {attempt}: a failed run with attempts left is retried")
        };
        let req = request_of(&db, &retry).await;
        assert_eq!(req["attempt"], json!(attempt));
        assert_eq!(req["trigger"], note, "attempt {attempt}");
        run = retry.to_string();
    }
    assert_invariants(&db).await;
}

#[tokio::test]
async fn a_context_input_never_starts_a_run_by_itself() {
    let db = policy_db(
        "policy_context",
        "m.pair",
        json!({"inputs": {"d2": "context"}}),
    )
    .await;
    let ctx = db.ctx();
    process(&ctx, &update("d2", "v1")).await.unwrap();
    assert!(runs_of(&db, "m.pair").await.is_empty());
    process(&ctx, &update("d1", "v1")).await.unwrap();
    let runs = runs_of(&db, "m.pair").await;
    assert_eq!(statuses(&runs), ["queued"]);
    assert_eq!(used(&request_of(&db, &runs[0].0).await), ["d1", "d2"]);
    process(&ctx, &update("d2", "v2")).await.unwrap();
    assert_eq!(
        runs_of(&db, "m.pair").await.len(),
        1,
        "d2's update ran m.pair"
    );
    assert_invariants(&db).await;
}

#[tokio::test]
async fn a_grace_deadline_requests_the_run_with_the_late_input_marked_stale() {
    let db = policy_db("policy_grace", "m.pair", json!({"grace": {"after": "1h"}})).await;
    let clock = TestClock::new();
    let ctx = clock.ctx(&db);
    m_pair_waits_for_a_stale_d2(&db, &ctx).await;
    let runs = runs_of(&db, "m.pair").await;
    assert_eq!(statuses(&runs), ["pending_dependencies"]);

    clock.advance(Duration::minutes(59));
    let swept = policy::sweep(&ctx).await.unwrap();
    assert_eq!(swept.due, 0, "not yet");
    clock.advance(Duration::minutes(2));
    let swept = policy::sweep(&ctx).await.unwrap();
    assert_eq!((swept.due, swept.evaluated.runs_queued), (1, 1));
    let runs = runs_of(&db, "m.pair").await;
    assert_eq!(statuses(&runs), ["queued"]);
    let req = request_of(&db, &runs[0].0).await;
    assert_eq!(used(&req), ["d1", "d2"], "d2 went at its newest update");
    assert_eq!(req["trigger"]["stale"], json!(["d2"]));
    // The API shows it on the run.
    let api = ApiServer::for_db(&db, None).await;
    let (st, run) = api.get(&format!("/api/v1/runs/{}", runs[0].0)).await;
    assert_eq!(st, 200, "{run}");
    assert_eq!(run["degraded"], json!({"stale": ["d2"], "missing": []}));
    let (_, list) = api.get("/api/v1/runs?metric=m.pair").await;
    assert_eq!(list["items"][0]["degraded"]["stale"], json!(["d2"]));
    // Swept again: nothing more.
    clock.advance(Duration::hours(1));
    let swept = policy::sweep(&ctx).await.unwrap();
    assert_eq!(swept.evaluated.runs_queued, 0);
    assert_invariants(&db).await;
}

#[tokio::test]
async fn a_grace_deadline_does_not_help_an_input_that_never_had_an_update() {
    let db = policy_db("policy_never", "m.pair", json!({"grace": {"after": "1h"}})).await;
    let clock = TestClock::new();
    let ctx = clock.ctx(&db);
    process(&ctx, &update("d1", "v1")).await.unwrap();
    clock.advance(Duration::hours(5));
    policy::sweep(&ctx).await.unwrap();
    assert_eq!(
        statuses(&runs_of(&db, "m.pair").await),
        ["pending_dependencies"]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metric_run_timers WHERE decide_at IS NOT NULL")
            .await,
        0,
        "a run that only an update can change has no timer"
    );
}

#[tokio::test]
async fn a_settle_window_turns_a_burst_into_one_run_that_lists_what_it_folded() {
    let db = policy_db(
        "policy_settle",
        "m.single",
        json!({"settle": {"quiet": "10m", "max_wait": "1h"}}),
    )
    .await;
    let clock = TestClock::new();
    let ctx = clock.ctx(&db);
    let mut ids = Vec::new();
    for i in 0..20 {
        let s = process(&ctx, &update("d1", &format!("v{i}")))
            .await
            .unwrap();
        ids.push(s.update_id.expect("new update").to_string());
    }
    let runs = runs_of(&db, "m.single").await;
    assert_eq!(statuses(&runs), ["pending_dependencies"]);
    clock.advance(Duration::minutes(9));
    assert_eq!(policy::sweep(&ctx).await.unwrap().evaluated.runs_queued, 0);
    clock.advance(Duration::minutes(2));
    assert_eq!(policy::sweep(&ctx).await.unwrap().evaluated.runs_queued, 1);
    let runs = runs_of(&db, "m.single").await;
    assert_eq!(statuses(&runs), ["queued"]);
    let req = request_of(&db, &runs[0].0).await;
    let folded: Vec<String> = req["trigger"]["folded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(folded, ids, "all 20, in order");
    assert_eq!(
        db.strings(&format!(
            "SELECT dataset_update_id FROM run_inputs WHERE run_id = '{}'",
            runs[0].0
        ))
        .await,
        [ids[19].clone()],
        "the run uses the newest"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metric_run_folded_updates")
            .await,
        20
    );
    assert_invariants(&db).await;
}

#[tokio::test]
async fn a_cooldown_keeps_one_run_per_period() {
    let db = policy_db("policy_cooldown", "m.single", json!({"cooldown": "1h"})).await;
    let clock = TestClock::new();
    let ctx = clock.ctx(&db);
    process(&ctx, &update("d1", "v1")).await.unwrap();
    process(&ctx, &update("d1", "v2")).await.unwrap();
    process(&ctx, &update("d1", "v3")).await.unwrap();
    assert_eq!(
        statuses(&runs_of(&db, "m.single").await),
        ["queued", "pending_dependencies"]
    );
    clock.advance(Duration::minutes(61));
    policy::sweep(&ctx).await.unwrap();
    let runs = runs_of(&db, "m.single").await;
    assert_eq!(statuses(&runs), ["queued", "queued"]);
    assert_eq!(
        request_of(&db, &runs[1].0).await["trigger"]["folded"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "v2 and v3 folded"
    );
    assert_invariants(&db).await;
}

#[tokio::test]
async fn hold_then_resume_gives_exactly_one_run_and_drop_gives_none() {
    let db = TestDb::new("policy_hold").await;
    apply(&db, &base_catalog()).await;
    let ctx = db.ctx();
    assert!(matches!(
        policy::hold(&ctx, "m.single", "alice").await.unwrap(),
        HoldOutcome::Held(_)
    ));
    assert!(matches!(
        policy::hold(&ctx, "m.single", "bob").await.unwrap(),
        HoldOutcome::Unchanged { held_by: Some(ref by), .. } if by == "alice"
    ));
    for v in ["v1", "v2", "v3"] {
        process(&ctx, &update("d1", v)).await.unwrap();
    }
    assert_eq!(
        statuses(&runs_of(&db, "m.single").await),
        ["pending_dependencies"],
        "held: recorded, nothing requested"
    );
    match policy::resume(&ctx, "m.single", false).await.unwrap() {
        HoldOutcome::Resumed { evaluated, .. } => assert_eq!(evaluated.runs_queued, 1),
        other => panic!("{other:?}"),
    }
    let runs = runs_of(&db, "m.single").await;
    assert_eq!(statuses(&runs), ["queued"]);
    assert_eq!(
        request_of(&db, &runs[0].0).await["trigger"]["folded"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Resuming again changes nothing.
    assert!(matches!(
        policy::resume(&ctx, "m.single", false).await.unwrap(),
        HoldOutcome::Unchanged { held_by: None, .. }
    ));

    policy::hold(&ctx, "m.single", "alice").await.unwrap();
    process(&ctx, &update("d1", "v4")).await.unwrap();
    match policy::resume(&ctx, "m.single", true).await.unwrap() {
        HoldOutcome::Resumed {
            evaluated, dropped, ..
        } => assert_eq!((evaluated.runs_queued, dropped.len()), (0, 1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        statuses(&runs_of(&db, "m.single").await),
        ["queued", "canceled"]
    );
    assert!(matches!(
        policy::hold(&ctx, "m.nope", "alice").await.unwrap(),
        HoldOutcome::NotFound
    ));
    assert_invariants(&db).await;
}

#[tokio::test]
async fn two_sweeps_racing_on_one_deadline_request_each_run_once() {
    let db = TestDb::new("policy_race").await;
    let mut c = base_catalog();
    for m in c["metrics"].as_array_mut().unwrap() {
        m["trigger"] = json!({"settle": {"quiet": "5m", "max_wait": "5m"}});
    }
    apply(&db, &c).await;
    let clock = TestClock::new();
    let ctx = clock.ctx(&db);
    for (d, v) in [("d1", "v1"), ("d2", "v1"), ("d3", "v1")] {
        process(&ctx, &update(d, v)).await.unwrap();
    }
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE status = 'pending_dependencies'")
            .await,
        4
    );
    clock.advance(Duration::minutes(6));
    let other = clock.ctx(&db);
    let (a, b) = tokio::join!(policy::sweep(&ctx), policy::sweep(&other));
    let queued = a.unwrap().evaluated.runs_queued + b.unwrap().evaluated.runs_queued;
    assert_eq!(queued, 4, "each metric's run requested by one sweep");
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE status = 'queued'")
            .await,
        4
    );
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, 4);
    assert_invariants(&db).await;
}

const TOKEN: &str = "policy-test-token-0123456789";

#[tokio::test]
async fn the_api_says_what_happens_next_and_holds_and_resumes_behind_the_token() {
    let db = policy_db(
        "policy_api",
        "m.pair",
        json!({"grace": {"after": "2h"}, "inputs": {"d1": "required"}}),
    )
    .await;
    let ctx = db.ctx();
    // d2 once, ten days ago; d1 now: m.pair waits for a fresh d2 until its grace.
    m_pair_waits_for_a_stale_d2(&db, &ctx).await;
    let api = ApiServer::for_db(&db, Some(TOKEN)).await;
    let (st, m) = api.get("/api/v1/metrics/m.pair").await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(
        m["triggerPolicy"],
        "all inputs, grace 2h after the first input"
    );
    let next = m["next"]["text"].as_str().unwrap();
    assert!(
        next.starts_with("runs at ") && next.ends_with(" with d2 stale unless d2 arrives"),
        "{next}"
    );
    assert!(m["next"]["at"].is_string());

    // Hold and resume: behind the token, with unknown parameters refused.
    let (st, _) = api
        .post("/api/v1/metrics/m.single/hold?by=alice", None)
        .await;
    assert_eq!(st, 401);
    let (st, body) = api
        .post("/api/v1/metrics/m.single/hold?who=alice", Some(TOKEN))
        .await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = api
        .post("/api/v1/metrics/m.single/hold?by=alice", Some(TOKEN))
        .await;
    assert_eq!(
        (st, body["held"].as_bool(), body["changed"].as_bool()),
        (200, Some(true), Some(true)),
        "{body}"
    );
    for v in ["v2", "v3"] {
        process(&ctx, &update("d1", v)).await.unwrap();
    }
    let (_, m) = api.get("/api/v1/metrics/m.single").await;
    assert_eq!(m["held"]["by"], "alice");
    let next = m["next"]["text"].as_str().unwrap();
    assert!(
        next.starts_with("held since ") && next.ends_with(" by alice, 2 updates waiting"),
        "{next}"
    );
    let (_, list) = api.get("/api/v1/metrics").await;
    let held: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["held"].is_object())
        .map(|m| m["code"].as_str().unwrap())
        .collect();
    assert_eq!(held, ["m.single"]);
    let (st, body) = api
        .post("/api/v1/metrics/m.single/resume?drop=maybe", Some(TOKEN))
        .await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = api
        .post("/api/v1/metrics/m.single/resume", Some(TOKEN))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["queuedRuns"].as_array().unwrap().len(), 1, "{body}");
    let (st, body) = api.post("/api/v1/metrics/nope/hold", Some(TOKEN)).await;
    assert_eq!(st, 404, "{body}");
    assert_invariants(&db).await;
}

#[tokio::test]
async fn a_policy_given_to_a_waiting_run_applies_at_the_next_sweep() {
    let db = TestDb::new("policy_late_apply").await;
    apply(&db, &base_catalog()).await;
    let clock = TestClock::new();
    let ctx = clock.ctx(&db);
    m_pair_waits_for_a_stale_d2(&db, &ctx).await;
    assert_eq!(
        statuses(&runs_of(&db, "m.pair").await),
        ["pending_dependencies"]
    );
    // The run waits under the default rule; a grace of one hour is given
    // two hours later, and the sweep applies it without any new update.
    clock.advance(Duration::hours(2));
    apply(
        &db,
        &with_policy("m.pair", json!({"grace": {"after": "1h"}})),
    )
    .await;
    let swept = policy::sweep(&ctx).await.unwrap();
    assert_eq!(swept.evaluated.runs_queued, 1);
    assert_eq!(statuses(&runs_of(&db, "m.pair").await), ["queued"]);
    assert_invariants(&db).await;
}

#[tokio::test]
async fn a_policy_taken_away_leaves_no_timer_behind() {
    let db = policy_db(
        "policy_removed",
        "m.pair",
        json!({"grace": {"at": "0 0 1 1 *"}}),
    )
    .await;
    let clock = TestClock::new();
    let ctx = clock.ctx(&db);
    m_pair_waits_for_a_stale_d2(&db, &ctx).await;
    assert_eq!(
        db.count("SELECT count(*) FROM metric_run_timers").await,
        1,
        "the run waits for its grace deadline"
    );
    apply(&db, &base_catalog()).await;
    clock.advance(Duration::minutes(1));
    let first = policy::sweep(&ctx).await.unwrap();
    assert_eq!(
        (first.due, first.evaluated.runs_queued),
        (1, 0),
        "decided again, still waiting"
    );
    assert_eq!(db.count("SELECT count(*) FROM metric_run_timers").await, 0);
    assert_eq!(
        policy::sweep(&ctx).await.unwrap().due,
        0,
        "and not found due again"
    );
    assert_eq!(
        statuses(&runs_of(&db, "m.pair").await),
        ["pending_dependencies"]
    );
}

/// Holds, resumes and drops race updates in flight: each round runs one of
/// them at the same time as an update of m.single's input. Whatever the
/// interleaving, the invariants hold after every round, and at the end
/// every update is accounted for: used by a run, folded into one, or held
/// by a run's pending row (a dropped run's included).
#[tokio::test]
async fn holds_resumes_and_drops_racing_updates_lose_nothing() {
    let db = TestDb::new("policy_hold_races").await;
    apply(&db, &base_catalog()).await;
    let ctx = db.ctx();
    for round in 0..24 {
        let version = format!("v{round}");
        let u = update("d1", &version);
        let operator = async {
            match round % 4 {
                0 | 2 => policy::hold(&ctx, "m.single", "ops").await.map(|_| ()),
                1 => policy::resume(&ctx, "m.single", false).await.map(|_| ()),
                _ => policy::resume(&ctx, "m.single", true).await.map(|_| ()),
            }
        };
        let (processed, operated) = tokio::join!(process(&ctx, &u), operator);
        processed.unwrap_or_else(|e| panic!("round {round}: update: {e}"));
        operated.unwrap_or_else(|e| panic!("round {round}: operator: {e}"));
        assert_invariants(&db).await;
    }
    policy::resume(&ctx, "m.single", false).await.unwrap();
    let lost = db
        .strings(
            "SELECT u.id FROM dataset_updates u
              WHERE u.dataset_id = 'd1'
                AND NOT EXISTS (SELECT 1 FROM run_inputs i WHERE i.dataset_update_id = u.id)
                AND NOT EXISTS (SELECT 1 FROM metric_run_folded_updates f WHERE f.update_id = u.id)
                AND NOT EXISTS (SELECT 1 FROM metric_run_pending_datasets p
                                 WHERE p.received_update_id = u.id)
              ORDER BY 1",
        )
        .await;
    assert!(lost.is_empty(), "updates no run accounts for: {lost:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM dataset_updates WHERE dataset_id = 'd1'")
            .await,
        24
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE metric_code = 'm.single' AND status = 'pending_dependencies'")
            .await,
        0,
        "resumed: nothing of m.single waits"
    );
}
