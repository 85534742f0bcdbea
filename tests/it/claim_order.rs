//! "Reads behind the claim": an update's reads of the metrics it guesses
//! it will lock are pipelined after the claim that locks them
//! (`app::evaluate::claim_then_read`). The server runs a pipeline in the
//! order it arrives, so the backend's last statement, as `pg_stat_activity`
//! shows it once the call returns, is one of the reads, never the claim.

use orchestrator_core::app::evaluate::claim_then_read;
use orchestrator_core::domain::ids::{DatasetId, MetricId};
use orchestrator_tests::fixtures::db_with_catalog;

#[tokio::test]
async fn the_reads_of_the_guessed_metrics_are_sent_after_their_claim() {
    let db = db_with_catalog("claim_order").await;
    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    let pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let guessed: Vec<MetricId> = ["m1", "m2", "m3"].map(MetricId::from).to_vec();
    // The second call is the one looked at: every statement is prepared by
    // then, as on a worker's connection, so none waits for a preparation.
    let d1 = DatasetId::from("d1");
    claim_then_read(&tx, &d1, Some(&guessed), None)
        .await
        .unwrap();
    let (claimed, read) = claim_then_read(&tx, &d1, Some(&guessed), None)
        .await
        .unwrap();
    assert!(read.is_some());
    let mut locked: Vec<String> = claimed.locked.iter().map(|m| m.id.to_string()).collect();
    locked.sort();
    assert_eq!(locked, ["m1", "m2", "m3"]);
    let last = db
        .string(&format!(
            "SELECT query FROM pg_stat_activity WHERE pid = {pid}"
        ))
        .await;
    assert!(
        !last.contains("SKIP LOCKED"),
        "the claim ran after the reads of what it locks:\n{last}"
    );
    tx.rollback().await.unwrap();
}
