//! Least-privilege roles as `orchestrator migrate` grants them: a worker
//! role handles updates and lifecycle events and cannot change the schema;
//! the API role does its four actions and cannot write what they do not.

use orchestrator_core::api::ApiState;
use orchestrator_core::app::projection_update::process;
use orchestrator_core::app::Context;
use orchestrator_core::domain::run_request::RequestSettings;
use orchestrator_core::store::pool;
use orchestrator_core::store::roles::{self, RoleSpec, Roles};
use orchestrator_tests::api::ApiServer;
use orchestrator_tests::fixtures::{db_with_catalog, update};
use orchestrator_tests::process::Process;
use orchestrator_tests::TestDb;

const TOKEN: &str = "a-test-token-of-32-characters-xx";

/// Two fresh login roles granted on `db`, dropped (with their grants) at the
/// end: roles belong to the server, not to the test's database.
struct TestRoles {
    worker: String,
    api: String,
    password: String,
}

impl TestRoles {
    async fn grant(db: &TestDb) -> TestRoles {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let r = TestRoles {
            worker: format!("it_worker_{tag}"),
            api: format!("it_api_{tag}"),
            password: format!("pw-{tag}-'quote\\slash"),
        };
        let spec = |n: &str| RoleSpec {
            name: n.parse().unwrap(),
            password: Some(r.password.clone()),
        };
        let granted = roles::apply(
            &db.pool,
            &Roles {
                worker: Some(spec(&r.worker)),
                api: Some(spec(&r.api)),
            },
        )
        .await
        .expect("roles granted");
        assert!(granted.iter().all(|g| g.created && g.login), "{granted:?}");
        // Granting again (the next `migrate`) changes nothing and fails on nothing.
        roles::apply(
            &db.pool,
            &Roles {
                worker: Some(spec(&r.worker)),
                api: Some(spec(&r.api)),
            },
        )
        .await
        .expect("roles granted again");
        r
    }

    fn url(&self, db: &TestDb, role: &str) -> String {
        let scheme_end = db.url.find("://").unwrap() + 3;
        let host = &db.url[db.url.find('@').map_or(scheme_end, |i| i + 1)..];
        format!("postgres://{role}@{host}")
    }

    fn pool(&self, db: &TestDb, role: &str) -> orchestrator_core::store::Pool {
        pool::build_pool_with(
            &self.url(db, role),
            &pool::PoolOptions {
                password: Some(self.password.clone()),
                ..pool::PoolOptions::sized(4)
            },
        )
        .unwrap()
    }

    async fn drop_from(&self, db: &TestDb) {
        let c = db.pool.get().await.unwrap();
        for r in [&self.worker, &self.api] {
            c.batch_execute(&format!("DROP OWNED BY \"{r}\"; DROP ROLE \"{r}\""))
                .await
                .unwrap();
        }
    }
}

/// The SQLSTATE of a statement run as a role: `None` when it succeeded.
async fn refused(pool: &orchestrator_core::store::Pool, sql: &str) -> Option<String> {
    let c = pool.get().await.expect("the role logs in");
    match c.batch_execute(sql).await {
        Ok(()) => None,
        Err(e) => Some(
            e.code()
                .map_or_else(|| e.to_string(), |c| c.code().to_string()),
        ),
    }
}

const DENIED: Option<&str> = Some("42501");

#[tokio::test]
async fn the_worker_role_works_and_changes_no_schema_and_the_api_role_writes_only_what_its_actions_do(
) {
    let db = db_with_catalog("roles").await;
    let roles = TestRoles::grant(&db).await;
    let worker = roles.pool(&db, &roles.worker);
    let api = roles.pool(&db, &roles.api);
    let settings = RequestSettings {
        output_bucket: "out-bucket".into(),
        output_prefix: "metrics/".into(),
        output_path_style: Default::default(),
        fifo: false,
    };

    // The worker's role handles an update end to end (claim, evaluate,
    // queue runs, event log, outbox).
    let worker_ctx = Context::new(worker.clone(), settings.clone());
    let s = process(&worker_ctx, &update("d1", "v1"))
        .await
        .expect("processed as the worker role");
    assert_eq!(s.evaluated.queued_run_ids.len(), 1);
    process(&worker_ctx, &update("d2", "v1"))
        .await
        .expect("processed as the worker role");
    for ddl in [
        "CREATE TABLE intruder (i int)",
        "ALTER TABLE metric_runs ADD COLUMN intruder int",
        "DROP TABLE event_log",
        "TRUNCATE metric_runs",
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (999, 'x', 'x', 'x')",
    ] {
        let got = refused(&worker, ddl).await;
        assert!(
            got.as_deref() == Some("42501"),
            "the worker role ran {ddl:?}: {got:?}"
        );
    }

    // The API's role does its four actions through the API.
    let server = ApiServer::start(ApiState {
        pool: api.clone(),
        ctx: Some(Context::new(api.clone(), settings)),
        token: Some(orchestrator_core::api::auth::Token::new(TOKEN)),
        auth: Default::default(),
        metrics: None,
        actors: Default::default(),
    })
    .await;
    let (st, body) = server
        .post("/api/v1/metrics/m.single/trigger", Some(TOKEN))
        .await;
    assert_eq!(st, 200, "trigger as the API role: {body}");
    let run = body["runId"].as_str().expect("a run id").to_string();
    let (st, body) = server
        .post(&format!("/api/v1/runs/{run}/cancel"), Some(TOKEN))
        .await;
    assert_eq!(st, 200, "cancel as the API role: {body}");
    let (st, body) = server
        .post("/api/v1/metrics/m.pair/hold?by=alice", Some(TOKEN))
        .await;
    assert_eq!(st, 200, "hold as the API role: {body}");
    let (st, body) = server
        .post("/api/v1/metrics/m.pair/resume", Some(TOKEN))
        .await;
    assert_eq!(st, 200, "resume as the API role: {body}");
    let (st, body) = server.get("/api/v1/runs").await;
    assert_eq!(st, 200, "reads as the API role: {body}");

    // ... and nothing it has no business writing.
    for sql in [
        "INSERT INTO dataset_updates (id, dataset_id, version_manifest_path, projections_path, event_key) VALUES ('x', 'd1', 'x', 'y', 'k')",
        "UPDATE metric_dependencies SET series_code = series_code",
        "DELETE FROM datasets",
        "UPDATE dataset_freshness SET dataset_id = dataset_id",
        "CREATE TABLE intruder (i int)",
        "TRUNCATE metric_runs",
    ] {
        assert_eq!(refused(&api, sql).await.as_deref(), DENIED, "the API role ran {sql:?}");
    }
    assert_eq!(refused(&api, "SELECT count(*) FROM run_status").await, None);

    // `orchestrator migrate` grants them from its environment, and a worker
    // binary starts with the worker role's URL and password.
    let mut migrate = Process::spawn(
        "orchestrator",
        &[
            ("DATABASE_URL".into(), db.url.clone()),
            ("DATABASE_WORKER_ROLE".into(), roles.worker.clone()),
            ("DATABASE_WORKER_PASSWORD".into(), roles.password.clone()),
            ("DATABASE_API_ROLE".into(), roles.api.clone()),
        ],
        &["migrate"],
    );
    let status = migrate
        .wait_exit(std::time::Duration::from_secs(60))
        .expect("migrate exits");
    assert!(status.success(), "migrate with roles: {}", migrate.output());
    assert_eq!(
        refused(&worker, "SELECT 1 FROM metric_runs LIMIT 1").await,
        None
    );
    let mut bad = Process::spawn(
        "orchestrator",
        &[
            ("DATABASE_URL".into(), db.url.clone()),
            (
                "DATABASE_API_ROLE".into(),
                "Robert'); DROP TABLE metrics;--".into(),
            ),
        ],
        &["migrate"],
    );
    let status = bad
        .wait_exit(std::time::Duration::from_secs(60))
        .expect("migrate exits");
    assert!(!status.success());
    assert!(
        bad.output().contains("is not a role name"),
        "{}",
        bad.output()
    );

    drop(server);
    drop(worker);
    drop(api);
    roles.drop_from(&db).await;
}
