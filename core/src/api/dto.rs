//! What the operator API answers, in camelCase like the wire contracts, with
//! RFC 3339 timestamps; each type is also an OpenAPI schema.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`, `conflict`, `payload_too_large`, `unsupported_media_type`, `unavailable` (with `Retry-After`) or `internal`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    pub id: String,
    pub status: String,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingRun {
    pub id: String,
    /// Required datasets the run has no update for yet.
    pub waiting_for: Vec<String>,
    /// For the console's badge, e.g. `waiting for 1 of 2: bcra_tipo_cambio`.
    pub summary: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub id: String,
    pub code: String,
    pub expression_type: String,
    pub enabled: bool,
    pub required_days: i32,
    pub max_attempts: i32,
    pub run_timeout_secs: Option<i32>,
    pub required_datasets: Vec<String>,
    /// `ok`, `pending`, `stale`, `failing` or `disabled`.
    pub status: String,
    pub last_run: Option<LastRun>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub pending_run: Option<PendingRun>,
    /// Its freshness expectation (`max age warn 1day 2h, fail 2days`);
    /// absent: none.
    pub expectation: Option<String>,
    /// Its freshness state; absent without an expectation (or before the
    /// first sweep).
    pub freshness: Option<Freshness>,
    /// Its trigger policy as the catalog's dry run prints it; absent: the
    /// default rule.
    pub trigger_policy: Option<String>,
    /// Set while an operator holds the metric.
    pub held: Option<Held>,
    /// Its definition's current version; absent before its first apply.
    pub definition_version: Option<i32>,
    /// Whether its newest succeeded output is current, and why not.
    pub output: Output,
}

/// A metric's newest succeeded output against the present
/// (docs/semantics.md, "Staleness").
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// `current`, `stale` or `no_output` (no run has succeeded).
    pub status: String,
    /// The run that made it.
    pub run_id: Option<String>,
    /// The definition version that run was requested with.
    pub definition_version: Option<i32>,
    /// Why it is stale; empty when it is not.
    pub reasons: Vec<StaleReason>,
}

/// One reason an output is stale.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaleReason {
    /// `definition_changed`, `input_updated` or `policy_changed`.
    pub reason: String,
    /// Readable: `definition_changed (v1 → v2)`.
    pub text: String,
    /// For version changes: from the output's version to the current one.
    pub from_version: Option<i32>,
    pub to_version: Option<i32>,
    /// For `input_updated`: each input with newer updates.
    pub inputs: Vec<NewerInput>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewerInput {
    pub dataset_id: String,
    /// Updates received after the one the output used.
    pub newer_updates: i64,
    /// When the first of them was received.
    pub since: DateTime<Utc>,
}

/// Who holds a metric, since when.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub since: DateTime<Utc>,
    pub by: String,
}

/// What happens next to a metric's pending run, and when.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NextDecision {
    /// E.g. `settling: runs at 2026-12-01 10:03:20 UTC unless another update arrives`.
    pub text: String,
    /// When the policy is asked again; absent: only an update can change it.
    pub at: Option<DateTime<Utc>>,
    /// Updates the pending run has folded in so far.
    pub folded_updates: i64,
}

/// A freshness state (docs/semantics.md, "Freshness expectations").
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Freshness {
    /// Datasets: `on_time`, `late`, `unknown`; metrics: `pass`, `warn`,
    /// `fail`, `unknown`.
    pub state: String,
    /// When it entered this state.
    pub since: DateTime<Utc>,
    /// The deadline or threshold a late, warning or failing one passed.
    pub overdue_since: Option<DateTime<Utc>>,
    /// Seconds since `overdueSince`, at the time of the answer.
    pub overdue_seconds: Option<f64>,
    /// Metrics: the datasets that block a warning or failing one (late, or
    /// missing from its pending run).
    pub blocking: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Keyset paging: a page of `limit` rows is read as `limit + 1`
/// ([`Page::rows_to_read`]) in cursor order; the extra row only says that a
/// next page exists, and the last kept row's key is its cursor.
impl<T: ToSchema> Page<T> {
    pub fn rows_to_read(limit: i64) -> i64 {
        limit + 1
    }

    /// The page of `rows` (read in cursor order, at most `limit + 1` of them
    /// wanted), each made an item by `item`.
    pub fn keyset<R>(
        mut rows: Vec<R>,
        limit: i64,
        key: impl Fn(&R) -> String,
        item: impl FnMut(R) -> T,
    ) -> Self {
        let keep = usize::try_from(limit).unwrap_or(0);
        let next_cursor = (rows.len() > keep)
            .then(|| {
                keep.checked_sub(1)
                    .and_then(|last| rows.get(last))
                    .map(&key)
            })
            .flatten();
        rows.truncate(keep);
        Page {
            items: rows.into_iter().map(item).collect(),
            next_cursor,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesSource {
    pub code: String,
    /// Datasets that provide the series.
    pub datasets: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub dataset_id: String,
    /// The dataset's newest update.
    pub update_id: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
    pub age_seconds: Option<f64>,
    pub fresh: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricDetail {
    #[serde(flatten)]
    pub metric: Metric,
    #[schema(value_type = Object)]
    pub expression_json: Value,
    pub frequency: Option<String>,
    pub unit: Option<String>,
    pub description: Option<String>,
    pub series: Vec<SeriesSource>,
    pub inputs: Vec<Input>,
    /// The 20 most recent runs, newest first.
    pub runs: Vec<Run>,
    /// For a metric with a pending run: what happens next.
    pub next: Option<NextDecision>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub id: String,
    pub metric_code: String,
    pub status: String,
    pub attempt: i32,
    pub retry_of: Option<String>,
    pub created_at: DateTime<Utc>,
    pub requested_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: Option<f64>,
    pub error: Option<String>,
    /// Set when its trigger policy requested it without some inputs fresh.
    pub degraded: Option<Degraded>,
    /// The version of its metric's definition it was requested with;
    /// absent before it is requested, or for runs from before versions.
    pub definition_version: Option<i32>,
    /// What its runner reported executing (`codeVersion`), if it did.
    pub code_version: Option<String>,
}

/// The inputs a run went without (docs/semantics.md, "Trigger policies").
#[derive(Debug, Serialize, ToSchema, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Degraded {
    /// Required inputs used at an update that was not fresh.
    pub stale: Vec<String>,
    /// Inputs it ran without.
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub created: DateTime<Utc>,
    pub requested: Option<DateTime<Utc>>,
    pub dispatched: Option<DateTime<Utc>>,
    pub started: Option<DateTime<Utc>>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    pub version_ts: Option<String>,
    pub output_manifest: Option<String>,
    pub row_count: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsedInput {
    pub dataset_id: String,
    pub update_id: String,
    pub manifest_path: String,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunDetail {
    pub id: String,
    pub metric_code: String,
    pub status: String,
    pub attempt: i32,
    pub retry_of: Option<String>,
    pub retries: Vec<String>,
    pub timeline: Timeline,
    pub progress: Option<f64>,
    pub error: Option<String>,
    pub degraded: Option<Degraded>,
    /// The version of its metric's definition it was requested with.
    pub definition_version: Option<i32>,
    /// What its runner reported executing (`codeVersion`).
    pub code_version: Option<String>,
    pub result: RunResult,
    pub inputs: Vec<UsedInput>,
    /// For a pending run: the datasets it still waits for.
    pub waiting_for: Vec<String>,
    /// The run request exactly as published (null while pending).
    #[schema(value_type = Option<Object>)]
    pub request: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub bucket: Option<String>,
    pub series: Vec<String>,
    pub metric_count: i64,
    pub newest_update_at: Option<DateTime<Utc>>,
    /// Its freshness expectation (`every 1day, grace 1h`); absent: none.
    pub expectation: Option<String>,
    /// Its freshness state; absent without an expectation.
    pub freshness: Option<Freshness>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetUpdate {
    pub id: String,
    pub version_manifest_path: String,
    pub projections_path: String,
    pub bucket: Option<String>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetDetail {
    #[serde(flatten)]
    pub dataset: Dataset,
    pub metrics: Vec<String>,
    /// The 20 most recent updates, newest first.
    pub updates: Vec<DatasetUpdate>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineageNode {
    /// `dataset:<id>` or `metric:<code>`.
    pub id: String,
    /// `dataset` or `metric`.
    pub kind: String,
    pub label: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineageEdge {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<LineageEdge>,
    /// More edges exist than were returned (ask `?around=` for one part).
    pub truncated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: String,
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Canceled {
    pub run_id: String,
    pub previous_status: String,
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Triggered {
    pub run_id: String,
    pub metric_code: String,
    pub status: String,
    /// The update of each required dataset the run uses.
    pub updates: Vec<UsedUpdateRef>,
}

/// What a hold or a resume did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldChanged {
    pub metric_code: String,
    /// Whether the metric is held now.
    pub held: bool,
    /// Whether this call changed it (false: it already was so).
    pub changed: bool,
    /// Runs a resume requested.
    pub queued_runs: Vec<String>,
    /// Runs a resume with `drop=true` canceled.
    pub dropped_runs: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsedUpdateRef {
    pub dataset_id: String,
    pub update_id: String,
}

#[cfg(test)]
mod tests {
    use super::Page;

    /// Rows read, limit, items kept, next cursor.
    type Case = (&'static [i32], i64, &'static [i32], Option<&'static str>);

    #[test]
    fn a_keyset_page_keeps_limit_rows_and_points_past_the_last() {
        let cases: &[Case] = &[
            (&[], 3, &[], None),
            (&[1, 2], 3, &[1, 2], None),
            (&[1, 2, 3], 3, &[1, 2, 3], None),
            (&[1, 2, 3, 4], 3, &[1, 2, 3], Some("3")),
            (&[1, 2, 3, 4, 5], 3, &[1, 2, 3], Some("3")),
            (&[1, 2], 1, &[1], Some("1")),
        ];
        for (rows, limit, items, cursor) in cases {
            let page: Page<i32> = Page::keyset(rows.to_vec(), *limit, |r| r.to_string(), |r| r);
            assert_eq!(page.items, *items, "{rows:?} limit {limit}");
            assert_eq!(
                page.next_cursor.as_deref(),
                *cursor,
                "{rows:?} limit {limit}"
            );
            assert_eq!(Page::<i32>::rows_to_read(*limit), limit + 1);
        }
    }
}
