//! `loadgen generate`: a synthetic catalog and NDJSON update stream of
//! any size, for load work (the same generator the benchmarks use).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use orchestrator_tests::synth::{self, Shape};

#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long, default_value_t = 50)]
    datasets: usize,
    #[arg(long, default_value_t = 10)]
    series_per_dataset: usize,
    #[arg(long, default_value_t = 1000)]
    metrics: usize,
    /// Projection updates in the event stream (round-robin over datasets).
    #[arg(long, default_value_t = 2000)]
    updates: usize,
    /// Same seed, same output.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Directory for catalog.json and events.ndjson (created if missing).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let shape = Shape {
        datasets: args.datasets.max(1),
        series_per_dataset: args.series_per_dataset.max(1),
        metrics: args.metrics,
        seed: args.seed,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("Failed to create {}", args.out.display()))?;
    let catalog_path = args.out.join("catalog.json");
    std::fs::write(&catalog_path, synth::catalog(shape).to_string())
        .with_context(|| format!("Failed to write {}", catalog_path.display()))?;
    let events_path = args.out.join("events.ndjson");
    let file = std::fs::File::create(&events_path)
        .with_context(|| format!("Failed to create {}", events_path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for u in synth::updates(shape, args.updates) {
        writeln!(w, "{}", u.to_json())?;
    }
    w.flush()?;
    println!(
        "wrote {} ({} datasets, {} metrics) and {} ({} updates)",
        catalog_path.display(),
        shape.datasets,
        shape.metrics,
        events_path.display(),
        args.updates
    );
    Ok(())
}
