//! Evaluating metrics this transaction holds (docs/semantics.md): each
//! metric's backlog in update order, then the transaction's own update if it
//! has one. Shared by an update's own transaction and the backlog drain.
//!
//! Round trips: (1) read the metrics' pending runs, sources, backlog and the
//! newest evaluated update of each required dataset (for an update's own
//! metrics, in the round trip of its claim when the guess of them holds:
//! [`settle`]'s `read`), (2) the updates earlier
//! folded into a run under a policy (only then), (3) send all writes in one
//! pipeline, the outbox rows as recipes (`app::request`), and behind them
//! the look for backlog rows committed meanwhile ([`settle`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{dependents, request, Context};
use crate::domain::ids::{MetricId, RunId, UpdateId};
use crate::domain::metric_evaluation::{self, Arrival, MetricState};
use crate::domain::pending_run::{update_set_key, Received, Slot};
use crate::domain::run_request::{TriggerNote, UsedUpdate};
use crate::domain::trigger::{Degraded, Timers};
use crate::store::catalog::{self, LockedMetric, SeriesSources};
use crate::store::evaluation::EvaluationWrites;
use crate::store::outbox::RequestKey;
use crate::store::outbox::{NewMessage, Origin};
use crate::store::runs::{CreatedRun, RowInputs};
use crate::store::{backlog, pending, runs, StoreError, Transaction};

/// The transaction's own update (the projection update it handles),
/// evaluated after the backlog.
pub(super) struct OwnUpdate<'a> {
    pub update: &'a UsedUpdate,
    pub origin: &'a Origin,
}

/// What evaluations wrote: summed with `+=` over settle rounds, drain
/// transactions and sweeps, and part of an update's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluated {
    pub runs_created: usize,
    pub runs_queued: usize,
    /// Backlog rows evaluated (and deleted).
    pub backlog_evaluated: usize,
    /// The run requests written, each with what finds it
    /// ([`crate::relay::PublishQueue::submit_requests`], or
    /// [`crate::relay::PublishQueue::submit_handed`] when born leased).
    pub requests: Vec<RequestKey>,
    pub queued_run_ids: Vec<RunId>,
    /// Metrics the first evaluation left with a run waiting for other
    /// datasets (kept, not summed: later rounds see the same metrics).
    pub runs_pending: usize,
}

crate::tally::tally!(Evaluated {
    runs_created,
    runs_queued,
    backlog_evaluated,
    requests,
    queued_run_ids;
    keep: runs_pending
});

/// One run after the evaluation, before it is written.
struct Decided<'m> {
    metric: &'m LockedMetric,
    run_id: RunId,
    created: bool,
    slots: Vec<Slot>,
    changed: Vec<usize>,
    /// When requested: at what time, what caused it, what it went without.
    requested: Option<(DateTime<Utc>, &'m Origin, Degraded)>,
    /// Under a policy or a hold: its timers and when to ask again (written
    /// only then; a run under the default rule has no timer row).
    timers: Option<(Timers, Option<DateTime<Utc>>)>,
    /// Updates folded in while it waited, with when.
    folded: Vec<(UpdateId, DateTime<Utc>)>,
    /// An existing run with a timer row (it may have folded updates before).
    had_timers: bool,
}

impl Decided<'_> {
    fn degraded(&self) -> Option<&Degraded> {
        self.requested
            .as_ref()
            .map(|(_, _, d)| d)
            .filter(|d| d.is_degraded())
    }
}

/// The cause of a run the clock requested: no update, no trace.
static NO_ORIGIN: Origin = Origin {
    traceparent: None,
    source_sent_at: None,
};

/// An update waiting to be evaluated for a metric, with what caused it.
struct Pending<'a> {
    update: &'a UsedUpdate,
    origin: &'a Origin,
}

fn received(u: &UsedUpdate) -> Received {
    Received {
        update_id: u.update_id.clone(),
        at: u.created_at,
    }
}

/// Rounds of [`settle`] after the first: bounds how long the metrics stay
/// held when other transactions keep adding to their backlog.
const SETTLE_ROUNDS: usize = 3;

/// [`evaluate`], then the backlog rows other transactions committed for these
/// metrics meanwhile (each statement of a transaction sees the rows committed
/// before it starts), so that they are taken now rather than by a separate
/// transaction after the commit. Rows committed after the last look are
/// taken by the look after the commit ([`super::backlog::drain`]).
///
/// `read` are reads made in the round trip of the claim
/// ([`Reads::of`] behind the claim); the first round uses them when they cover every
/// one of `metrics`, and reads again otherwise.
pub(super) async fn settle(
    tx: &Transaction<'_>,
    ctx: &Context,
    metrics: &[LockedMetric],
    own: Option<OwnUpdate<'_>>,
    read: Option<Reads>,
) -> Result<Evaluated, StoreError> {
    let ids: Vec<MetricId> = metrics.iter().map(|m| m.id.clone()).collect();
    let read = read.filter(|r| dependents::covers(&r.metrics, &ids));
    let (mut total, mut more) = evaluate(tx, ctx, metrics, own, &ids, read).await?;
    for round in 1..=SETTLE_ROUNDS {
        if more.is_empty() {
            break;
        }
        let subset: Vec<LockedMetric> = metrics
            .iter()
            .filter(|m| more.binary_search(&m.id).is_ok())
            .cloned()
            .collect();
        // The last round's writes look no further.
        let check: &[MetricId] = if round < SETTLE_ROUNDS { &ids } else { &[] };
        let (done, next) = evaluate(tx, ctx, &subset, None, check, None).await?;
        total += done;
        more = next;
    }
    Ok(total)
}

/// Claims these metrics without waiting and settles their backlog; the
/// backlog of those found disabled is discarded. Returns the ids claimed
/// (disabled ones included) and what was evaluated. Metrics another
/// transaction holds are left to it.
pub(super) async fn claim_and_settle(
    tx: &Transaction<'_>,
    ctx: &Context,
    ids: &[MetricId],
) -> Result<(Vec<MetricId>, Evaluated), StoreError> {
    let (locked, disabled) = catalog::claim_metrics(tx, ids).await?;
    backlog::discard(tx, &disabled).await?;
    let done = settle(tx, ctx, &locked, None, None).await?;
    let mut claimed: Vec<MetricId> = locked.into_iter().map(|m| m.id).collect();
    claimed.extend(disabled);
    Ok((claimed, done))
}

/// Evaluates `metrics` (from `read` when given, which covers them), then
/// looks which of `check` (metrics this transaction holds) have backlog rows
/// committed meanwhile, in the round trip of the writes.
async fn evaluate(
    tx: &Transaction<'_>,
    ctx: &Context,
    metrics: &[LockedMetric],
    own: Option<OwnUpdate<'_>>,
    check: &[MetricId],
    read: Option<Reads>,
) -> Result<(Evaluated, Vec<MetricId>), StoreError> {
    if metrics.is_empty() {
        return Ok((Evaluated::default(), Vec::new()));
    }
    let reads = match read {
        Some(r) => r,
        None => {
            let ids: Vec<MetricId> = metrics.iter().map(|m| m.id.clone()).collect();
            Reads::of(tx, ids, own.as_ref().map(|o| &o.update.update_id)).await?
        }
    };
    let decisions = decide(metrics, &reads, own.as_ref(), ctx.now());
    let complete: Vec<&Decided> = decisions
        .runs
        .iter()
        .filter(|d| d.requested.is_some())
        .collect();
    let earlier: Vec<&RunId> = complete
        .iter()
        .filter(|d| d.had_timers)
        .map(|d| &d.run_id)
        .collect();
    let folded_before = pending::folded_of(tx, &earlier).await?;
    let requests = recipes(ctx, &complete, &folded_before)?;
    let keys = update_set_keys(&decisions.runs);
    let degraded: Vec<Option<serde_json::Value>> = decisions
        .runs
        .iter()
        .map(|d| d.degraded().map(degraded_json))
        .collect();
    let plan = EvaluationWrites {
        requests,
        lease: ctx.publish_lease,
        check_backlog: check,
        ..plan(&decisions, &keys, &degraded)
    };
    let written = plan.execute(tx).await?;
    let done = Evaluated {
        runs_created: written.runs_created as usize,
        runs_queued: complete.len(),
        runs_pending: decisions.runs_pending,
        backlog_evaluated: decisions.backlog_evaluated.len(),
        requests: written.requests,
        queued_run_ids: complete.iter().map(|d| d.run_id.clone()).collect(),
    };
    Ok((done, written.with_backlog))
}

/// What one round trip reads for the metrics being evaluated: valid for
/// metrics this transaction held before the reads ran.
pub(super) struct Reads {
    /// The metrics read, sorted.
    metrics: Vec<MetricId>,
    open: HashMap<MetricId, pending::OpenPending>,
    sources: HashMap<MetricId, SeriesSources>,
    inputs: backlog::Inputs,
}

impl Reads {
    /// Reads `metrics`, the update `except` (the transaction's own) left out
    /// of their inputs. An update's receipt pipelines it behind its claim,
    /// for the metrics the claim is guessed to lock: the server runs it
    /// after the claim, so what the claim locks is held when it is read.
    pub(super) async fn of(
        tx: &Transaction<'_>,
        mut metrics: Vec<MetricId>,
        except: Option<&UpdateId>,
    ) -> Result<Reads, StoreError> {
        metrics.sort();
        let (open, sources, inputs) = futures::try_join!(
            pending::open_runs(tx, &metrics),
            catalog::series_sources(tx, &metrics),
            backlog::inputs(tx, &metrics, except)
        )?;
        Ok(Reads {
            metrics,
            open: open.into_iter().map(|o| (o.metric_id.clone(), o)).collect(),
            sources,
            inputs,
        })
    }
}

/// The runs an evaluation decided, and the backlog rows it consumed.
struct Decisions<'m> {
    runs: Vec<Decided<'m>>,
    backlog_evaluated: Vec<backlog::Evaluated<'m>>,
    /// Metrics left with a run waiting for other datasets.
    runs_pending: usize,
}

/// Each metric's backlog in update order, then the own update, through the
/// pure rules of [`metric_evaluation`], then the policy once more at `now`.
fn decide<'m>(
    metrics: &'m [LockedMetric],
    reads: &'m Reads,
    own: Option<&OwnUpdate<'m>>,
    now: DateTime<Utc>,
) -> Decisions<'m> {
    let mut out = Decisions {
        runs: Vec::new(),
        backlog_evaluated: Vec::new(),
        runs_pending: 0,
    };
    for m in metrics {
        let backlog = reads
            .inputs
            .backlog
            .get(&m.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut queue: Vec<Pending> = backlog
            .iter()
            .map(|e| Pending {
                update: &e.update,
                origin: &e.origin,
            })
            .collect();
        out.backlog_evaluated
            .extend(backlog.iter().map(|e| backlog::Evaluated {
                metric_id: &m.id,
                update_id: &e.update.update_id,
            }));
        if let Some(o) = own {
            queue.push(Pending {
                update: o.update,
                origin: o.origin,
            });
        }
        let open = reads.open.get(&m.id);
        let arrivals: Vec<Arrival> = queue
            .iter()
            .map(|p| Arrival {
                dataset_id: p.update.dataset_id.clone(),
                update: received(p.update),
            })
            .collect();
        let timed = m.timed();
        for run in metric_evaluation::evaluate(state_of(m, open, reads), &arrivals, now) {
            out.runs_pending += usize::from(run.requested.is_none());
            let timers = match (&run.wait, timed) {
                (Some((until, _)), true) => Some((run.timers.clone(), *until)),
                _ => None,
            };
            out.runs.push(Decided {
                metric: m,
                run_id: match (open, run.existing) {
                    (Some(o), true) => o.run_id.clone(),
                    _ => RunId::generate(),
                },
                created: !run.existing,
                had_timers: run.existing && open.is_some_and(|o| o.timed),
                changed: run.changed,
                slots: run.slots,
                timers,
                folded: run
                    .folded
                    .iter()
                    .map(|&i| {
                        (
                            queue[i].update.update_id.clone(),
                            queue[i].update.created_at,
                        )
                    })
                    .collect(),
                requested: run.requested.map(|r| {
                    let origin = r.by.map_or(&NO_ORIGIN, |i| queue[i].origin);
                    (r.at, origin, r.degraded)
                }),
            });
        }
    }
    out
}

/// A metric's state before its arrivals: its open run, required datasets
/// and the newest update of each already evaluated.
fn state_of(m: &LockedMetric, open: Option<&pending::OpenPending>, reads: &Reads) -> MetricState {
    MetricState {
        open: open.map(|o| o.slots.clone()),
        open_timers: open.map(|o| o.timers.clone()).unwrap_or_default(),
        policy: m.policy.clone(),
        timing: m.timing.clone(),
        required: reads
            .sources
            .get(&m.id)
            .map(SeriesSources::required_datasets)
            .unwrap_or_default(),
        required_days: m.required_days,
        newest: reads
            .inputs
            .newest(&m.id)
            .iter()
            .map(|(d, u)| (d.clone(), received(u)))
            .collect(),
    }
}

/// The outbox rows of the runs requested, with their trigger notes.
fn recipes<'m>(
    ctx: &Context,
    complete: &[&'m Decided<'m>],
    folded_before: &HashMap<RunId, Vec<UpdateId>>,
) -> Result<Vec<NewMessage<'m>>, StoreError> {
    complete
        .iter()
        .map(|d| {
            let (requested_at, origin, _) = d
                .requested
                .as_ref()
                .ok_or_else(|| StoreError::Corrupt(format!("run {} is not complete", d.run_id)))?;
            let r = request::RecipeFor {
                run_id: &d.run_id,
                metric_code: &d.metric.code,
                requested_at: *requested_at,
                trigger: trigger_note(d, folded_before.get(&d.run_id)),
                origin,
            };
            Ok(request::recipe(r, &ctx.settings))
        })
        .collect()
}

/// What a request under a policy says beyond the reference contract: the
/// inputs it went without and the updates it folded in (the reference
/// runner ignores the field).
fn trigger_note(d: &Decided<'_>, folded_before: Option<&Vec<UpdateId>>) -> Option<TriggerNote> {
    let degraded = d.degraded();
    let before = folded_before.map(Vec::as_slice).unwrap_or_default();
    if degraded.is_none() && d.folded.is_empty() && before.is_empty() {
        return None;
    }
    let ids = |v: &[crate::domain::ids::DatasetId]| v.iter().map(|x| x.to_string()).collect();
    Some(TriggerNote {
        degraded: degraded.is_some(),
        stale: degraded.map(|g| ids(&g.stale)).unwrap_or_default(),
        missing: degraded.map(|g| ids(&g.missing)).unwrap_or_default(),
        folded: before
            .iter()
            .chain(d.folded.iter().map(|(u, _)| u))
            .map(ToString::to_string)
            .collect(),
    })
}

/// How a degraded run's shortfall is stored (`metric_runs.degraded`).
fn degraded_json(d: &Degraded) -> serde_json::Value {
    serde_json::json!({"stale": d.stale, "missing": d.missing})
}

/// The updates a decided run received, in slot (dataset) order.
fn inputs_of<'a>(d: &'a Decided<'a>) -> impl Iterator<Item = &'a UpdateId> + 'a {
    d.slots
        .iter()
        .filter_map(|s| s.received.as_ref().map(|r| &r.update_id))
}

/// A requested run's first two inputs, kept on its row (migrations V11
/// and V13); the others go to `run_extra_inputs`.
fn row_inputs<'a>(d: &'a Decided<'a>) -> RowInputs<'a> {
    let mut inputs = inputs_of(d);
    RowInputs {
        first: inputs.next(),
        second: inputs.next(),
    }
}

/// The update-set key of each decided run that is requested.
fn update_set_keys(runs: &[Decided<'_>]) -> Vec<Option<String>> {
    runs.iter()
        .map(|d| d.requested.is_some().then(|| update_set_key(&d.slots)))
        .collect()
}

/// The writes of the decisions (all but the requests, built apart).
fn plan<'a>(
    decisions: &'a Decisions<'a>,
    keys: &'a [Option<String>],
    degraded: &'a [Option<serde_json::Value>],
) -> EvaluationWrites<'a> {
    let runs = &decisions.runs;
    let with_keys = || {
        runs.iter()
            .zip(keys)
            .zip(degraded)
            .map(|((d, k), g)| (d, k.as_deref(), g.as_ref()))
    };
    let slot_rows = |d: &'a Decided<'a>, slots: Vec<&'a Slot>| {
        slots.into_iter().map(move |slot| pending::SlotRow {
            run_id: &d.run_id,
            slot,
        })
    };
    EvaluationWrites {
        queue: with_keys()
            .filter(|(d, _, _)| !d.created)
            .filter_map(|(d, key, degraded)| {
                key.map(|update_set_key| runs::Completed {
                    run_id: &d.run_id,
                    update_set_key,
                    degraded,
                    inputs: row_inputs(d),
                })
            })
            .collect(),
        create: with_keys()
            .filter(|(d, _, _)| d.created)
            .map(|(d, key, degraded)| CreatedRun {
                id: &d.run_id,
                metric_id: &d.metric.id,
                metric_code: &d.metric.code,
                queued_with_key: key,
                degraded,
                inputs: match d.requested {
                    Some(_) => row_inputs(d),
                    None => RowInputs::default(),
                },
            })
            .collect(),
        // A run complete at creation never waits: it gets no pending rows
        // (its inputs are recorded like every requested run's: the first two
        // on the run row, the others in run_extra_inputs).
        new_slots: runs
            .iter()
            .filter(|d| d.created && d.requested.is_none())
            .flat_map(|d| slot_rows(d, d.slots.iter().collect()))
            .collect(),
        changed_slots: runs
            .iter()
            .filter(|d| !d.created)
            .flat_map(|d| slot_rows(d, d.changed.iter().map(|&i| &d.slots[i]).collect()))
            .collect(),
        uses: runs
            .iter()
            .filter(|d| d.requested.is_some())
            .flat_map(|d| {
                inputs_of(d).skip(2).map(move |update_id| runs::Use {
                    run_id: &d.run_id,
                    update_id,
                })
            })
            .collect(),
        requests: Vec::new(),
        lease: None,
        backlog_evaluated: decisions.backlog_evaluated.clone(),
        timers: runs
            .iter()
            .filter_map(|d| {
                d.timers
                    .as_ref()
                    .map(|(timers, decide_at)| pending::TimerRow {
                        run_id: &d.run_id,
                        metric_id: &d.metric.id,
                        timers,
                        decide_at: *decide_at,
                    })
            })
            .collect(),
        // A requested run's timers are done with, and so are those of a run
        // whose metric lost its policy or hold (else the sweep would find
        // them due forever); runs that never had any are not looked for.
        timers_done: runs
            .iter()
            .filter(|d| d.had_timers && (d.requested.is_some() || d.timers.is_none()))
            .map(|d| &d.run_id)
            .collect(),
        folded: runs
            .iter()
            .flat_map(|d| {
                d.folded
                    .iter()
                    .map(move |(update_id, at)| pending::FoldedRow {
                        run_id: &d.run_id,
                        update_id,
                        at: *at,
                    })
            })
            .collect(),
        cooled: runs
            .iter()
            .filter(|d| d.metric.policy.cooldown.is_some())
            .filter_map(|d| d.requested.as_ref().map(|(at, _, _)| (&d.metric.id, *at)))
            .collect(),
        check_backlog: &[],
    }
}
