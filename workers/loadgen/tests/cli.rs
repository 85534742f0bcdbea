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
        "1,2",
        "--sample-ms",
        "20",
        "--pgbench-secs",
        "0",
    ]));
    let runs: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("scenario A: 60 updates in"))
        .collect();
    assert_eq!(runs.len(), 2, "one result line per concurrency in:\n{out}");
    assert!(runs.iter().all(|l| l.contains("updates/s")), "{out}");
    let profiles = out
        .lines()
        .filter(|l| l.trim_start().starts_with("wait profile: "))
        .count();
    assert_eq!(profiles, 2, "a wait profile per run in:\n{out}");
    for c in [1, 2] {
        assert!(
            out.contains(&format!(
                "scenario A at concurrency {c}, median of 1 run(s)"
            )),
            "{out}"
        );
    }
    // The sweep table: a header with the wait classes, then one row per
    // concurrency whose shares add up to about 100% when anything was sampled.
    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "scenario A sweep:")
        .skip(1)
        .take(3)
        .collect();
    assert!(
        table[0].contains("row locks") && table[0].contains("CPU"),
        "{out}"
    );
    for (row, c) in table[1..].iter().zip(["1", "2"]) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], c, "{out}");
        let shares: f64 = cells[4..11]
            .iter()
            .map(|v| v.trim_end_matches('%').parse::<f64>().unwrap())
            .sum();
        let samples: u64 = cells[11].parse().unwrap();
        assert!(samples == 0 || (95.0..=105.0).contains(&shares), "{row}");
    }
}

#[test]
fn bench_refuses_a_zero_concurrency() {
    let out = loadgen(&["bench", "--concurrency", "2,0", "--pgbench-secs", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--concurrency takes one or more numbers"),
        "{err}"
    );
}
