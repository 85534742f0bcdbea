//! A fresh, migrated database per test (and per `loadgen` run), dropped at the end.

use std::sync::Arc;

use deadpool_postgres::Pool;
use orchestrator_core::app::Context;
use orchestrator_core::domain::run_request::RequestSettings;
use orchestrator_core::store::{migrate, pool};

/// The server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_string())
}

pub struct TestDb {
    pub pool: Pool,
    pub name: String,
    /// URL of this test's database (for child processes).
    pub url: String,
    admin: Arc<pool::Target>,
    /// Left in place when dropped ([`TestDb::keep`]).
    kept: bool,
}

async fn admin_client(target: &pool::Target) -> anyhow::Result<tokio_postgres::Client> {
    let cfg = &target.pg;
    let tls = orchestrator_core::store::tls::connector(&target.info)?;
    let (client, conn) = cfg.connect(tls).await.map_err(|e| {
        anyhow::anyhow!(
            "PostgreSQL is not reachable at {} ({e}). Start it with `localstack/postgres-up.sh` \
             or point TEST_DATABASE_URL (DATABASE_URL for loadgen) at a server where the user may create databases.",
            target.describe()
        )
    })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn parse_url(url: &str) -> anyhow::Result<pool::Target> {
    pool::Target::parse(url)
        .map_err(|e| anyhow::anyhow!("the database URL is not a PostgreSQL URL: {e}"))
}

impl TestDb {
    /// Creates and migrates a database named after the test.
    pub async fn new(label: &str) -> TestDb {
        Self::new_on(&admin_url(), label).await
    }

    /// [`TestDb::new`] on the server at `admin_url`.
    pub async fn new_on(admin_url: &str, label: &str) -> TestDb {
        orchestrator_core::ground::telemetry::init_for_tests();
        Self::create(admin_url, label)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Creates empty database `it_<label>_<random>` on the server at
    /// `admin_url`; dropped with the value.
    pub async fn create_empty(admin_url: &str, label: &str) -> anyhow::Result<TestDb> {
        let admin = parse_url(admin_url)?;
        let client = admin_client(&admin).await?;
        let clean: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        let name = format!(
            "it_{clean}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| anyhow::anyhow!("cannot create database {name}: {e}"))?;
        // From here on, dropping the value drops the database.
        Self::on(admin, admin_url, &name, false)
    }

    /// The value for database `name` on the server `admin` / `admin_url`.
    fn on(admin: pool::Target, admin_url: &str, name: &str, kept: bool) -> anyhow::Result<TestDb> {
        Ok(TestDb {
            pool: pool::build_pool(&pool::url_with_dbname(admin_url, name), 16)?,
            name: name.to_string(),
            url: pool::url_with_dbname(admin_url, name),
            admin: Arc::new(admin),
            kept,
        })
    }

    /// Creates and migrates database `it_<label>_<random>` on the server at
    /// `admin_url`; dropped with the value.
    pub async fn create(admin_url: &str, label: &str) -> anyhow::Result<TestDb> {
        let db = Self::create_empty(admin_url, label).await?;
        migrate::migrate(&db.pool)
            .await
            .map_err(|e| anyhow::anyhow!("migrations do not apply to a fresh database: {e}"))?;
        Ok(db)
    }

    /// A database that exists already (e.g. one kept by `loadgen bench-api
    /// --keep`), migrated; left in place when dropped.
    pub async fn existing(admin_url: &str, name: &str) -> anyhow::Result<TestDb> {
        let db = Self::on(parse_url(admin_url)?, admin_url, name, true)?;
        migrate::migrate(&db.pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate {name}: {e}"))?;
        Ok(db)
    }

    /// A database with no schema at all (to build another system's schema in).
    pub async fn empty(label: &str) -> TestDb {
        orchestrator_core::ground::telemetry::init_for_tests();
        Self::create_empty(&admin_url(), label)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A use-case context with standard (non-FIFO) settings.
    pub fn ctx(&self) -> Context {
        self.ctx_with(false)
    }

    pub fn ctx_with(&self, fifo: bool) -> Context {
        Context::new(
            self.pool.clone(),
            RequestSettings {
                output_bucket: "out-bucket".into(),
                output_prefix: "metrics/".into(),
                output_path_style: Default::default(),
                fifo,
            },
        )
    }

    pub async fn client(&self) -> deadpool_postgres::Object {
        self.pool
            .get()
            .await
            .expect("connection to the test database")
    }

    pub async fn exec(&self, sql: &str) {
        self.client()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// [`TestDb::count`], `None` while the server is unreachable.
    pub async fn try_count(&self, sql: &str) -> Option<i64> {
        let client = self.pool.get().await.ok()?;
        client.query_one(sql, &[]).await.ok().map(|r| r.get(0))
    }

    pub async fn strings(&self, sql: &str) -> Vec<String> {
        let rows = self
            .client()
            .await
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// The one text value `sql` returns; `None` for no row or while the
    /// server is unreachable.
    pub async fn try_string(&self, sql: &str) -> Option<String> {
        let client = self.pool.get().await.ok()?;
        client.query_opt(sql, &[]).await.ok()?.map(|r| r.get(0))
    }

    pub async fn string(&self, sql: &str) -> String {
        let mut v = self.strings(sql).await;
        assert_eq!(v.len(), 1, "{sql} returned {v:?}");
        v.remove(0)
    }
}

impl TestDb {
    /// Leaves the database in place when the value is dropped; returns its name.
    pub fn keep(mut self) -> String {
        self.kept = true;
        self.name.clone()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        if self.kept {
            return;
        }
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime we may block on: use a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let tls = orchestrator_core::store::tls::connector(&admin.info).ok()?;
                let (client, conn) = admin.pg.connect(tls).await.ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}
