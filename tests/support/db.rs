//! A fresh, migrated database per test.

use std::sync::Arc;

use deadpool_postgres::Pool;
use orchestrator_core::app::Context;
use orchestrator_core::domain::run_request::RequestSettings;
use orchestrator_core::store::{migrate, pool};
use tokio_postgres::NoTls;

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
    admin: Arc<tokio_postgres::Config>,
}

async fn admin_client(cfg: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, conn) = cfg.connect(NoTls).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {} ({e}). Start it with `localstack/postgres-up.sh` \
             or point TEST_DATABASE_URL at a server where the user may create databases.",
            pool::redact_url(&admin_url())
        )
    });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl TestDb {
    /// Creates and migrates a database named after the test.
    pub async fn new(label: &str) -> TestDb {
        Self::new_on(&admin_url(), label).await
    }

    /// [`TestDb::new`] on the server at `admin_url`.
    pub async fn new_on(admin_url: &str, label: &str) -> TestDb {
        orchestrator_core::telemetry::init_for_tests();
        let admin: tokio_postgres::Config = admin_url
            .parse()
            .expect("TEST_DATABASE_URL must be a PostgreSQL URL");
        let client = admin_client(&admin).await;
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
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let mut cfg = admin.clone();
        cfg.dbname(&name);
        let pool = pool::pool_from_config(cfg, 16).expect("pool");
        migrate::migrate(&pool)
            .await
            .expect("migrations apply to a fresh database");
        let url = pool::url_with_dbname(admin_url, &name);
        TestDb {
            pool,
            name,
            url,
            admin: Arc::new(admin),
        }
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

    pub async fn string(&self, sql: &str) -> String {
        let mut v = self.strings(sql).await;
        assert_eq!(v.len(), 1, "{sql} returned {v:?}");
        v.remove(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime we may block on: use a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let (client, conn) = admin.connect(NoTls).await.ok()?;
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
