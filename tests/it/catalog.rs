//! The catalog and dependencies (docs/contracts.md, docs/semantics.md).

use orchestrator_core::app::catalog_apply::{apply, ApplyError};
use orchestrator_core::app::projection_update::process;
use orchestrator_tests::fixtures::{base_catalog, db_with_catalog, runs_of, update};
use orchestrator_tests::TestDb;
use serde_json::json;

#[tokio::test]
async fn catalog_apply_derives_metric_dependencies_from_both_key_styles() {
    let db = db_with_catalog("deps").await;
    let deps = db
        .strings("SELECT metric_id || ':' || series_code FROM metric_dependencies ORDER BY 1")
        .await;
    assert_eq!(
        deps,
        vec!["m1:S1", "m1:S2", "m2:S1", "m2:S3", "m3:S1", "m3:S3", "m3:S4", "m4:S3", "m4:S4"]
    );
    assert_eq!(db.count("SELECT count(*) FROM dataset_series").await, 4);
    let required = db
        .strings("SELECT metric_id || ':' || dataset_id FROM metric_required_datasets ORDER BY 1")
        .await;
    assert_eq!(
        required,
        vec!["m1:d1", "m2:d1", "m2:d2", "m3:d1", "m3:d2", "m3:d3", "m4:d2", "m4:d3"]
    );
    let expr = db
        .string("SELECT expression_json::text FROM metrics WHERE id = 'm1'")
        .await;
    assert!(
        expr.contains("series_code"),
        "the expression is stored as given: {expr}"
    );
}

#[tokio::test]
async fn invalid_catalog_reports_every_problem_and_applies_nothing() {
    let db = TestDb::new("catalog_invalid").await;
    let mut cat = base_catalog();
    cat["metrics"][1]["expression_json"]["left"] =
        json!({"op": "sma", "series": {"seriesCode": "S1"}, "window": 0});
    cat["metrics"][2]["expression_json"]["operands"][1] = json!({"seriesCode": "NOPE"});
    let err = apply(&db.pool, &cat).await.unwrap_err();
    let ApplyError::Invalid(problems) = &err else {
        panic!("expected problems, got {err}")
    };
    let text = problems.to_string();
    assert!(
        text.contains("metrics[1].expression_json.left.window: must be an integer >= 1"),
        "{text}"
    );
    assert!(
        text.contains("metrics[2].expression_json: references unknown series \"NOPE\""),
        "{text}"
    );
    for table in ["datasets", "series", "metrics", "metric_dependencies"] {
        assert_eq!(
            db.count(&format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table} must stay empty"
        );
    }
}

#[tokio::test]
async fn catalog_apply_is_an_upsert() {
    let db = db_with_catalog("upsert").await;
    let mut cat = base_catalog();
    cat["metrics"][0]["description"] = json!("now described");
    cat["datasets"][0]["bucket"] = json!("moved");
    apply(&db.pool, &cat).await.unwrap();
    // A file with only one metric leaves the others alone.
    let only = json!({"metrics": [cat["metrics"][3].clone()]});
    apply(&db.pool, &only).await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM metrics").await, 4);
    assert_eq!(
        db.string("SELECT description FROM metrics WHERE id = 'm1'")
            .await,
        "now described"
    );
    assert_eq!(
        db.string("SELECT bucket FROM datasets WHERE id = 'd1'")
            .await,
        "moved"
    );
    // A dataset entry without `series` keeps its series.
    apply(
        &db.pool,
        &json!({"datasets": [{"id": "d1", "bucket": "again"}]}),
    )
    .await
    .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM dataset_series WHERE dataset_id = 'd1'")
            .await,
        2
    );
}

#[tokio::test]
async fn metric_code_taken_by_another_metric_is_rejected() {
    let db = db_with_catalog("code_conflict").await;
    let doc = json!({"metrics": [{"id": "other", "code": "m.single", "expression_type": "composite",
                                  "expression_json": {"op": "sum", "operands": [{"seriesCode": "S1"}]}}]});
    let err = apply(&db.pool, &doc).await.unwrap_err().to_string();
    assert!(
        err.contains("metrics[0].code: code \"m.single\" already belongs to metric \"m1\""),
        "{err}"
    );
}

#[tokio::test]
async fn pending_run_is_canceled_when_the_metrics_dependencies_change() {
    let db = db_with_catalog("deps_change").await;
    process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let pair = runs_of(&db, "m.pair").await[0].0.clone();
    let triple = runs_of(&db, "m.triple").await[0].0.clone();
    let mut cat = base_catalog();
    cat["metrics"][1]["expression_json"]["right"] = json!({"seriesCode": "S4"});
    let report = apply(&db.pool, &cat).await.unwrap();
    assert_eq!(report.canceled_runs, vec![pair.clone()]);
    assert_eq!(runs_of(&db, "m.pair").await[0].1, "canceled");
    assert_eq!(
        runs_of(&db, "m.triple").await[0].1,
        "pending_dependencies",
        "{triple} is unaffected"
    );
    // The next update opens a fresh pending run with the new datasets.
    process(&db.ctx(), &update("d1", "v2")).await.unwrap();
    let runs = runs_of(&db, "m.pair").await;
    assert_eq!(runs.len(), 2);
    let datasets = db
        .strings(&format!(
            "SELECT dataset_id FROM metric_run_pending_datasets WHERE run_id = '{}' ORDER BY 1",
            runs[1].0
        ))
        .await;
    assert_eq!(datasets, vec!["d1", "d3"]);
}

#[tokio::test]
async fn pending_run_is_canceled_when_the_metric_is_disabled() {
    let db = db_with_catalog("disable").await;
    process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let mut cat = base_catalog();
    cat["metrics"][2]["enabled"] = json!(false);
    let report = apply(&db.pool, &cat).await.unwrap();
    assert_eq!(report.canceled_runs.len(), 1);
    assert_eq!(runs_of(&db, "m.triple").await[0].1, "canceled");
}

#[tokio::test]
async fn pending_run_is_canceled_when_a_dataset_gains_a_required_series() {
    let db = db_with_catalog("dataset_change").await;
    process(&db.ctx(), &update("d2", "v1")).await.unwrap();
    // S3 now also comes from d3: m.pair's required datasets become d1, d2, d3.
    let mut cat = base_catalog();
    cat["datasets"][2]["series"] = json!(["S4", "S3"]);
    let report = apply(&db.pool, &cat).await.unwrap();
    let pair = runs_of(&db, "m.pair").await;
    assert!(
        report.canceled_runs.iter().any(|r| *r == pair[0].0),
        "{report:?}"
    );
    assert_eq!(pair[0].1, "canceled");
}

/// An apply costs what changed: entries written as last applied are skipped
/// (not validated, not written), so one changed metric rewrites that metric
/// alone (docs/operations.md, "Applying a catalog").
#[tokio::test]
async fn an_apply_rewrites_only_the_entries_that_changed() {
    let db = TestDb::new("cat_changed").await;
    let first = apply(&db.pool, &base_catalog()).await.unwrap();
    assert_eq!(first.unchanged.metrics, 0);
    db.exec(
        "UPDATE metrics SET updated_at = '2000-01-01'; UPDATE series SET updated_at = '2000-01-01'",
    )
    .await;
    let mut doc = base_catalog();
    doc["metrics"][2]["description"] = json!("now described");
    let r = apply(&db.pool, &doc).await.unwrap();
    assert_eq!(
        (
            r.unchanged.datasets,
            r.unchanged.series,
            r.unchanged.metrics
        ),
        (3, 4, 3),
        "{r:?}"
    );
    assert_eq!((r.datasets, r.series, r.metrics), (3, 4, 4));
    assert_eq!(
        db.strings("SELECT id FROM metrics WHERE updated_at > '2000-01-01' ORDER BY 1")
            .await,
        ["m3"]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM series WHERE updated_at > '2000-01-01'")
            .await,
        0
    );
    // An invalid changed entry is still reported with its place in the file.
    doc["metrics"][3]["required_days"] = json!(-1);
    let Err(ApplyError::Invalid(p)) = apply(&db.pool, &doc).await else {
        panic!("an invalid entry applied");
    };
    assert!(p.to_string().contains("metrics[3].required_days"), "{p}");
}
