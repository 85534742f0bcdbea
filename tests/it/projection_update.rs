//! Freshness and processing a projection update (docs/semantics.md).

use orchestrator_core::app::projection_update::process;
use orchestrator_core::domain::events::ProjectionUpdate;
use orchestrator_tests::fixtures::{db_with_catalog, request_of, runs_of, update};
use serde_json::json;

#[tokio::test]
async fn metric_whose_datasets_are_all_fresh_runs_at_once() {
    let db = db_with_catalog("immediate").await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    // d1 feeds m.single (complete), m.pair and m.triple (still waiting).
    assert_eq!(
        (
            s.dependent_metrics,
            s.evaluated.runs_created,
            s.evaluated.runs_queued,
            s.evaluated.runs_pending
        ),
        (3, 3, 1, 2)
    );
    let single = runs_of(&db, "m.single").await;
    assert_eq!(single.len(), 1);
    assert_eq!(single[0].1, "queued");
    assert_eq!(s.evaluated.requests.len(), 1);
    assert_eq!(runs_of(&db, "m.pair").await[0].1, "pending_dependencies");
}

#[tokio::test]
async fn pending_run_waits_until_every_required_dataset_has_an_update() {
    let db = db_with_catalog("pending").await;
    let ctx = db.ctx();
    process(&ctx, &update("d1", "v1")).await.unwrap();
    process(&ctx, &update("d2", "v1")).await.unwrap();
    // m.triple still waits for d3, m.pair is complete.
    assert_eq!(runs_of(&db, "m.pair").await[0].1, "queued");
    let triple = runs_of(&db, "m.triple").await;
    assert_eq!(triple.len(), 1);
    assert_eq!(triple[0].1, "pending_dependencies");
    let waiting = db
        .strings(&format!(
            "SELECT dataset_id FROM metric_run_pending_datasets WHERE run_id = '{}' AND NOT received",
            triple[0].0
        ))
        .await;
    assert_eq!(waiting, vec!["d3"]);
    let s = process(&ctx, &update("d3", "v1")).await.unwrap();
    assert!(s.evaluated.queued_run_ids.iter().any(|r| *r == triple[0].0));
    assert_eq!(runs_of(&db, "m.triple").await[0].1, "queued");
}

#[tokio::test]
async fn further_updates_are_absorbed_into_the_one_pending_run() {
    let db = db_with_catalog("absorb").await;
    let ctx = db.ctx();
    for v in ["v1", "v2", "v3"] {
        process(&ctx, &update("d2", v)).await.unwrap();
    }
    let triple = runs_of(&db, "m.triple").await;
    assert_eq!(
        triple.len(),
        1,
        "one pending run absorbs all updates: {triple:?}"
    );
    // A newer update of the same dataset replaces the older one.
    let manifest = db
        .string(&format!(
            "SELECT du.version_manifest_path FROM metric_run_pending_datasets p
               JOIN dataset_updates du ON du.id = p.received_update_id
              WHERE p.run_id = '{}' AND p.dataset_id = 'd2'",
            triple[0].0
        ))
        .await;
    assert_eq!(manifest, "d2/v3/manifest.json");
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE status = 'pending_dependencies'")
            .await,
        3
    );
}

#[tokio::test]
async fn identical_redelivery_is_a_duplicate_and_changes_nothing() {
    let db = db_with_catalog("duplicate").await;
    let ctx = db.ctx();
    let first = process(&ctx, &update("d1", "v1")).await.unwrap();
    assert!(!first.duplicate);
    let before = db.count("SELECT count(*) FROM metric_runs").await;
    let again = process(&ctx, &update("d1", "v1")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.evaluated.runs_queued, 0);
    assert_eq!(db.count("SELECT count(*) FROM metric_runs").await, before);
    assert_eq!(db.count("SELECT count(*) FROM dataset_updates").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM event_log WHERE event_key = 'd1:d1/v1/manifest.json'")
            .await,
        1
    );
}

#[tokio::test]
async fn unknown_dataset_is_registered_and_nothing_is_lost() {
    let db = db_with_catalog("unknown_dataset").await;
    let u = ProjectionUpdate {
        dataset_id: "brand_new".into(),
        bucket: Some("b".into()),
        version_manifest_path: "x/manifest.json".into(),
        projections_path: "x/".into(),
    };
    let s = process(&db.ctx(), &u).await.unwrap();
    assert_eq!(s.dependent_metrics, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM datasets WHERE id = 'brand_new'")
            .await,
        1
    );
    assert_eq!(
        db.string("SELECT bucket FROM dataset_updates WHERE dataset_id = 'brand_new'")
            .await,
        "b"
    );
}

#[tokio::test]
async fn update_without_bucket_takes_the_catalog_bucket() {
    let db = db_with_catalog("bucket_default").await;
    process(&db.ctx(), &update("d2", "v1")).await.unwrap();
    assert_eq!(
        db.string("SELECT bucket FROM dataset_updates").await,
        "bucket-2"
    );
}

#[tokio::test]
async fn stale_update_is_not_used_with_required_days_7() {
    let db = db_with_catalog("freshness_7").await;
    let ctx = db.ctx();
    process(&ctx, &update("d2", "old")).await.unwrap();
    // Age every d2 update to 8 days: older than m.pair's 7 required days.
    db.exec(
        "UPDATE dataset_updates SET created_at = now() - interval '8 days' WHERE dataset_id = 'd2'",
    )
    .await;
    db.exec("UPDATE metric_run_pending_datasets SET received_at = now() - interval '8 days' WHERE dataset_id = 'd2' AND received").await;
    process(&ctx, &update("d1", "v1")).await.unwrap();
    let pair = runs_of(&db, "m.pair").await;
    assert_eq!(pair.len(), 1);
    assert_eq!(
        pair[0].1, "pending_dependencies",
        "a stale d2 update must not complete m.pair"
    );
    let received = db
        .count(&format!(
            "SELECT count(*) FROM metric_run_pending_datasets WHERE run_id = '{}' AND dataset_id = 'd2' AND received",
            pair[0].0
        ))
        .await;
    assert_eq!(
        received, 0,
        "the stale update was dropped from the pending run"
    );
    // Just inside the limit (6 days) is fresh.
    db.exec(
        "UPDATE dataset_updates SET created_at = now() - interval '6 days' WHERE dataset_id = 'd2'",
    )
    .await;
    process(&ctx, &update("d1", "v2")).await.unwrap();
    assert_eq!(runs_of(&db, "m.pair").await[0].1, "queued");
}

#[tokio::test]
async fn required_days_zero_never_goes_stale() {
    let db = db_with_catalog("freshness_0").await;
    let ctx = db.ctx();
    process(&ctx, &update("d2", "v1")).await.unwrap();
    db.exec("UPDATE dataset_updates SET created_at = now() - interval '4000 days'")
        .await;
    db.exec("UPDATE metric_run_pending_datasets SET received_at = now() - interval '4000 days' WHERE received").await;
    process(&ctx, &update("d3", "v1")).await.unwrap();
    assert_eq!(
        runs_of(&db, "m.nodays").await[0].1,
        "queued",
        "required_days 0: always fresh"
    );
    // m.triple (7 days) does not take the ancient d2 update.
    assert_eq!(runs_of(&db, "m.triple").await[0].1, "pending_dependencies");
}

#[tokio::test]
async fn run_request_catalog_names_exactly_the_updates_used() {
    let db = db_with_catalog("exact_updates").await;
    let ctx = db.ctx();
    process(&ctx, &update("d1", "v1")).await.unwrap();
    process(&ctx, &update("d3", "v1")).await.unwrap();
    let s = process(&ctx, &update("d2", "v1")).await.unwrap();
    // Later updates must not change what the queued runs' requests describe.
    process(&ctx, &update("d1", "v2")).await.unwrap();
    let triple = runs_of(&db, "m.triple").await;
    let run_id = &triple[0].0;
    assert!(s.evaluated.queued_run_ids.iter().any(|r| r == run_id));
    let request = request_of(&db, run_id).await;
    let used = db
        .client()
        .await
        .query(
            "SELECT du.dataset_id, COALESCE(du.bucket, ''), du.version_manifest_path, du.projections_path
               FROM run_inputs rdu JOIN dataset_updates du ON du.id = rdu.dataset_update_id
              WHERE rdu.run_id = $1 ORDER BY 1",
            &[run_id],
        )
        .await
        .unwrap();
    let mut expected = serde_json::Map::new();
    for r in &used {
        expected.insert(
            r.get::<_, String>(0),
            json!({"bucket": r.get::<_, String>(1), "manifestPath": r.get::<_, String>(2),
                   "projectionsPath": r.get::<_, String>(3)}),
        );
    }
    assert_eq!(used.len(), 3);
    assert_eq!(
        request["catalog"]["datasets"],
        serde_json::Value::Object(expected)
    );
    assert_eq!(
        request["catalog"]["datasets"]["d1"]["manifestPath"],
        "d1/v1/manifest.json"
    );
}

/// Where a requested run's provenance is stored (migrations V11, V13, V15):
/// its first two inputs by dataset id on the run row, only a third and later
/// ones in `run_extra_inputs`; the views `run_dataset_updates` (the
/// reference's name) and `run_inputs` are the whole of it.
#[tokio::test]
async fn a_run_keeps_its_first_two_inputs_on_its_row_and_only_the_rest_apart() {
    let db = db_with_catalog("inputs_on_row").await;
    let ctx = db.ctx();
    for d in ["d1", "d2", "d3"] {
        process(&ctx, &update(d, "v1")).await.unwrap();
    }
    let placed = |metric: &'static str| {
        let db = &db;
        async move {
            let run_id = runs_of(db, metric).await[0].0.clone();
            let row = db
                .client()
                .await
                .query_one(
                    "SELECT (SELECT dataset_id FROM dataset_updates WHERE id = r.input_update_id),
                            (SELECT dataset_id FROM dataset_updates WHERE id = r.second_input_update_id),
                            (SELECT count(*) FROM run_extra_inputs WHERE run_id = r.id),
                            (SELECT count(*) FROM run_inputs WHERE run_id = r.id),
                            (SELECT count(*) FROM run_dataset_updates WHERE run_id = r.id)
                       FROM metric_runs r WHERE r.id = $1",
                    &[&run_id],
                )
                .await
                .unwrap();
            (
                row.get::<_, Option<String>>(0),
                row.get::<_, Option<String>>(1),
                row.get::<_, i64>(2),
                row.get::<_, i64>(3),
                row.get::<_, i64>(4),
            )
        }
    };
    let (d1, d2) = (Some("d1".to_string()), Some("d2".to_string()));
    assert_eq!(placed("m.pair").await, (d1.clone(), d2.clone(), 0, 2, 2));
    assert_eq!(placed("m.triple").await, (d1, d2, 1, 3, 3));
}

/// Provenance queries written for metrics-engine-cp read its table
/// `run_dataset_updates` (run_id, dataset_update_id, created_at): what a run
/// was computed from, and which runs used an update. They keep their answer,
/// every input of every run, wherever the input is stored.
#[tokio::test]
async fn reference_provenance_queries_see_every_input_of_every_run() {
    let db = db_with_catalog("reference_provenance").await;
    let ctx = db.ctx();
    for d in ["d1", "d2", "d3"] {
        process(&ctx, &update(d, "v1")).await.unwrap();
    }
    let client = db.client().await;
    for (metric, want) in [
        ("m.pair", vec!["d1", "d2"]),
        ("m.triple", vec!["d1", "d2", "d3"]),
    ] {
        let run_id = runs_of(&db, metric).await[0].0.clone();
        let datasets: Vec<String> = client
            .query(
                "SELECT du.dataset_id FROM run_dataset_updates rdu
                   JOIN dataset_updates du ON du.id = rdu.dataset_update_id
                  WHERE rdu.run_id = $1 AND rdu.created_at IS NOT NULL
                  ORDER BY du.dataset_id",
                &[&run_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(datasets, want, "{metric}");
    }
    let users: Vec<String> = client
        .query(
            "SELECT r.metric_code FROM run_dataset_updates rdu
               JOIN metric_runs r ON r.id = rdu.run_id
               JOIN dataset_updates du ON du.id = rdu.dataset_update_id
              WHERE du.dataset_id = 'd1' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(users, ["m.pair", "m.single", "m.triple"]);
}

#[tokio::test]
async fn run_request_has_the_wire_shape_of_the_contract() {
    let db = db_with_catalog("wire_shape").await;
    let ctx = db.ctx();
    process(&ctx, &update("d2", "v1")).await.unwrap();
    let s = process(&ctx, &update("d1", "v1")).await.unwrap();
    let pair = runs_of(&db, "m.pair").await;
    let run_id = &pair[0].0;
    assert!(s.evaluated.queued_run_ids.iter().any(|r| r == run_id));
    let r = request_of(&db, run_id).await;
    let requested_at: chrono::DateTime<chrono::Utc> = db
        .client()
        .await
        .query_one(
            "SELECT requested_at FROM metric_runs WHERE id = $1",
            &[run_id],
        )
        .await
        .unwrap()
        .get(0);
    // The version's hash is the sha256 of its canonical definition
    // (domain::definition); the relay copies it from the version's row.
    let hash: String = db
        .client()
        .await
        .query_one(
            "SELECT hash FROM metric_definition_versions WHERE metric_id = 'm2' AND version = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        r,
        json!({
          "type": "metric_run_requested", "runId": run_id, "metricCode": "m.pair",
          "expressionType": "series_math",
          "expressionJson": {"op": "ratio", "left": {"seriesCode": "S1"}, "right": {"seriesCode": "S3"}, "scale": 100},
          "inputs": [{"datasetId": "d1", "seriesCode": "S1"}, {"datasetId": "d2", "seriesCode": "S3"}],
          "catalog": {"datasets": {
              "d1": {"bucket": "bucket-1", "manifestPath": "d1/v1/manifest.json", "projectionsPath": "d1/v1/projections/"},
              "d2": {"bucket": "bucket-2", "manifestPath": "d2/v1/manifest.json", "projectionsPath": "d2/v1/projections/"}}},
          "output": {"basePath": "s3://out-bucket/metrics/m.pair/"},
          "attempt": 1,
          "requestedAt": orchestrator_core::domain::run_request::format_timestamp(requested_at),
          "definitionVersion": 1,
          "definitionHash": hash
        })
    );
    assert!(
        uuid::Uuid::parse_str(run_id).is_ok_and(|u| u.get_version_num() == 7),
        "run ids are UUID v7"
    );
}

#[tokio::test]
async fn fifo_requests_carry_group_and_deduplication_ids() {
    let db = db_with_catalog("fifo").await;
    let s = process(&db.ctx_with(true), &update("d1", "v1"))
        .await
        .unwrap();
    let run_id = &s.evaluated.queued_run_ids[0];
    let r = request_of(&db, run_id).await;
    assert_eq!(r["messageGroupId"], "m.single");
    assert_eq!(r["messageDeduplicationId"], json!(run_id));
    assert_eq!(
        db.string("SELECT message_group_id FROM outbox").await,
        "m.single"
    );
}

#[tokio::test]
async fn disabled_metric_gets_no_run() {
    let db = db_with_catalog("disabled").await;
    let mut cat = orchestrator_tests::fixtures::base_catalog();
    cat["metrics"][0]["enabled"] = json!(false);
    orchestrator_tests::fixtures::apply(&db, &cat).await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    assert_eq!(s.dependent_metrics, 2);
    assert!(runs_of(&db, "m.single").await.is_empty());
}

#[tokio::test]
async fn every_queued_run_of_a_metric_uses_a_distinct_update_set() {
    let db = db_with_catalog("distinct_sets").await;
    let ctx = db.ctx();
    for v in 0..5 {
        process(&ctx, &update("d1", &format!("v{v}")))
            .await
            .unwrap();
        process(&ctx, &update("d2", &format!("v{v}")))
            .await
            .unwrap();
    }
    orchestrator_tests::invariants::assert_invariants(&db).await;
    // m.pair ran for each d1 and d2 update after the first pair arrived.
    assert_eq!(
        runs_of(&db, "m.pair")
            .await
            .iter()
            .filter(|r| r.1 == "queued")
            .count(),
        9
    );
}

#[tokio::test]
async fn dependent_metrics_are_found_with_indexes_not_a_scan() {
    // The statement the claim runs, planned as production plans it (all
    // plans allowed) on a catalog large enough that a scan would cost more:
    // 5,000 metrics over 100 datasets, statistics fresh.
    let db = orchestrator_tests::TestDb::new("index_plan").await;
    let shape = orchestrator_tests::synth::Shape {
        datasets: 100,
        series_per_dataset: 3,
        metrics: 5_000,
        seed: 7,
    };
    orchestrator_tests::fixtures::apply(&db, &orchestrator_tests::synth::catalog(shape)).await;
    db.exec("ANALYZE").await;
    let dataset = db
        .string("SELECT dataset_id FROM metric_required_datasets ORDER BY dataset_id LIMIT 1")
        .await;
    let mut client = db.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let plan = orchestrator_core::store::catalog::explain_claim_dependent_metrics(
        &tx,
        &dataset.as_str().into(),
    )
    .await
    .unwrap();
    let text = plan.join("\n");
    assert!(
        text.contains("metric_required_datasets") && text.contains("Index"),
        "the plan reads the dependency table through an index:\n{text}"
    );
    assert!(
        !text.contains("Seq Scan"),
        "the dependency lookup must be index-driven:\n{text}"
    );
}

#[tokio::test]
async fn the_evaluations_inputs_are_planned_once_per_connection_not_per_update() {
    // The read of a metric's inputs (`store::backlog::inputs`) with one or a
    // few metrics. PostgreSQL's default plans a prepared statement afresh
    // for its first five calls, and then at every call while the custom
    // plan looks cheaper than the generic one, as it did with one metric in
    // `bench-messaging` (d): 0.29 ms of planning for 0.03 ms of execution.
    // One connection, so that every call uses the same prepared statement.
    let db = db_with_catalog("generic_inputs").await;
    let pool = orchestrator_core::store::pool::build_pool(&db.url, 1).unwrap();
    let ctx = orchestrator_core::app::Context {
        pool: pool.clone(),
        ..db.ctx()
    };
    for v in 0..12 {
        process(&ctx, &update("d3", &format!("v{v}")))
            .await
            .unwrap();
    }
    let row = pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements
              WHERE statement LIKE '%FROM metric_update_backlog WHERE metric_id = ANY($1)%'
                AND statement LIKE 'WITH b AS MATERIALIZED%'",
            &[],
        )
        .await
        .unwrap();
    let (generic, custom): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(
        (generic, custom),
        (12, 0),
        "12 updates: 12 executions of the generic plan, no custom plan"
    );
    // The mode is the statement's alone: the transaction's next statements
    // plan as the server is configured.
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let before: String = tx
        .query_one("SHOW plan_cache_mode", &[])
        .await
        .unwrap()
        .get(0);
    orchestrator_core::store::backlog::inputs(&tx, &["m3".into()], None)
        .await
        .unwrap();
    let after: String = tx
        .query_one("SHOW plan_cache_mode", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_requests_inputs_are_read_by_key_not_by_hashing_every_update() {
    // The relay reads the inputs of the runs it publishes
    // (`store::runs::used_updates`). With a few thousand runs and updates
    // stored, a plain join hashed every update for eight runs (0.8 ms a call
    // in `bench-messaging` (d)); each input is a lookup by key.
    let db = db_with_catalog("used_by_key").await;
    db.exec(
        "INSERT INTO dataset_updates (id, dataset_id, version_manifest_path, projections_path, event_key)
         SELECT 'u' || g, 'd1', 'd1/' || g || '/manifest.json', 'd1/' || g || '/p/', 'k' || g
           FROM generate_series(1, 3000) g;
         INSERT INTO metric_runs (id, metric_id, metric_code, status, requested_at,
                                  input_update_id, second_input_update_id)
         SELECT 'r' || g, 'm1', 'm.single', 'succeeded', now(), 'u' || g, 'u' || (g + 1)
           FROM generate_series(1, 2999) g;
         ANALYZE",
    )
    .await;
    let runs: Vec<orchestrator_core::domain::ids::RunId> =
        (0..8).map(|i| format!("r{i}").as_str().into()).collect();
    let mut client = db.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let plan = orchestrator_core::store::runs::explain_used_updates(&tx, &runs)
        .await
        .unwrap()
        .join("\n");
    assert!(
        plan.contains("dataset_updates_pkey") && !plan.contains("Seq Scan on dataset_updates"),
        "each input's update is found by its key:\n{plan}"
    );
}

/// A context whose connection is one pool of one through a round-trip
/// counter, with the statements prepared and `d1`'s dependents learnt (by
/// processing `d1 v1`).
async fn counted_ctx(
    db: &orchestrator_tests::TestDb,
) -> (
    orchestrator_core::app::Context,
    orchestrator_tests::turns::TurnCounter,
) {
    let counter = orchestrator_tests::turns::TurnCounter::start(
        &orchestrator_tests::proxy::host_port(&db.url),
    )
    .await;
    let url = orchestrator_tests::proxy::via(&db.url, counter.port);
    let pool = orchestrator_core::store::pool::build_pool(&url, 1).unwrap();
    let ctx = orchestrator_core::app::Context { pool, ..db.ctx() };
    // The connection opens and prepares its statements on first use.
    process(&ctx, &update("d1", "v1")).await.unwrap();
    (ctx, counter)
}

/// Processes `u` and returns its summary and the round trips from its first
/// statement to the commit's answer.
async fn round_trips_to_commit(
    ctx: &orchestrator_core::app::Context,
    counter: &orchestrator_tests::turns::TurnCounter,
    u: &ProjectionUpdate,
) -> (
    orchestrator_core::app::projection_update::UpdateSummary,
    usize,
) {
    counter.reset();
    let at_commit = std::sync::atomic::AtomicUsize::new(0);
    let summary = orchestrator_core::app::projection_update::process_with_then(
        ctx,
        u,
        &Default::default(),
        |_| at_commit.store(counter.turns(), std::sync::atomic::Ordering::SeqCst),
    )
    .await
    .unwrap();
    (summary, at_commit.load(std::sync::atomic::Ordering::SeqCst))
}

#[tokio::test]
async fn an_update_is_committed_in_four_round_trips_once_its_dataset_was_seen() {
    // BEGIN; the event key, the update row, the claim of its dependent
    // metrics and, behind it, the reads of the metrics the dataset's last
    // claim found, pipelined; the evaluation's writes, with the look for
    // backlog rows committed meanwhile behind them; COMMIT. Each round trip
    // more is one more wait for the database in every update's own part of
    // the latency, and one more wake-up of a backend.
    let db = db_with_catalog("four_round_trips").await;
    let (ctx, counter) = counted_ctx(&db).await;
    let (summary, turns) = round_trips_to_commit(&ctx, &counter, &update("d1", "v2")).await;
    // d1 feeds m.single (a new run, requested), m.pair and m.triple (their
    // pending runs take the update): every part of the evaluation wrote.
    assert_eq!(
        (
            summary.dependent_metrics,
            summary.evaluated.runs_created,
            summary.evaluated.runs_queued
        ),
        (3, 1, 1)
    );
    assert_eq!(
        turns, 4,
        "round trips from the first statement to the commit's answer"
    );
    // A process that has not seen the dataset reads after its claim: one
    // round trip more.
    let unseen = orchestrator_core::app::Context {
        dependents: Default::default(),
        ..ctx.clone()
    };
    let (summary, turns) = round_trips_to_commit(&unseen, &counter, &update("d1", "v3")).await;
    assert_eq!(
        (summary.dependent_metrics, summary.evaluated.runs_queued),
        (3, 1)
    );
    assert_eq!(turns, 5, "without a guess: the reads after the claim");
}

#[tokio::test]
async fn a_metric_added_since_the_datasets_last_claim_is_evaluated_after_one_more_read() {
    // The guess of d1's dependents (m.single, m.pair, m.triple) misses a
    // metric added since: the reads made for the guess do not cover it, so
    // the evaluation reads again, and the new metric gets its run.
    let db = db_with_catalog("guess_misses").await;
    let (ctx, counter) = counted_ctx(&db).await;
    let mut cat = orchestrator_tests::fixtures::base_catalog();
    cat["metrics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "m5", "code": "m.new", "expression_type": "composite",
            "expression_json": {"op": "sum", "operands": [{"seriesCode": "S2"}, {"seriesCode": "S1"}]}}));
    orchestrator_tests::fixtures::apply(&db, &cat).await;
    let (summary, turns) = round_trips_to_commit(&ctx, &counter, &update("d1", "v2")).await;
    assert_eq!(summary.dependent_metrics, 4);
    assert_eq!(
        runs_of(&db, "m.new").await.len(),
        1,
        "the new metric is evaluated"
    );
    assert_eq!(runs_of(&db, "m.single").await.len(), 2);
    assert_eq!(turns, 5, "one read more than with a guess that holds");
    // Learnt: the next update of d1 reads in the claim's round trip again.
    let (_, turns) = round_trips_to_commit(&ctx, &counter, &update("d1", "v3")).await;
    assert_eq!(turns, 4);
    assert_eq!(runs_of(&db, "m.new").await.len(), 2);
}

#[tokio::test]
async fn a_metric_disabled_since_the_datasets_last_claim_is_read_and_left_aside() {
    // The guess names m.single, disabled since: it is read with the others
    // and gets no run; the rest are evaluated from the same reads.
    let db = db_with_catalog("guess_too_wide").await;
    let (ctx, counter) = counted_ctx(&db).await;
    let mut cat = orchestrator_tests::fixtures::base_catalog();
    cat["metrics"][0]["enabled"] = json!(false);
    orchestrator_tests::fixtures::apply(&db, &cat).await;
    let (summary, turns) = round_trips_to_commit(&ctx, &counter, &update("d1", "v2")).await;
    assert_eq!(summary.dependent_metrics, 2);
    assert_eq!(
        runs_of(&db, "m.single").await.len(),
        1,
        "no run after it was disabled"
    );
    // m.pair and m.triple each still wait, on one pending run that took v2.
    for code in ["m.pair", "m.triple"] {
        let runs = runs_of(&db, code).await;
        assert_eq!(runs.len(), 1, "{code}");
        assert_eq!(runs[0].1, "pending_dependencies", "{code}");
    }
    assert_eq!(summary.evaluated.runs_pending, 2);
    assert_eq!(
        turns, 4,
        "the wider guess still covers what the claim locked"
    );
}
