//! The web console in a real headless Chromium (Debian's `chromium`, driven
//! through `chromedriver` over WebDriver): from the metrics overview to a
//! pending metric, the dataset it waits for, its run and its lineage, and a
//! backfill's progress bar and points.
//! Screenshots go to `CONSOLE_SCREENSHOTS` (default
//! `target/console-screenshots`), which CI prints.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use orchestrator_core::app::projection_update::process;
use orchestrator_tests::api::ApiServer;
use orchestrator_tests::fixtures::{db_with_catalog, update};
use serde_json::json;

fn find(var: &str, candidates: &[&str]) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{} is not installed: `apt-get install chromium chromium-driver` (Debian's packages; \
                 .ci/run installs them), or set {var} to its path",
                candidates[0]
            )
        })
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The port chromedriver logs once it listens ("… started successfully on
/// port N.").
async fn driver_port(log: &std::path::Path) -> u16 {
    orchestrator_tests::eventually(
        Duration::from_secs(20),
        "chromedriver to say which port it listens on",
        || async {
            let text = std::fs::read_to_string(log).ok()?;
            let rest = text.split("started successfully on port ").nth(1)?;
            rest.lines()
                .next()?
                .trim()
                .trim_end_matches('.')
                .parse()
                .ok()
        },
    )
    .await
}

fn screenshots_dir() -> PathBuf {
    let dir = std::env::var("CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
        });
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

async fn browser(
    driver_port: u16,
    profile: &std::path::Path,
    chromium: &std::path::Path,
) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            // The flags this machine needs (no sandbox as root, no background
            // connections on a closed network), and a fresh profile.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                     format!("--user-data-dir={}", profile.display())]
        },
        // The page's console messages, where Chromium reports every
        // Content-Security-Policy violation.
        "goog:loggingPrefs": {"browser": "ALL"}
    });
    let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().unwrap().clone();
    let url = format!("http://127.0.0.1:{driver_port}");
    orchestrator_tests::eventually(
        Duration::from_secs(30),
        "chromedriver to start a browser",
        || {
            let caps: serde_json::Map<String, serde_json::Value> = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::rustls()
                    .ok()?
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        },
    )
    .await
}

/// Waits until the element's text contains `needle`; returns the text.
async fn text_of(c: &Client, css: &str, needle: &str) -> String {
    orchestrator_tests::eventually(
        Duration::from_secs(20),
        &format!("{css} to show {needle:?}"),
        || async {
            let text = c.find(Locator::Css(css)).await.ok()?.text().await.ok()?;
            text.contains(needle).then_some(text)
        },
    )
    .await
}

/// The Content-Security-Policy violations the browser reported since the
/// last call (chromedriver's log endpoint; reading it empties it).
async fn csp_violations(c: &Client, driver_port: u16) -> Vec<String> {
    let session = c.session_id().await.unwrap().expect("a WebDriver session");
    let url = format!("http://127.0.0.1:{driver_port}/session/{session}/se/log");
    let logs: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&json!({"type": "browser"}))
        .send()
        .await
        .expect("chromedriver's log endpoint")
        .json()
        .await
        .expect("browser logs as JSON");
    logs["value"]
        .as_array()
        .expect("a list of log entries")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("Content Security Policy"))
        .map(str::to_string)
        .collect()
}

async fn shot(c: &Client, dir: &std::path::Path, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(name), png).expect("screenshot written");
}

#[tokio::test]
async fn the_console_leads_from_a_pending_metric_to_what_it_waits_for_its_run_and_lineage() {
    let chromium = find(
        "CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    let chromedriver = find("CHROMEDRIVER", &["/usr/bin/chromedriver"]);
    let db = db_with_catalog("console").await;
    process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let api = ApiServer::for_db(&db, None).await;

    // Port 0: chromedriver binds a free port and says which.
    let driver_log = std::env::temp_dir().join(format!(
        "chromedriver-{}.log",
        uuid::Uuid::new_v4().simple()
    ));
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg("--port=0")
            .stdout(std::fs::File::create(&driver_log).expect("chromedriver log"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display())),
    );
    let port = driver_port(&driver_log).await;
    let profile =
        std::env::temp_dir().join(format!("console-profile-{}", uuid::Uuid::new_v4().simple()));
    let c = browser(port, &profile, &chromium).await;
    let dir = screenshots_dir();

    // The overview: m.pair is pending, and says on what.
    c.goto(&format!("{}/#/metrics", api.base)).await.unwrap();
    text_of(&c, "[data-testid='status-m.pair']", "pending").await;
    text_of(&c, "[data-testid='why-m.pair']", "waiting for 1 of 2: d2").await;
    text_of(&c, "[data-testid='status-m.single']", "ok").await;
    shot(&c, &dir, "01-metrics.png").await;

    // Its page: the pending run, the input it lacks, the lineage.
    c.find(Locator::Css("[data-testid='metric-row-m.pair'] a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_of(
        &c,
        "[data-testid='pending-panel']",
        "waiting for 1 of 2: d2",
    )
    .await;
    text_of(&c, "[data-testid='metric-status']", "pending").await;
    c.find(Locator::Css("[data-testid='node-dataset:d2']"))
        .await
        .expect("d2 in the metric's lineage");
    shot(&c, &dir, "02-metric.png").await;

    // Its run: what it still waits for.
    c.find(Locator::Css("[data-testid='pending-run-link']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_of(&c, "[data-testid='waiting-for']", "d2").await;
    text_of(&c, "[data-testid='run-status']", "pending dependencies").await;
    shot(&c, &dir, "03-run.png").await;

    // The lineage view around the metric.
    c.goto(&format!("{}/#/lineage?around=m.pair", api.base))
        .await
        .unwrap();
    orchestrator_tests::eventually(Duration::from_secs(20), "the lineage graph", || async {
        c.find(Locator::Css("[data-testid='node-metric:m.pair']"))
            .await
            .ok()
    })
    .await;
    c.find(Locator::Css("[data-testid='node-dataset:d1']"))
        .await
        .expect("d1 → m.pair");
    shot(&c, &dir, "04-lineage.png").await;

    // The console refreshes itself: d2 arrives, m.pair runs, the page follows.
    c.goto(&format!("{}/#/metrics", api.base)).await.unwrap();
    process(&db.ctx(), &update("d2", "v1")).await.unwrap();
    text_of(&c, "[data-testid='status-m.pair']", "ok").await;
    shot(&c, &dir, "05-metrics-after-d2.png").await;

    // d3 is expected hourly and m.triple within two hours: both overdue.
    let mut catalog = orchestrator_tests::fixtures::base_catalog();
    catalog["datasets"][2]["expected_every"] = json!("1h");
    catalog["metrics"][2]["max_age"] = json!({"fail": "2h"});
    orchestrator_tests::fixtures::apply(&db, &catalog).await;
    db.exec(
        "UPDATE datasets SET expectation_set_at = now() - interval '3 hours';
         UPDATE metrics SET expectation_set_at = now() - interval '3 hours'",
    )
    .await;
    orchestrator_core::app::freshness::sweep(&db.ctx(), None)
        .await
        .unwrap();
    c.goto(&format!("{}/#/attention", api.base)).await.unwrap();
    text_of(&c, "[data-testid='attention-dataset-d3']", "late by 2 h").await;
    text_of(
        &c,
        "[data-testid='attention-metric-m.triple']",
        "blocked by d3",
    )
    .await;
    shot(&c, &dir, "06-attention.png").await;
    c.goto(&format!("{}/#/datasets", api.base)).await.unwrap();
    text_of(&c, "[data-testid='fresh-d3']", "late by 2 h").await;
    c.goto(&format!("{}/#/metrics", api.base)).await.unwrap();
    text_of(&c, "[data-testid='fresh-m.triple']", "fails since").await;

    // A held metric: the list says by whom, its page what happens next.
    orchestrator_core::app::policy::hold(&db.ctx(), "m.single", "alice")
        .await
        .unwrap();
    process(&db.ctx(), &update("d1", "v2")).await.unwrap();
    c.goto(&format!("{}/#/metrics", api.base)).await.unwrap();
    text_of(&c, "[data-testid='held-m.single']", "held by alice").await;
    c.goto(&format!("{}/#/metrics/m.single", api.base))
        .await
        .unwrap();
    text_of(&c, "[data-testid='held-panel']", "no run is requested").await;
    text_of(
        &c,
        "[data-testid='next-decision']",
        "by alice, 1 update waiting",
    )
    .await;
    text_of(&c, "[data-testid='trigger-policy']", "default: all inputs").await;
    shot(&c, &dir, "07-held.png").await;

    // A definition change: m.pair's output says it is stale and why; its
    // runs show the version each was requested with.
    let pair_run = orchestrator_tests::fixtures::runs_of(&db, "m.pair").await[0]
        .0
        .clone();
    let done =
        orchestrator_tests::fixtures::completed_event(pair_run.as_str(), true, Some("runner-1.4"));
    orchestrator_core::app::lifecycle::handle(&db.ctx(), &done, &json!({"runId": pair_run}))
        .await
        .unwrap();
    c.goto(&format!("{}/#/metrics/m.pair", api.base))
        .await
        .unwrap();
    // d1 v2 came after the update the run used (above).
    text_of(&c, "[data-testid='output-status']", "output stale").await;
    text_of(
        &c,
        "[data-testid='stale-reason-input_updated']",
        "d1: 1 newer since",
    )
    .await;
    catalog["metrics"][1]["expression_json"]["scale"] = json!(1000);
    orchestrator_tests::fixtures::apply(&db, &catalog).await;
    c.goto(&format!("{}/#/runs", api.base)).await.unwrap();
    c.goto(&format!("{}/#/metrics/m.pair", api.base))
        .await
        .unwrap();
    text_of(&c, "[data-testid='output-status']", "output stale").await;
    text_of(
        &c,
        "[data-testid='stale-reason-definition_changed']",
        "definition_changed (v1 → v2)",
    )
    .await;
    text_of(&c, &format!("[data-testid='run-version-{pair_run}']"), "v1").await;
    text_of(
        &c,
        &format!("[data-testid='run-version-{pair_run}']"),
        "runner-1.4",
    )
    .await;
    shot(&c, &dir, "08-definition-changed.png").await;

    // A backfill of m.pair over its inputs' three updates (the first before
    // d2 had one: unready), one point computed: the list and its page show
    // the progress bar and each point.
    let request = orchestrator_core::domain::backfill::request(
        &orchestrator_core::domain::backfill::Asked {
            metrics: vec!["m.pair"],
            from: "1h",
            to: "now",
            points: Some("updates"),
            reprocess: Some("all"),
            max_in_flight: Some(1),
            ..Default::default()
        },
        chrono::Utc::now(),
    )
    .unwrap();
    let made = orchestrator_core::app::backfill::create(
        &db.pool,
        &orchestrator_core::app::backfill::Create {
            request,
            key: None,
            by: Some("ana"),
            reason: None,
            dry_run: false,
        },
    )
    .await
    .unwrap();
    let bf = made.id.unwrap();
    let ctx = db.ctx();
    let tick = || orchestrator_core::app::backfill_run::advance(&ctx, 16);
    let first = tick().await.unwrap().requested[0].clone();
    let done = orchestrator_tests::fixtures::completed_event(first.as_str(), true, None);
    orchestrator_core::app::lifecycle::handle(&db.ctx(), &done, &json!({"runId": first.as_str()}))
        .await
        .unwrap();
    tick().await.unwrap();
    c.goto(&format!("{}/#/backfills", api.base)).await.unwrap();
    let bar = format!("[data-testid='backfill-progress-{bf}']");
    text_of(&c, &bar, "2 / 3 done · 1 running · 0 failed · 0 left").await;
    let value = c
        .find(Locator::Css(&format!("{bar} progress")))
        .await
        .expect("a progress bar")
        .attr("value")
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("2"));
    text_of(
        &c,
        &format!("[data-testid='backfill-status-{bf}']"),
        "running",
    )
    .await;
    shot(&c, &dir, "09-backfills.png").await;
    c.find(Locator::Css(&format!(
        "[data-testid='backfill-row-{bf}'] a"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    text_of(&c, "[data-testid='backfill-status']", "running").await;
    let statuses =
        orchestrator_tests::eventually(Duration::from_secs(20), "the points table", || async {
            let cells = c
                .find_all(Locator::Css("[data-testid^='point-status-m.pair']"))
                .await
                .ok()?;
            let mut out = Vec::new();
            for cell in cells {
                out.push(cell.text().await.ok()?);
            }
            (out.len() == 3).then_some(out)
        })
        .await;
    assert_eq!(statuses, ["skipped", "succeeded", "requested"]);
    shot(&c, &dir, "10-backfill.png").await;

    // Every page above rendered under the server's Content-Security-Policy
    // without one violation; a violation made on purpose shows that they
    // are seen.
    let violations = csp_violations(&c, port).await;
    assert!(violations.is_empty(), "CSP violations: {violations:#?}");
    c.execute(
        "document.body.insertAdjacentHTML('beforeend', '<div style=\"color: red\">x</div>')",
        vec![],
    )
    .await
    .unwrap();
    let seen = orchestrator_tests::eventually(
        Duration::from_secs(10),
        "the deliberate CSP violation in the browser's log",
        || async {
            let v = csp_violations(&c, port).await;
            (!v.is_empty()).then_some(v)
        },
    )
    .await;
    assert!(seen[0].contains("style-src"), "{seen:?}");
    eprintln!("console screenshots in {}", dir.display());
    c.close().await.ok();
    let _ = std::fs::remove_dir_all(profile);
}
