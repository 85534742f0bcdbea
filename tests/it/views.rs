//! The operator views of migrations/V2 (README "Querying run status").

use orchestrator_core::app::projection_update::process;
use orchestrator_tests::fixtures::{db_with_catalog, update};

#[tokio::test]
async fn run_status_has_one_row_per_run_with_its_metric_status_attempt_and_timing() {
    let db = db_with_catalog("views_run_status").await;
    process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    process(&db.ctx(), &update("d2", "v1")).await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM run_status").await,
        db.count("SELECT count(*) FROM metric_runs").await
    );
    // m.pair waited for d2, then was requested.
    let row = db
        .client()
        .await
        .query_one(
            "SELECT status, attempt, is_open, waited_for_dependencies > interval '0',
                    queued_for IS NULL, age >= waited_for_dependencies
               FROM run_status WHERE metric_code = 'm.pair'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "queued");
    assert_eq!(row.get::<_, i32>(1), 1);
    assert!(row.get::<_, bool>(2), "queued is open");
    assert!(row.get::<_, bool>(3), "it waited for d2");
    assert!(row.get::<_, bool>(4), "not started yet");
    assert!(row.get::<_, bool>(5));
    assert_eq!(
        db.count("SELECT count(*) FROM run_status_counts WHERE status = 'pending_dependencies'")
            .await,
        1,
        "m.triple still waits for d3"
    );
}

#[tokio::test]
async fn pending_run_datasets_lists_each_awaited_dataset_with_the_age_of_received_updates() {
    let db = db_with_catalog("views_pending").await;
    process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    // m.pair waits for d2 (has d1); m.triple for d2 and d3 (has d1).
    let rows = db
        .strings(
            "SELECT metric_code || ':' || dataset_id || ':' || received || ':' ||
                    COALESCE((received_update_age >= interval '0')::text, '-') || ':' ||
                    COALESCE(received_update_fresh::text, '-') || ':' ||
                    COALESCE(received_manifest_path, '-')
               FROM pending_run_datasets ORDER BY metric_code, dataset_id",
        )
        .await;
    assert_eq!(
        rows,
        [
            "m.pair:d1:true:true:true:d1/v1/manifest.json",
            "m.pair:d2:false:-:-:-",
            "m.triple:d1:true:true:true:d1/v1/manifest.json",
            "m.triple:d2:false:-:-:-",
            "m.triple:d3:false:-:-:-",
        ]
    );
    // Once m.pair is requested it is no longer pending and leaves the view;
    // d2 opened a pending run of m.nodays (which also needs d3).
    process(&db.ctx(), &update("d2", "v1")).await.unwrap();
    assert_eq!(
        db.strings("SELECT DISTINCT metric_code FROM pending_run_datasets ORDER BY 1")
            .await,
        ["m.nodays", "m.triple"]
    );
}
