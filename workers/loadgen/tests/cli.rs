//! `loadgen` as a user runs it: the real binary, a real PostgreSQL.

use std::process::{Command, Output};

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("DATABASE_URL", orchestrator_tests::db::admin_url())
        .output()
        .expect("loadgen runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn generate_writes_a_valid_catalog_and_the_requested_updates() {
    let dir = std::env::temp_dir().join(format!("loadgen-{}", uuid::Uuid::new_v4().simple()));
    let out = stdout(&loadgen(&[
        "generate",
        "--datasets",
        "3",
        "--metrics",
        "20",
        "--updates",
        "7",
        "--out",
        dir.to_str().unwrap(),
    ]));
    assert!(out.contains("(7 updates)"), "{out}");
    let events = std::fs::read_to_string(dir.join("events.ndjson")).unwrap();
    assert_eq!(events.lines().count(), 7);
    let catalog: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("catalog.json")).unwrap()).unwrap();
    let parsed = orchestrator_core::domain::catalog::validate(&catalog, &Default::default())
        .expect("the generated catalog is valid");
    assert_eq!(parsed.metrics.len(), 20);
    assert_eq!(parsed.datasets.len(), 3);
}

#[test]
fn bench_processes_every_update_and_reports_throughput() {
    let out = stdout(&loadgen(&[
        "bench",
        "--scenario",
        "a",
        "--updates",
        "60",
        "--concurrency",
        "2",
        "--pgbench-secs",
        "0",
    ]));
    let line = out
        .lines()
        .find(|l| l.starts_with("scenario A: 60 updates in"))
        .unwrap_or_else(|| panic!("no result line in:\n{out}"));
    assert!(line.contains("updates/s"), "{line}");
    assert!(out.contains("scenario A median of 1 run(s)"), "{out}");
}
