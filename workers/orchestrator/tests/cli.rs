//! The operator CLI as a user runs it: real binary, real PostgreSQL.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use orchestrator_core::app::projection_update::process;
use orchestrator_tests::fixtures::{base_catalog, db_with_catalog, runs_of, update};
use orchestrator_tests::process::Process;
use orchestrator_tests::{http, TestDb};

fn orchestrator(db_url: Option<&str>, args: &[&str]) -> Output {
    orchestrator_with(db_url, &[], args)
}

fn orchestrator_with(db_url: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied());
    if let Some(url) = db_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().expect("orchestrator runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write_temp(name: &str, content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("orch-cli-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn uuid_like() -> String {
    format!("{}-{:?}", std::process::id(), std::time::SystemTime::now())
        .replace([' ', ':', '{', '}', ','], "")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let db = TestDb::new("cli_migrate").await;
    // TestDb already migrated: a second run applies nothing and succeeds.
    let o = orchestrator(Some(&db.url), &["migrate"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("schema is up to date"), "{out}");
}

#[tokio::test]
async fn catalog_validate_reports_problems_with_paths_and_fails() {
    let mut cat = base_catalog();
    cat["metrics"][1]["expression_json"]["left"] =
        serde_json::json!({"op": "sma", "series": {"seriesCode": "S1"}, "window": 0});
    let bad = write_temp("bad.json", &cat.to_string());
    let o = orchestrator(None, &["catalog", "validate", bad.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("metrics[1].expression_json.left.window: must be an integer >= 1"),
        "{err}"
    );
    let good = write_temp(
        "good.yaml",
        &serde_json::to_string(&base_catalog()).unwrap(),
    );
    let o = orchestrator(None, &["catalog", "validate", good.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o)
        .0
        .contains("valid (3 datasets, 4 series, 4 metrics)"));
}

#[tokio::test]
async fn catalog_apply_applies_and_rejects_without_partial_writes() {
    let db = TestDb::new("cli_apply").await;
    let good = write_temp("c.json", &base_catalog().to_string());
    let o = orchestrator(Some(&db.url), &["catalog", "apply", good.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(db.count("SELECT count(*) FROM metrics").await, 4);
    let bad = write_temp(
        "bad.json",
        r#"{"metrics": [{"id": "x", "code": "x", "expression_type": "composite", "expression_json": {"op": "sum", "operands": [{"seriesCode": "NOPE"}]}}]}"#,
    );
    let o = orchestrator(Some(&db.url), &["catalog", "apply", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("references unknown series \"NOPE\""));
    assert_eq!(db.count("SELECT count(*) FROM metrics").await, 4);
    let missing = orchestrator(
        Some(&db.url),
        &["catalog", "apply", "/nonexistent/catalog.json"],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing)
        .1
        .contains("Failed to read /nonexistent/catalog.json"));
}

#[tokio::test]
async fn catalog_warns_about_what_the_reference_runner_cannot_compute_and_strict_refuses() {
    let db = TestDb::new("cli_catalog_strict").await;
    let mut cat = base_catalog();
    cat["metrics"][0]["expression_json"] =
        serde_json::json!({"op": "sum", "operands": [{"seriesCode": "S1"}]});
    cat["metrics"][1]["run_timeout_secs"] = serde_json::json!(900);
    let file = write_temp("one_operand.json", &cat.to_string());
    let path = file.to_str().unwrap();
    let warning = "warning: metrics[0].expression_json.operands: a composite with 1 operand(s)";
    for args in [
        vec!["catalog", "validate", path],
        vec!["catalog", "apply", path],
    ] {
        let o = orchestrator(Some(&db.url), &args);
        assert!(o.status.success(), "{args:?}: {:?}", text(&o));
        assert!(text(&o).1.contains(warning), "{args:?}: {:?}", text(&o));
    }
    assert_eq!(db.count("SELECT count(*) FROM metrics").await, 4);
    assert_eq!(
        db.count("SELECT count(*) FROM metrics WHERE code = 'm.pair' AND run_timeout_secs = 900")
            .await,
        1
    );
    let strict_db = TestDb::new("cli_catalog_strict2").await;
    for args in [
        vec!["catalog", "validate", "--strict", path],
        vec!["catalog", "apply", "--strict", path],
    ] {
        let o = orchestrator(Some(&strict_db.url), &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {:?}", text(&o));
        assert!(
            text(&o).1.contains("1 warning(s), errors with --strict"),
            "{:?}",
            text(&o)
        );
    }
    assert_eq!(strict_db.count("SELECT count(*) FROM metrics").await, 0);
}

#[tokio::test]
async fn runs_list_show_and_cancel() {
    let db = db_with_catalog("cli_runs").await;
    process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let o = orchestrator(Some(&db.url), &["runs", "list", "--json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let rows: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    let o = orchestrator(
        Some(&db.url),
        &["runs", "list", "--status", "queued", "--metric", "m.single"],
    );
    let (out, _) = text(&o);
    assert!(
        out.contains("m.single") && out.contains("1 run(s)"),
        "{out}"
    );
    // A pending run says what it waits for.
    let triple = runs_of(&db, "m.triple").await[0].0.clone();
    let o = orchestrator(Some(&db.url), &["runs", "show", &triple]);
    let (out, _) = text(&o);
    assert!(out.contains("waiting for: d2, d3"), "{out}");
    // Cancel, then cancelling again is a clear error.
    let o = orchestrator(Some(&db.url), &["runs", "cancel", &triple]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(runs_of(&db, "m.triple").await[0].1, "canceled");
    let o = orchestrator(Some(&db.url), &["runs", "cancel", &triple]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("is canceled; only"), "{:?}", text(&o));
    let o = orchestrator(Some(&db.url), &["runs", "show", "nope"]);
    assert!(text(&o).1.contains("no run with id nope"));
    let o = orchestrator(Some(&db.url), &["runs", "list", "--status", "done"]);
    assert_eq!(o.status.code(), Some(2), "clap rejects an unknown status");
}

#[tokio::test]
async fn missing_or_unreachable_database_is_a_clear_error() {
    let o = orchestrator(None, &["runs", "list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("DATABASE_URL"), "{:?}", text(&o));
    let o = orchestrator(Some("postgres://u:secret@127.0.0.1:1/x"), &["runs", "list"]);
    assert_eq!(o.status.code(), Some(1));
    let (_, err) = text(&o);
    assert!(
        err.contains("Failed to connect to postgres://u:***@127.0.0.1:1/x"),
        "{err}"
    );
    assert!(
        !err.contains("secret"),
        "the password must not be printed: {err}"
    );
}

#[tokio::test]
async fn runs_trigger_queues_a_run_from_fresh_updates_and_watch_waits_until_settled() {
    let db = db_with_catalog("cli_trigger").await;
    process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let env = [("OUTPUT_BUCKET", "out")];
    let o = orchestrator_with(
        Some(&db.url),
        &env,
        &["runs", "trigger", "--metric", "m.single", "--json"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let t: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    let run_id = t["run_id"].as_str().unwrap().to_string();
    assert_eq!(t["updates"][0][0], "d1");
    let runs = runs_of(&db, "m.single").await;
    assert_eq!(runs.len(), 2, "the automatic run and the triggered one");
    assert!(runs.contains(&(run_id.clone(), "queued".to_string())));
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM outbox WHERE run_id = '{run_id}'"
        ))
        .await,
        1,
        "the request is in the outbox"
    );
    // m.pair also needs d2, which has no update yet.
    let o = orchestrator_with(
        Some(&db.url),
        &env,
        &["runs", "trigger", "--metric", "m.pair"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("no update received for [\"d2\"]"),
        "{:?}",
        text(&o)
    );
    let o = orchestrator_with(
        Some(&db.url),
        &env,
        &["runs", "trigger", "--metric", "m.none"],
    );
    assert!(
        text(&o).1.contains("no metric with code m.none"),
        "{:?}",
        text(&o)
    );
    let o = orchestrator(Some(&db.url), &["runs", "trigger", "--metric", "m.single"]);
    assert!(text(&o).1.contains("OUTPUT_BUCKET"), "{:?}", text(&o));
    // Open runs: watch --until-settled gives up; once they end, it exits 0.
    let watch = [
        "runs",
        "watch",
        "--until-settled",
        "--timeout",
        "1",
        "--interval",
        "1",
    ];
    let o = orchestrator(Some(&db.url), &watch);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(text(&o).1.contains("still open"), "{:?}", text(&o));
    db.exec("UPDATE metric_runs SET status = 'canceled', finished_at = now() WHERE status <> 'succeeded'")
        .await;
    let o = orchestrator(Some(&db.url), &watch);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out} {err}");
    assert!(
        out.contains("runs by status: canceled 4") && out.contains("settled"),
        "{out}"
    );
}

#[test]
fn help_lists_only_operator_commands() {
    let o = orchestrator(None, &["--help"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let commands: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "migrate",
            "provision",
            "catalog",
            "replay",
            "runs",
            "backfill",
            "metrics",
            "dlq",
            "simulate-runner",
            "serve",
            "probe",
            "help"
        ],
        "{out}"
    );
}

/// Status code and body of a GET on the server at `port`, once it answers.
async fn http_get(port: u16, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(raw) = http::get(port, path).await {
            let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok());
            let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
            return (status.unwrap_or(0), body.unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "nothing answered on port {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn serve_checks_its_config_logs_json_serves_metrics_and_stops_on_sigterm() {
    let db = TestDb::new("cli_serve").await;
    // Config is checked at start, naming the variable.
    for (var, value) in [
        ("API_ADDR", "nowhere"),
        ("API_TOKEN", "short"),
        ("API_AUTH", "everything"),
        // `all` without API_TOKEN would refuse every read.
        ("API_AUTH", "all"),
        ("API_MAX_IN_FLIGHT", "0"),
        ("API_REQUEST_TIMEOUT_SECS", "soon"),
        ("DATABASE_POOL_SIZE", "0"),
    ] {
        let o = orchestrator_with(Some(&db.url), &[(var, value)], &["serve"]);
        assert!(!o.status.success(), "{var}={value} was accepted");
        assert!(text(&o).1.contains(var), "{var}: {:?}", text(&o));
    }

    let env = [
        ("DATABASE_URL".to_string(), db.url.clone()),
        ("API_ADDR".to_string(), "127.0.0.1:0".to_string()),
    ];
    // Production's defaults: no RUST_LOG, no LOG_FORMAT.
    let mut serve = Process::spawn_with_default_log_level("orchestrator", &env, &["serve"]);
    let port = serve.bound_port("operator API and console at").await;
    let health = http_get(port, "/health").await;
    assert_eq!(health.0, 200, "{health:?}");
    assert!(health.1.contains("\"status\":\"ok\""), "{health:?}");
    let ready = http_get(port, "/ready").await;
    assert_eq!(ready.0, 200, "{ready:?}");
    http_get(port, "/api/v1/metrics").await;
    let metrics = http_get(port, "/metrics").await;
    assert_eq!(metrics.0, 200, "{metrics:?}");
    assert!(
        metrics.1.contains(
            r#"orchestrator_api_requests_total{route="/api/v1/metrics",method="GET",status="200"} 1"#
        ),
        "{metrics:?}"
    );

    let status = serve.terminate(Duration::from_secs(15));
    let logs = std::fs::read_to_string(&serve.log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: {status:?}\n{logs}"
    );
    // JSON logs by default for this long-running command: every line parses.
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("operator API and console at"))),
        "{logs}"
    );
}
