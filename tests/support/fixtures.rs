//! A small catalog and event builders shared by scenarios.

use orchestrator_core::app::catalog_apply;
use orchestrator_core::domain::events::ProjectionUpdate;
use serde_json::{json, Value};

use crate::TestDb;

/// d1 = {S1, S2}, d2 = {S3}, d3 = {S4}.
/// - `m.single` = sum(S1, S2): needs d1 only (runs at once).
/// - `m.pair` = ratio(S1, S3): needs d1 and d2.
/// - `m.triple` = avg(lag(S1), S3, S4): needs d1, d2, d3.
/// - `m.nodays` = subtract(S3, S4), required_days 0: needs d2 and d3.
pub fn base_catalog() -> Value {
    json!({
      "datasets": [
        {"id": "d1", "name": "Dataset one", "bucket": "bucket-1", "series": ["S1", "S2"]},
        {"id": "d2", "name": "Dataset two", "bucket": "bucket-2", "series": ["S3"]},
        {"id": "d3", "name": "Dataset three", "bucket": "bucket-3", "series": ["S4"]}
      ],
      "series": [{"code": "S1"}, {"code": "S2"}, {"code": "S3"}, {"code": "S4"}],
      "metrics": [
        {"id": "m1", "code": "m.single", "expression_type": "composite",
         "expression_json": {"op": "sum", "operands": [{"seriesCode": "S1"}, {"series_code": "S2"}]}},
        {"id": "m2", "code": "m.pair", "expression_type": "series_math",
         "expression_json": {"op": "ratio", "left": {"seriesCode": "S1"}, "right": {"seriesCode": "S3"}, "scale": 100}},
        {"id": "m3", "code": "m.triple", "expression_type": "composite",
         "expression_json": {"op": "avg", "operands": [
             {"op": "lag", "series": {"seriesCode": "S1"}, "window": 1},
             {"seriesCode": "S3"}, {"series_code": "S4"}]}},
        {"id": "m4", "code": "m.nodays", "expression_type": "series_math", "required_days": 0,
         "expression_json": {"op": "subtract", "left": {"seriesCode": "S3"}, "right": {"seriesCode": "S4"}}}
      ]
    })
}

pub async fn apply(db: &TestDb, doc: &Value) {
    catalog_apply::apply(&db.pool, doc)
        .await
        .expect("catalog applies");
}

/// A TestDb with the base catalog applied.
pub async fn db_with_catalog(label: &str) -> TestDb {
    let db = TestDb::new(label).await;
    apply(&db, &base_catalog()).await;
    db
}

pub fn update(dataset: &str, version: &str) -> ProjectionUpdate {
    ProjectionUpdate {
        dataset_id: dataset.into(),
        bucket: None,
        version_manifest_path: format!("{dataset}/{version}/manifest.json"),
        projections_path: format!("{dataset}/{version}/projections/"),
    }
}

/// A projection update message body, as the producer sends it.
pub fn update_body(dataset: &str, version: &str) -> String {
    json!({"event": "projection_update", "dataset_id": dataset, "bucket": "ingestor-datasets",
           "version_manifest_path": format!("{dataset}/{version}/manifest.json"),
           "projections_path": format!("{dataset}/{version}/projections/")})
    .to_string()
}

/// (run id, status) of a metric's runs, oldest first.
pub async fn runs_of(db: &TestDb, metric_code: &str) -> Vec<(String, String)> {
    let rows = db
        .client()
        .await
        .query(
            "SELECT id, status FROM metric_runs WHERE metric_code = $1 ORDER BY created_at, id",
            &[&metric_code],
        )
        .await
        .expect("runs query");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

pub async fn status_of(db: &TestDb, run_id: impl AsRef<str>) -> String {
    let run_id = run_id.as_ref();
    db.client()
        .await
        .query_one("SELECT status FROM metric_runs WHERE id = $1", &[&run_id])
        .await
        .expect("run exists")
        .get(0)
}

/// A run's request as the relay publishes it (assembled from its outbox
/// row's recipe, or the payload of a row written whole), parsed.
pub async fn request_of(db: &TestDb, run_id: impl AsRef<str>) -> Value {
    let payload = request_text(db, run_id.as_ref())
        .await
        .expect("run has an outbox row");
    serde_json::from_str(&payload).expect("outbox payload is JSON")
}

/// A run's request text as the relay publishes it, if it has an outbox row.
pub async fn request_text(db: &TestDb, run_id: &str) -> Option<String> {
    let mut client = db.pool.get().await.expect("a connection");
    let tx = client.transaction().await.expect("a transaction");
    let run = orchestrator_core::domain::ids::RunId::new(run_id);
    let payload = orchestrator_core::store::outbox::payload_of(&tx, &run)
        .await
        .expect("the run's request assembles");
    tx.commit().await.expect("commit");
    payload
}

/// A runner's `completed` for `run_id`: success (with the code version it
/// reports, if any) or failure with an error.
pub fn completed_event(
    run_id: &str,
    ok: bool,
    code_version: Option<&str>,
) -> orchestrator_core::domain::events::LifecycleEvent {
    use orchestrator_core::domain::events::{Completion, CompletionStatus, LifecycleEvent};
    LifecycleEvent::Completed(Completion {
        run_id: run_id.into(),
        status: if ok {
            CompletionStatus::Success
        } else {
            CompletionStatus::Failure
        },
        metric_code: None,
        version_ts: None,
        output_manifest: None,
        row_count: Some(1),
        error: (!ok).then(|| "boom".to_string()),
        code_version: code_version.map(str::to_string),
    })
}
