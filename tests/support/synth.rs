//! Synthetic catalogs and update streams for benchmarks and load tests.
//!
//! Shape (scenarios A and B of BENCHMARKS.md): `datasets` × `series_per_dataset`
//! series; each metric references 2–4 series, even-numbered metrics within one
//! dataset, odd-numbered ones across 2–3 datasets; expression types rotate.

use serde_json::{json, Value};

use orchestrator_core::domain::events::ProjectionUpdate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub datasets: usize,
    pub series_per_dataset: usize,
    pub metrics: usize,
    pub seed: u64,
}

impl Shape {
    pub const SCENARIO_A: Shape = Shape {
        datasets: 50,
        series_per_dataset: 10,
        metrics: 1_000,
        seed: 7,
    };
    pub const SCENARIO_B: Shape = Shape {
        datasets: 500,
        series_per_dataset: 10,
        metrics: 50_000,
        seed: 7,
    };
}

/// A small deterministic generator (SplitMix64): the same seed gives the same
/// catalog on every machine and crate version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// `k` distinct values below `n` (k <= n).
    fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::with_capacity(k);
        while out.len() < k.min(n) {
            let v = self.below(n);
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }
}

pub fn dataset_id(d: usize) -> String {
    format!("ds_{d:04}")
}

pub fn series_code(d: usize, s: usize) -> String {
    format!("S_{d:04}_{s:02}")
}

fn leaf(code: &str) -> Value {
    json!({ "seriesCode": code })
}

fn expression(kind: usize, series: &[String]) -> (&'static str, Value) {
    match kind % 3 {
        0 => {
            // ratio(a, add(b, multiply(c, d))) …
            let mut node = leaf(&series[series.len() - 1]);
            for (i, s) in series[..series.len() - 1].iter().enumerate().rev() {
                let op = ["ratio", "add", "multiply"][i % 3];
                node = json!({ "op": op, "left": leaf(s), "right": node });
            }
            ("series_math", node)
        }
        1 => {
            let inner = json!({ "op": "sum", "operands": series.iter().map(|s| leaf(s)).collect::<Vec<_>>() });
            (
                "window_op",
                json!({ "op": "sma", "series": inner, "window": 7 }),
            )
        }
        _ => {
            let operands: Vec<Value> = series
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    if i == 0 {
                        json!({ "op": "lag", "series": leaf(s), "window": 1 })
                    } else {
                        leaf(s)
                    }
                })
                .collect();
            ("composite", json!({ "op": "avg", "operands": operands }))
        }
    }
}

/// The catalog document (the format `orchestrator catalog apply` reads).
pub fn catalog(shape: Shape) -> Value {
    let mut rng = Rng(shape.seed);
    let spd = shape.series_per_dataset.max(1);
    let datasets: Vec<Value> = (0..shape.datasets)
        .map(|d| {
            json!({ "id": dataset_id(d), "name": format!("Dataset {d}"), "bucket": "bench-datasets",
                    "series": (0..spd).map(|s| series_code(d, s)).collect::<Vec<_>>() })
        })
        .collect();
    let series: Vec<Value> = (0..shape.datasets)
        .flat_map(|d| {
            (0..spd).map(move |s| json!({ "code": series_code(d, s), "frequency": "daily" }))
        })
        .collect();
    let metrics: Vec<Value> = (0..shape.metrics)
        .map(|i| {
            let k = 2 + rng.below(3);
            let picked: Vec<String> = if i % 2 == 0 || shape.datasets < 2 {
                let d = rng.below(shape.datasets);
                rng.distinct(spd, k)
                    .into_iter()
                    .map(|s| series_code(d, s))
                    .collect()
            } else {
                let m = (2 + rng.below(2)).min(k).min(shape.datasets);
                let ds = rng.distinct(shape.datasets, m);
                (0..k)
                    .map(|j| series_code(ds[j % m], rng.below(spd)))
                    .collect()
            };
            let mut unique = picked.clone();
            unique.sort();
            unique.dedup();
            if unique.len() < 2 {
                unique = picked;
            }
            let (kind, expr) = expression(i, &unique);
            json!({ "id": format!("m_{i:06}"), "code": format!("synthetic.m{i:06}"),
                    "expression_type": kind, "expression_json": expr,
                    "required_days": 7, "max_attempts": 1, "enabled": true })
        })
        .collect();
    json!({ "datasets": datasets, "series": series, "metrics": metrics })
}

/// A catalog of `shape.datasets` datasets where each update completes exactly
/// one run: one metric per dataset, over that dataset's first series
/// (`loadgen bench-messaging`'s fan-out-1 case).
pub fn fan_out_one_catalog(shape: Shape) -> Value {
    let mut doc = catalog(Shape {
        metrics: 0,
        ..shape
    });
    doc["metrics"] = (0..shape.datasets)
        .map(|d| {
            json!({ "id": format!("m1_{d:04}"), "code": format!("synthetic.single{d:04}"),
                    "expression_type": "window_op",
                    "expression_json": { "op": "sma", "series": leaf(&series_code(d, 0)), "window": 7 },
                    "required_days": 7, "max_attempts": 1, "enabled": true })
        })
        .collect();
    doc
}

/// `count` updates with distinct manifests, datasets round-robin.
pub fn updates(shape: Shape, count: usize) -> Vec<ProjectionUpdate> {
    (0..count)
        .map(|i| {
            let d = i % shape.datasets.max(1);
            let version = i / shape.datasets.max(1);
            ProjectionUpdate {
                dataset_id: dataset_id(d).into(),
                bucket: Some("bench-datasets".into()),
                version_manifest_path: format!("{}/v{version:06}/manifest.json", dataset_id(d)),
                projections_path: format!("{}/v{version:06}/projections/", dataset_id(d)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::domain::catalog::validate;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn the_fan_out_one_catalog_has_one_metric_per_dataset() {
        let c = validate(&fan_out_one_catalog(Shape::SCENARIO_A), &HashSet::new()).unwrap();
        assert_eq!(c.metrics.len(), 50);
        for (d, m) in c.metrics.iter().enumerate() {
            assert_eq!(m.series(), [series_code(d, 0)].into(), "{}", m.code);
        }
    }

    #[test]
    fn scenario_a_is_valid_and_has_the_expected_fan_out() {
        let doc = catalog(Shape::SCENARIO_A);
        let c = validate(&doc, &HashSet::new()).unwrap();
        assert_eq!(c.metrics.len(), 1_000);
        let dataset_of: HashMap<String, String> = c
            .datasets
            .iter()
            .flat_map(|d| {
                d.series
                    .iter()
                    .flatten()
                    .map(move |s| (s.clone(), d.id.clone()))
            })
            .collect();
        let touches: usize = c
            .metrics
            .iter()
            .map(|m| {
                m.series()
                    .iter()
                    .map(|s| &dataset_of[s])
                    .collect::<HashSet<_>>()
                    .len()
            })
            .sum();
        let per_update = touches as f64 / 50.0;
        assert!(
            (30.0..40.0).contains(&per_update),
            "{per_update} dependent metrics per update"
        );
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(catalog(Shape::SCENARIO_A), catalog(Shape::SCENARIO_A));
        let u = updates(Shape::SCENARIO_A, 120);
        assert_eq!(u[0].dataset_id, "ds_0000");
        assert_eq!(u[50].dataset_id, "ds_0000");
        assert_ne!(u[0].event_key(), u[50].event_key());
    }
}
