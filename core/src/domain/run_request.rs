//! The outbound run request (docs/contracts.md), built from exactly the dataset
//! updates a run uses.

use crate::domain::events::EventType;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use super::ids::{DatasetId, RunId, UpdateId};

/// Settings that shape every request: where outputs go, and whether the
/// topic is FIFO (then group and deduplication ids are set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSettings {
    pub output_bucket: String,
    pub output_prefix: String,
    pub output_path_style: OutputPathStyle,
    pub fifo: bool,
}

/// How `output.basePath` is written (`OUTPUT_PATH_STYLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputPathStyle {
    /// `s3://OUTPUT_BUCKET/OUTPUT_PREFIX<metricCode>/`.
    #[default]
    S3Url,
    /// `OUTPUT_PREFIX<metricCode>/`: for runners that write into their own
    /// bucket and prefix the key themselves (the reference runner does).
    Key,
}

impl std::str::FromStr for OutputPathStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "s3-url" => Ok(Self::S3Url),
            "key" => Ok(Self::Key),
            other => Err(format!("unknown output path style {other:?}")),
        }
    }
}

impl RequestSettings {
    pub fn base_path(&self, metric_code: &str) -> String {
        match self.output_path_style {
            OutputPathStyle::S3Url => format!(
                "s3://{}/{}{}/",
                self.output_bucket, self.output_prefix, metric_code
            ),
            OutputPathStyle::Key => format!("{}{}/", self.output_prefix, metric_code),
        }
    }
}

/// One dataset update used by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedUpdate {
    pub dataset_id: DatasetId,
    pub update_id: UpdateId,
    pub bucket: String,
    pub manifest_path: String,
    pub projections_path: String,
    pub created_at: DateTime<Utc>,
}

/// A series and one dataset that provides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSource {
    pub series_code: String,
    pub dataset_id: DatasetId,
}

/// Everything a request is built from.
#[derive(Debug, Clone)]
pub struct RunRequestInput<'a, 'e> {
    pub run_id: &'a RunId,
    pub metric_code: &'a str,
    pub expression_type: &'a str,
    pub expression_json: &'e Value,
    pub attempt: i32,
    pub requested_at: DateTime<Utc>,
    /// Every series the metric references with every dataset that contains it.
    pub series_datasets: &'a [SeriesSource],
    pub updates: &'a [UsedUpdate],
}

/// Borrows the metric's expression: one tree serves every run of the metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub run_id: RunId,
    pub metric_code: String,
    pub expression_type: String,
    pub expression_json: &'a Value,
    pub inputs: Vec<Input>,
    pub catalog: CatalogSection,
    pub output: Output,
    pub attempt: i32,
    pub requested_at: String,
    /// `requested_at` as a time, for the outbox row (not on the wire).
    #[serde(skip)]
    pub requested: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_deduplication_id: Option<String>,
    /// Set under a trigger policy when there is something to say
    /// (docs/contracts.md, "trigger"); the reference runner ignores it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerNote>,
    /// The version of the metric's definition the run was requested with
    /// (docs/contracts.md); absent for runs requested before versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition_version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition_hash: Option<String>,
    /// A backfill's run: its backfill and the moment whose inputs it was
    /// given (docs/contracts.md); absent for live runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

/// What a run requested under a trigger policy went without, and the
/// updates it folded in while it waited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerNote {
    pub degraded: bool,
    pub stale: Vec<String>,
    pub missing: Vec<String>,
    pub folded: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// `None` only when no dataset in the catalog provides the series.
    pub dataset_id: Option<String>,
    pub series_code: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogSection {
    pub datasets: BTreeMap<String, CatalogDataset>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogDataset {
    pub bucket: String,
    pub manifest_path: String,
    pub projections_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub base_path: String,
}

/// `requestedAt` is written with millisecond precision in UTC.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn build<'e>(input: &RunRequestInput<'_, 'e>, settings: &RequestSettings) -> RunRequest<'e> {
    build_for(
        input,
        &Destination {
            base_path: settings.base_path(input.metric_code),
            fifo: settings.fifo,
        },
    )
}

/// What the deciding worker's settings made of a request: kept with its
/// outbox row, so that the relay, whatever its own settings, assembles the
/// request that was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `output.basePath`.
    pub base_path: String,
    /// For a FIFO topic: the request carries a group and a deduplication id.
    pub fifo: bool,
}

/// [`build`], to a destination decided earlier.
pub fn build_for<'e>(input: &RunRequestInput<'_, 'e>, to: &Destination) -> RunRequest<'e> {
    let by_dataset: BTreeMap<&str, &UsedUpdate> = input
        .updates
        .iter()
        .map(|u| (u.dataset_id.as_str(), u))
        .collect();
    // For each series: the dataset whose used update is newest; ties go to the
    // smallest dataset id (BTreeMap order + strict comparison).
    let mut providers: BTreeMap<&str, Option<(&str, DateTime<Utc>)>> = BTreeMap::new();
    for SeriesSource {
        series_code: series,
        dataset_id: dataset,
    } in input.series_datasets
    {
        let slot = providers.entry(series.as_str()).or_insert(None);
        if let Some(update) = by_dataset.get(dataset.as_str()) {
            let better = match slot {
                None => true,
                Some((best_id, best_at)) => {
                    update.created_at > *best_at
                        || (update.created_at == *best_at && dataset.as_str() < *best_id)
                }
            };
            if better {
                *slot = Some((dataset.as_str(), update.created_at));
            }
        }
    }
    let inputs = providers
        .into_iter()
        .map(|(series, provider)| Input {
            dataset_id: provider.map(|(d, _)| d.to_string()),
            series_code: series.to_string(),
        })
        .collect();
    let datasets = by_dataset
        .into_iter()
        .map(|(id, u)| {
            (
                id.to_string(),
                CatalogDataset {
                    bucket: u.bucket.clone(),
                    manifest_path: u.manifest_path.clone(),
                    projections_path: u.projections_path.clone(),
                },
            )
        })
        .collect();
    RunRequest {
        kind: EventType::MetricRunRequested.as_str(),
        run_id: input.run_id.clone(),
        metric_code: input.metric_code.to_string(),
        expression_type: input.expression_type.to_string(),
        expression_json: input.expression_json,
        inputs,
        catalog: CatalogSection { datasets },
        output: Output {
            base_path: to.base_path.clone(),
        },
        attempt: input.attempt,
        requested_at: format_timestamp(input.requested_at),
        requested: input.requested_at,
        message_group_id: to.fifo.then(|| input.metric_code.to_string()),
        message_deduplication_id: to.fifo.then(|| input.run_id.to_string()),
        trigger: None,
        definition_version: None,
        definition_hash: None,
        backfill_id: None,
        as_of: None,
    }
}

impl RunRequest<'_> {
    pub fn to_json_string(&self) -> String {
        // Serializing plain structs, strings and serde_json values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn update(d: &str, at: &str) -> UsedUpdate {
        UsedUpdate {
            dataset_id: d.into(),
            update_id: format!("u-{d}").into(),
            bucket: "bkt".into(),
            manifest_path: format!("{d}/manifest.json"),
            projections_path: format!("{d}/proj/"),
            created_at: t(at),
        }
    }

    fn settings(fifo: bool) -> RequestSettings {
        RequestSettings {
            output_bucket: "out".into(),
            output_prefix: "metrics/".into(),
            output_path_style: Default::default(),
            fifo,
        }
    }

    #[test]
    fn the_request_has_the_exact_wire_shape() {
        let expr =
            json!({"op": "ratio", "left": {"seriesCode": "B"}, "right": {"seriesCode": "A"}});
        let sd = vec![
            SeriesSource {
                series_code: "A".into(),
                dataset_id: "d1".into(),
            },
            SeriesSource {
                series_code: "B".into(),
                dataset_id: "d2".into(),
            },
        ];
        let ups = vec![
            update("d1", "2026-11-20T10:00:00Z"),
            update("d2", "2026-11-20T10:00:01Z"),
        ];
        let input = RunRequestInput {
            run_id: &RunId::new("r1"),
            metric_code: "m.x",
            expression_type: "series_math",
            expression_json: &expr,
            attempt: 1,
            requested_at: t("2026-11-20T10:00:00.123456Z"),
            series_datasets: &sd,
            updates: &ups,
        };
        let v: Value =
            serde_json::from_str(&build(&input, &settings(false)).to_json_string()).unwrap();
        assert_eq!(
            v,
            json!({
              "type": "metric_run_requested", "runId": "r1", "metricCode": "m.x",
              "expressionType": "series_math", "expressionJson": expr,
              "inputs": [{"datasetId": "d1", "seriesCode": "A"}, {"datasetId": "d2", "seriesCode": "B"}],
              "catalog": {"datasets": {
                "d1": {"bucket": "bkt", "manifestPath": "d1/manifest.json", "projectionsPath": "d1/proj/"},
                "d2": {"bucket": "bkt", "manifestPath": "d2/manifest.json", "projectionsPath": "d2/proj/"}}},
              "output": {"basePath": "s3://out/metrics/m.x/"},
              "attempt": 1, "requestedAt": "2026-11-20T10:00:00.123Z"
            })
        );
        let fifo = build(&input, &settings(true));
        assert_eq!(fifo.message_group_id.as_deref(), Some("m.x"));
        assert_eq!(fifo.message_deduplication_id.as_deref(), Some("r1"));
    }

    #[test]
    fn the_output_path_follows_the_configured_style() {
        let cases = [
            ("s3-url", "metrics/", "s3://out/metrics/m.x/"),
            ("key", "metrics/", "metrics/m.x/"),
            ("key", "", "m.x/"),
            ("s3-url", "", "s3://out/m.x/"),
        ];
        for (style, prefix, want) in cases {
            let s = RequestSettings {
                output_prefix: prefix.into(),
                output_path_style: style.parse().unwrap(),
                ..settings(false)
            };
            assert_eq!(s.base_path("m.x"), want, "{style} {prefix:?}");
        }
        assert!("url".parse::<OutputPathStyle>().is_err());
    }

    #[test]
    fn a_series_in_several_datasets_comes_from_the_newest_update_then_smallest_id() {
        let expr = json!({});
        let sd = vec![
            SeriesSource {
                series_code: "S".into(),
                dataset_id: "a".into(),
            },
            SeriesSource {
                series_code: "S".into(),
                dataset_id: "b".into(),
            },
            SeriesSource {
                series_code: "S".into(),
                dataset_id: "c".into(),
            },
            SeriesSource {
                series_code: "T".into(),
                dataset_id: "b".into(),
            },
            SeriesSource {
                series_code: "T".into(),
                dataset_id: "c".into(),
            },
        ];
        let ups = vec![
            update("a", "2026-11-20T10:00:00Z"),
            update("b", "2026-11-20T10:00:05Z"),
            update("c", "2026-11-20T10:00:05Z"),
        ];
        let input = RunRequestInput {
            run_id: &RunId::new("r"),
            metric_code: "m",
            expression_type: "composite",
            expression_json: &expr,
            attempt: 2,
            requested_at: t("2026-11-20T10:00:00Z"),
            series_datasets: &sd,
            updates: &ups,
        };
        let r = build(&input, &settings(false));
        let ids: Vec<_> = r
            .inputs
            .iter()
            .map(|i| i.dataset_id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, vec!["b", "b"]);
    }
}
