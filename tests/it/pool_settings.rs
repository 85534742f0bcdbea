//! The server-side bounds a pool sets on its sessions: a statement the
//! process has stopped waiting for does not go on running in PostgreSQL,
//! and a transaction left open is ended.

use std::time::Duration;

use orchestrator_core::config::Env;
use orchestrator_core::store::pool::{self, PoolOptions};
use orchestrator_tests::TestDb;

#[tokio::test]
async fn statement_and_idle_in_transaction_timeouts_are_enforced_by_the_server() {
    let db = TestDb::new("pool_timeouts").await;
    let p = pool::build_pool_with(
        &db.url,
        &PoolOptions {
            statement_timeout: Some(Duration::from_millis(500)),
            idle_in_transaction_timeout: Some(Duration::from_secs(1)),
            ..PoolOptions::sized(2)
        },
    )
    .unwrap();
    let c = p.get().await.unwrap();
    let shown: String = c
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "500ms");
    let err = c
        .batch_execute("SELECT pg_sleep(3)")
        .await
        .expect_err("cancelled");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err}"
    );
    drop(c);

    let mut c = p.get().await.unwrap();
    let tx = c.transaction().await.unwrap();
    let pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // Left idle past the bound: the server ends the session.
    orchestrator_tests::eventually(
        Duration::from_secs(10),
        "the idle transaction to be ended",
        || async {
            let n = db
                .count(&format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
                ))
                .await;
            (n == 0).then_some(())
        },
    )
    .await;
    assert!(
        tx.batch_execute("SELECT 1").await.is_err(),
        "the idle transaction was not ended"
    );
}

#[tokio::test]
async fn the_api_refuses_a_statement_timeout_at_or_above_its_request_timeout() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        Env(move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    };
    for vars in [
        &[
            ("DATABASE_URL", "postgres://u@127.0.0.1:1/x"),
            ("DATABASE_STATEMENT_TIMEOUT_SECS", "15"),
        ][..],
        &[
            ("DATABASE_URL", "postgres://u@127.0.0.1:1/x"),
            ("API_REQUEST_TIMEOUT_SECS", "5"),
            ("DATABASE_STATEMENT_TIMEOUT_SECS", "8"),
        ][..],
        &[
            ("DATABASE_URL", "postgres://u@127.0.0.1:1/x"),
            ("DATABASE_STATEMENT_TIMEOUT_SECS", "0"),
        ][..],
    ] {
        let err = orchestrator_core::api::ServeDeps::from_env(&env(vars))
            .await
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("DATABASE_STATEMENT_TIMEOUT_SECS"),
            "{vars:?}: {err}"
        );
    }
}
