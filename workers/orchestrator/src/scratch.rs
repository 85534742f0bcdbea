//! Throwaway resources for benchmark and soak runs: uniquely named queues,
//! topic and bucket, and a fresh database with a synthetic catalog, dropped
//! at the end.

use anyhow::{Context, Result};
use orchestrator_core::app::catalog_apply;
use orchestrator_core::domain::synth::{self, Shape};
use orchestrator_core::messaging::provision::{provision, ProvisionSpec, Provisioned};
use orchestrator_core::store::{migrate, pool, Pool};
use orchestrator_core::workers::AwsClients;
use tokio_postgres::NoTls;

/// A unique suffix for names.
pub fn unique_id() -> String {
    orchestrator_core::app::new_id().replace('-', "")[20..].to_string()
}

/// Provisions a stack whose names start with `prefix`.
pub async fn stack(aws: &AwsClients, prefix: &str, bucket: &str) -> Result<Provisioned> {
    Ok(provision(
        &aws.sqs,
        &aws.sns,
        &aws.s3,
        &ProvisionSpec {
            prefix: prefix.to_string(),
            fifo: false,
            output_bucket: bucket.to_string(),
            max_receive_count: 10,
        },
    )
    .await?)
}

pub struct ScratchDb {
    pub pool: Pool,
    pub url: String,
    name: String,
    admin: tokio_postgres::Client,
}

impl ScratchDb {
    /// Creates database `name` on the server at `server_url`, migrates it
    /// and applies the synthetic catalog of `shape`.
    pub async fn create(server_url: &str, name: &str, shape: Shape) -> Result<ScratchDb> {
        let (admin, conn) = tokio_postgres::connect(server_url, NoTls)
            .await
            .with_context(|| format!("Failed to connect to {}", pool::redact_url(server_url)))?;
        tokio::spawn(conn);
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("Failed to create database {name}"))?;
        let url = pool::url_with_dbname(server_url, name);
        let pool = pool::build_pool(&url, 4)?;
        migrate::migrate(&pool).await?;
        catalog_apply::apply(&pool, &synth::catalog(shape)).await?;
        Ok(ScratchDb {
            pool,
            url,
            name: name.to_string(),
            admin,
        })
    }

    pub async fn drop_db(self) -> Result<()> {
        self.pool.close();
        self.admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await?;
        Ok(())
    }
}
