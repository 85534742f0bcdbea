//! Backfills as operators make and steer them (docs/semantics.md,
//! "Backfills"): `create` plans every point (inputs pinned from the update
//! log, each judged against the run a reader saw then) and writes the
//! backfill with its plan, or only returns the plan (`dry_run`); `control`
//! pauses, resumes or cancels; `show` and `list` say where they are. The
//! workers request the points (`app::backfill_run`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::backfill::{
    self, Control, Counts, Found, Progress, Request, Status, MAX_POINTS,
};
use crate::domain::backfill_plan::{self, History};
use crate::domain::ids::{BackfillId, MetricId, RunId};
use crate::in_transaction;
use crate::store::backfills::{self, Backfill, NewBackfill, NewPoint, PlanMetric, PointRow};
use crate::store::tx::TxError;
use crate::store::{db_now, runs, Pool, StoreError, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("no metric with code {}", .0.join(", "))]
    UnknownMetrics(Vec<String>),
    #[error("no backfill {0}")]
    Unknown(BackfillId),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TxError for BackfillError {
    fn as_store_error(&self) -> Option<&StoreError> {
        match self {
            BackfillError::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// How a backfill is made.
#[derive(Debug, Clone)]
pub struct Create<'a> {
    pub request: Request,
    /// The caller's idempotency key (else one derived from the request).
    pub key: Option<&'a str>,
    /// Recorded as its author (else the database user).
    pub by: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// Plan only: write nothing.
    pub dry_run: bool,
}

/// One planned point.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub metric_code: String,
    pub as_of: DateTime<Utc>,
    pub found: &'static str,
    /// Recomputed by this backfill (`reprocess` selects it).
    pub selected: bool,
    pub inputs: Vec<String>,
    /// The run a reader saw at that moment.
    pub seen: Option<RunId>,
    /// Why it cannot run (unready points).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A plan: every point, and how many the plan found in each state.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub metrics: Vec<String>,
    pub points: Vec<Planned>,
    pub found: BTreeMap<&'static str, usize>,
    pub selected: usize,
}

/// What `create` did.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// `None` for a dry run.
    pub id: Option<BackfillId>,
    /// The same request made before: that backfill, nothing new written.
    pub existing: bool,
    pub plan: Plan,
}

pub async fn create(pool: &Pool, c: &Create<'_>) -> Result<Created, BackfillError> {
    in_transaction!(pool, BackfillError, |tx| create_in(&tx, c).await?)
}

/// [`create`] inside the caller's transaction (a definition change makes
/// its backfill with the rest of what it does).
pub async fn create_in(tx: &Transaction<'_>, c: &Create<'_>) -> Result<Created, BackfillError> {
    let r = &c.request;
    let (metrics, edges) = resolve(tx, r).await?;
    let ids: Vec<MetricId> = metrics.iter().map(|m| m.id.clone()).collect();
    let mut upstream: HashMap<MetricId, Vec<MetricId>> = HashMap::new();
    for (down, up) in &edges {
        upstream.entry(down.clone()).or_default().push(up.clone());
    }
    let depths = backfill_plan::depths(&ids, &upstream).map_err(BackfillError::Invalid)?;
    let mut planned = Vec::new();
    let mut rows: Vec<(usize, i32)> = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        let log = backfills::update_log(tx, &m.required, r.from, r.to).await?;
        let past = backfills::past_runs(tx, &m.id, r.to).await?;
        let h = History {
            required: &m.required,
            required_days: m.required_days,
            log: &log,
            runs: &past,
            current_version: m.version,
        };
        let points =
            backfill_plan::plan(&r.points, &h, r.from, r.to).map_err(BackfillError::Invalid)?;
        if planned.len() + points.len() > MAX_POINTS {
            return Err(BackfillError::Invalid(format!(
                "more than {MAX_POINTS} points in all: narrow the range or take fewer points"
            )));
        }
        for p in points {
            rows.push((i, depths.get(&m.id).copied().unwrap_or(0)));
            planned.push(p);
        }
    }
    let mut found: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(planned.len());
    for (p, (i, _)) in planned.iter().zip(&rows) {
        *found.entry(p.found.as_str()).or_default() += 1;
        let why = (p.found == Found::Unready).then(|| {
            let list = |d: &[crate::domain::ids::DatasetId]| {
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            match (p.pinned.missing.is_empty(), p.pinned.stale.is_empty()) {
                (false, _) => format!("no update yet of {}", list(&p.pinned.missing)),
                _ => format!(
                    "newest update too old (required_days {}) of {}",
                    metrics[*i].required_days,
                    list(&p.pinned.stale)
                ),
            }
        });
        out.push(Planned {
            metric_code: metrics[*i].code.clone(),
            as_of: p.as_of,
            found: p.found.as_str(),
            selected: r.reprocess.selects(p.found),
            inputs: p.pinned.inputs.iter().map(ToString::to_string).collect(),
            seen: p.seen.clone(),
            why,
        });
    }
    let plan = Plan {
        metrics: metrics.iter().map(|m| m.code.clone()).collect(),
        selected: out.iter().filter(|p| p.selected).count(),
        points: out,
        found,
    };
    if c.dry_run {
        return Ok(Created {
            id: None,
            existing: false,
            plan,
        });
    }
    let id = BackfillId::generate();
    let request_key = backfill::request_key(r);
    let points_text = r.points.to_string();
    let new = NewBackfill {
        id: &id,
        key: c.key,
        request_key: &request_key,
        metrics: &r.metrics,
        downstream: r.downstream,
        from: r.from,
        to: r.to,
        points: &points_text,
        reprocess: r.reprocess.as_str(),
        max_in_flight: r.max_in_flight,
        by: c.by,
        reason: c.reason,
    };
    let points: Vec<NewPoint> = planned
        .iter()
        .zip(&rows)
        .map(|(p, (i, depth))| NewPoint {
            metric_id: &metrics[*i].id,
            as_of: p.as_of,
            depth: *depth,
            found: p.found,
            selected: r.reprocess.selects(p.found),
            inputs: &p.pinned.inputs,
        })
        .collect();
    match backfills::insert(tx, &new, &points, &edges).await? {
        Ok(()) => Ok(Created {
            id: Some(id),
            existing: false,
            plan,
        }),
        Err(existing) => Ok(Created {
            id: Some(existing),
            existing: true,
            plan,
        }),
    }
}

/// The backfill's metrics (with `downstream`, every metric that reads one
/// of them, transitively) and which of them reads which.
async fn resolve(
    tx: &Transaction<'_>,
    r: &Request,
) -> Result<(Vec<PlanMetric>, Vec<(MetricId, MetricId)>), BackfillError> {
    let all_edges = backfills::edges(tx).await?;
    let mut codes: Vec<String> = r.metrics.clone();
    let mut metrics = backfills::metrics(tx, &codes).await?;
    let unknown: Vec<String> = codes
        .iter()
        .filter(|c| !metrics.iter().any(|m| &m.code == *c))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(BackfillError::UnknownMetrics(unknown));
    }
    if r.downstream {
        let mut ids: HashSet<MetricId> = metrics.iter().map(|m| m.id.clone()).collect();
        loop {
            let more: Vec<String> = all_edges
                .iter()
                .filter(|(down, up, _)| ids.contains(up) && !ids.contains(down))
                .map(|(_, _, code)| code.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            codes.extend(more);
            codes.sort();
            codes.dedup();
            metrics = backfills::metrics(tx, &codes).await?;
            ids = metrics.iter().map(|m| m.id.clone()).collect();
        }
    }
    if let Some(m) = metrics.iter().find(|m| !m.enabled) {
        return Err(BackfillError::Invalid(format!(
            "metric {} is disabled; enable it in the catalog first",
            m.code
        )));
    }
    let ids: HashSet<&MetricId> = metrics.iter().map(|m| &m.id).collect();
    let edges = all_edges
        .iter()
        .filter(|(down, up, _)| ids.contains(down) && ids.contains(up))
        .map(|(down, up, _)| (down.clone(), up.clone()))
        .collect();
    Ok((metrics, edges))
}

/// Pauses, resumes or cancels a backfill; its new status. Canceling cancels
/// its points not finished and its runs not yet published.
pub async fn control(pool: &Pool, id: &BackfillId, c: Control) -> Result<Status, BackfillError> {
    in_transaction!(pool, BackfillError, |tx| {
        let from = backfills::lock(&tx, id)
            .await?
            .ok_or_else(|| BackfillError::Unknown(id.clone()))?;
        let to = c.apply(from).map_err(BackfillError::Invalid)?;
        if !backfills::set_status(&tx, id, from, to).await? {
            return Err(StoreError::Conflict(format!("backfill {id} changed meanwhile")).into());
        }
        if to == Status::Canceled {
            let in_flight = backfills::cancel_points(&tx, id).await?;
            runs::cancel_queued(&tx, &in_flight, "its backfill was canceled").await?;
        }
        to
    })
}

/// How recent "recently finished" is for the pace.
pub const PACE_WINDOW: Duration = Duration::from_secs(300);

/// A backfill with its progress.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    #[serde(flatten)]
    pub backfill: Backfill,
    pub progress: Progress,
}

pub async fn show(pool: &Pool, id: &BackfillId) -> Result<Shown, BackfillError> {
    let client = pool.get().await.map_err(StoreError::from)?;
    let b = backfills::get(&client, id)
        .await?
        .ok_or_else(|| BackfillError::Unknown(id.clone()))?;
    let mut shown = with_progress(&client, vec![b]).await?;
    Ok(shown.remove(0))
}

pub async fn list(pool: &Pool, limit: i64) -> Result<Vec<Shown>, BackfillError> {
    let client = pool.get().await.map_err(StoreError::from)?;
    let bs = backfills::list(&client, limit).await?;
    with_progress(&client, bs).await
}

async fn with_progress(
    db: &impl crate::store::GenericClient,
    bs: Vec<Backfill>,
) -> Result<Vec<Shown>, BackfillError> {
    let ids: Vec<BackfillId> = bs.iter().map(|b| b.id.clone()).collect();
    let counts = backfills::counts(db, &ids, PACE_WINDOW.as_secs_f64()).await?;
    Ok(bs
        .into_iter()
        .map(|b| {
            let (c, recent) = counts.get(&b.id).copied().unwrap_or((Counts::default(), 0));
            let recent = if b.status == "running" { recent } else { 0 };
            Shown {
                progress: backfill::progress(c, recent, PACE_WINDOW),
                backfill: b,
            }
        })
        .collect())
}

/// A page of a backfill's points.
pub async fn points(
    pool: &Pool,
    id: &BackfillId,
    offset: i64,
    limit: i64,
) -> Result<Vec<PointRow>, BackfillError> {
    let client = pool.get().await.map_err(StoreError::from)?;
    Ok(backfills::points(&client, id, offset, limit).await?)
}

/// The database's clock (a backfill's `to` may not be in its future).
pub async fn now(pool: &Pool) -> Result<DateTime<Utc>, BackfillError> {
    in_transaction!(pool, BackfillError, |tx| db_now(&tx).await?)
}
