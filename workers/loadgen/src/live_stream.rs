//! The live stream the benchmarks run beside their subject: projection
//! updates of scenario A's datasets at a fixed rate (open loop: each
//! update's latency is measured from its slot).

use std::time::{Duration, Instant};

use anyhow::Result;
use orchestrator_core::app::{projection_update, Context};
use orchestrator_core::domain::events::ProjectionUpdate;
use orchestrator_tests::synth;

pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn update(d: usize, version: usize) -> ProjectionUpdate {
    let id = synth::dataset_id(d);
    ProjectionUpdate {
        dataset_id: id.clone().into(),
        bucket: None,
        version_manifest_path: format!("{id}/v{version}/manifest.json"),
        projections_path: format!("{id}/v{version}/projections/"),
    }
}

/// What a stream of updates saw.
#[derive(Default)]
pub struct Stream {
    /// Each update's latency from its slot, in ms.
    pub latencies: Vec<f64>,
    /// Dependent metrics the updates reached, and those another
    /// transaction held (deferred to their backlog).
    pub dependents: usize,
    pub deferred: usize,
}

impl Stream {
    pub fn latency(&mut self) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms over {} updates",
            pct(&mut self.latencies, 0.5),
            pct(&mut self.latencies, 0.99),
            self.latencies.len()
        )
    }
}

/// Updates at `rate` a second until `until` says stop.
pub async fn updates_at(
    ctx: &Context,
    rate: u32,
    datasets: usize,
    first_version: usize,
    until: impl Fn() -> bool,
) -> Result<Stream> {
    let start = Instant::now();
    let mut out = Stream::default();
    for i in 0.. {
        if until() {
            break;
        }
        let slot = start + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
        tokio::time::sleep_until(slot.into()).await;
        let u = update((i as usize * 7) % datasets, first_version + i as usize);
        let s = projection_update::process(ctx, &u).await?;
        out.latencies.push(slot.elapsed().as_secs_f64() * 1e3);
        out.dependents += s.dependent_metrics;
        out.deferred += s.deferred;
    }
    Ok(out)
}
