//! `orchestrator catalog validate|apply FILE`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use orchestrator_core::app::catalog_apply::{self, ApplyError};
use orchestrator_core::domain::catalog::{parse_document, Format};
use orchestrator_core::domain::catalog_doc::CatalogDoc;
use orchestrator_core::domain::runner_compat;
use serde_json::Value;

use crate::db::DbArgs;

const MAX_CATALOG_BYTES: u64 = orchestrator_core::domain::catalog::MAX_CATALOG_BYTES as u64;

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Check a catalog file without a database (series must be defined in it).
    Validate {
        file: PathBuf,
        /// Treat warnings (expressions the reference runner cannot compute) as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Validate against the stored catalog and upsert it in one transaction.
    Apply {
        file: PathBuf,
        /// Treat warnings as errors: nothing is applied when there are any.
        #[arg(long)]
        strict: bool,
        /// Report what would change (freshness expectations included) and
        /// change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who applies it, recorded with each new definition version
        /// (default: the OS user).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// The OS user running the CLI, as the shell knows it.
fn os_user() -> Option<String> {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// Prints the warnings on standard error; with `strict`, they are errors.
fn warn(file: &std::path::Path, doc: &Value, strict: bool) -> Result<()> {
    let warnings = runner_compat::warnings(doc);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if strict && !warnings.is_empty() {
        bail!(
            "{}: {} warning(s), errors with --strict; nothing was applied",
            file.display(),
            warnings.len()
        );
    }
    Ok(())
}

/// The catalog's text and its name: a local file, or `s3://bucket/key` (a
/// one-off ECS task reads the catalog the deploy put in S3; docs/deploy.md).
async fn read_text(file: &PathBuf) -> Result<(String, String)> {
    let name = file.to_string_lossy().to_string();
    if let Some(rest) = name.strip_prefix("s3://") {
        let (bucket, key) = rest
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            .with_context(|| format!("{name}: an S3 location is s3://BUCKET/KEY"))?;
        let aws = orchestrator_core::messaging::AwsClients::from_env().await;
        let pointer = orchestrator_core::messaging::s3::Pointer {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        let policy = orchestrator_core::messaging::s3::PointerPolicy {
            buckets: vec![bucket.to_string()],
            expected_owner: None,
        };
        let text = orchestrator_core::messaging::s3::fetch(
            &aws.s3,
            &policy,
            &pointer,
            MAX_CATALOG_BYTES as usize,
        )
        .await
        .with_context(|| format!("Failed to read {name}"))?;
        return Ok((text, name));
    }
    let size = std::fs::metadata(file)
        .with_context(|| format!("Failed to read {}", file.display()))?
        .len();
    if size > MAX_CATALOG_BYTES {
        anyhow::bail!(
            "{}: {size} bytes exceeds the catalog size limit of {MAX_CATALOG_BYTES} bytes",
            file.display()
        );
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("Failed to read {}", file.display()))?;
    Ok((text, name))
}

/// The catalog as a value (`catalog validate`).
async fn read(file: &PathBuf) -> Result<Value> {
    let (text, name) = read_text(file).await?;
    parse_document(&text, Format::detect(&name, &text)).map_err(|p| anyhow::anyhow!("{name}: {p}"))
}

/// The catalog as `catalog apply` holds it: a JSON file's metrics stay text
/// until their chunk is validated, so memory stays bounded.
fn parse_doc<'a>(text: &'a str, name: &str) -> Result<CatalogDoc<'a>> {
    match Format::detect(name, text) {
        Format::Json => CatalogDoc::from_json(text)
            .map_err(|e| anyhow::anyhow!("{name}: $: not valid Json: {e}")),
        Format::Yaml => parse_document(text, Format::Yaml)
            .map(CatalogDoc::from_value)
            .map_err(|p| anyhow::anyhow!("{name}: {p}")),
    }
}

fn print_report(file: &std::path::Path, r: &catalog_apply::ApplyReport) {
    let (verb, cancel) = if r.dry_run {
        (
            "dry run, nothing was changed; would apply",
            "would be canceled",
        )
    } else {
        ("applied", "canceled")
    };
    println!(
        "{verb} {}: {} datasets, {} series, {} metrics; {} pending run(s) {cancel}",
        file.display(),
        r.datasets,
        r.series,
        r.metrics,
        r.canceled_runs.len()
    );
    let u = r.unchanged;
    if u.datasets + u.series + u.metrics > 0 {
        println!(
            "  unchanged since the last apply (skipped): {} datasets, {} series, {} metrics",
            u.datasets, u.series, u.metrics
        );
    }
    for id in &r.canceled_runs {
        println!("  {cancel}: {id}");
    }
    for change in &r.expectations {
        println!("  expectation of {change}");
    }
    for change in &r.policies {
        println!("  trigger policy of {change}");
    }
    if r.first_versions > 0 {
        println!("  {} new metric(s) at definition v1", r.first_versions);
    }
    for change in &r.definitions {
        println!("  {change}");
    }
}

pub async fn run(cmd: CatalogCommand) -> Result<()> {
    match cmd {
        CatalogCommand::Validate { file, strict } => {
            let doc = read(&file).await?;
            warn(&file, &doc, strict)?;
            match catalog_apply::validate_standalone(&doc) {
                Ok(c) => {
                    println!(
                        "{}: valid ({} datasets, {} series, {} metrics)",
                        file.display(),
                        c.datasets.len(),
                        c.series.len(),
                        c.metrics.len()
                    );
                    Ok(())
                }
                Err(problems) => {
                    eprintln!("{problems}");
                    bail!(
                        "{}: {} problem(s); see above",
                        file.display(),
                        problems.0.len()
                    )
                }
            }
        }
        CatalogCommand::Apply {
            file,
            strict,
            dry_run,
            by,
            db,
        } => {
            let (text, name) = read_text(&file).await?;
            let doc = parse_doc(&text, &name)?;
            let by = by.or_else(os_user);
            if by
                .as_deref()
                .is_some_and(|b| b.trim().is_empty() || b.len() > 200)
            {
                bail!("--by must be a non-empty name of at most 200 bytes");
            }
            let pool = db.pool().await?;
            let opts = catalog_apply::ApplyOptions {
                by: by.as_deref(),
                strict,
                dry_run,
            };
            match catalog_apply::apply_doc(&pool, &doc, &opts).await {
                Ok(r) => {
                    for w in &r.warnings {
                        eprintln!("warning: {w}");
                    }
                    print_report(&file, &r);
                    Ok(())
                }
                Err(ApplyError::Invalid(problems)) => {
                    eprintln!("{problems}");
                    bail!(
                        "{}: {} problem(s); nothing was applied",
                        file.display(),
                        problems.0.len()
                    )
                }
                Err(ApplyError::Warnings(warnings)) => {
                    for w in &warnings.0 {
                        eprintln!("warning: {w}");
                    }
                    bail!(
                        "{}: {} warning(s), errors with --strict; nothing was applied",
                        file.display(),
                        warnings.0.len()
                    )
                }
                Err(e) => Err(e).context("Failed to apply the catalog"),
            }
        }
    }
}
