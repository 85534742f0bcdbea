//! Evaluating metrics this transaction holds (docs/semantics.md): each
//! metric's backlog in update order, then the transaction's own update if it
//! has one. Shared by an update's own transaction and the backlog drain.
//!
//! A pure core and a thin shell. The shell (this module) reads and writes;
//! what each metric's pending run becomes is decided by [`decide`] and
//! turned into one typed plan of writes by [`plan`], both pure and
//! table-tested.
//!
//! Round trips: (1) read the metrics' pending runs, sources, backlog and the
//! newest evaluated update of each required dataset (for an update's own
//! metrics, in the round trip of its claim when the guess of them holds:
//! [`claim_then_read`]), (2) the updates earlier folded into a run under a
//! policy (only then), (3) send all writes in one pipeline, the outbox rows
//! as recipes (`app::request`), and behind them the look for backlog rows
//! committed meanwhile ([`settle`]).

mod decide;
mod plan;

use std::collections::HashMap;

use super::{dependents, Context};
use crate::domain::ids::{DatasetId, MetricId, RunId, UpdateId};
use crate::domain::run_request::UsedUpdate;
use crate::store::catalog::{self, Claimed, LockedMetric, SeriesSources};
use crate::store::outbox::RequestKey;
use crate::store::requests::Origin;
use crate::store::{backlog, pending, StoreError, Transaction};
use decide::{Arrived, MetricFacts};
use plan::PlanParts;

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
    /// ([`crate::outbox::PublishQueue::submit_requests`], or
    /// [`crate::outbox::PublishQueue::submit_handed`] when born leased).
    pub requests: Vec<RequestKey>,
    pub queued_run_ids: Vec<RunId>,
    /// Metrics the first evaluation left with a run waiting for other
    /// datasets (kept, not summed: later rounds see the same metrics).
    pub runs_pending: usize,
}

crate::ground::tally::tally!(Evaluated {
    runs_created,
    runs_queued,
    backlog_evaluated,
    requests,
    queued_run_ids;
    keep: runs_pending
});

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
/// ([`claim_then_read`]); the first round uses them when they cover every
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
    let first = Round {
        metrics,
        own,
        check: &ids,
        read,
    };
    let (mut total, mut more) = evaluate(tx, ctx, first).await?;
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
        let again = Round {
            metrics: &subset,
            own: None,
            check,
            read: None,
        };
        let (done, next) = evaluate(tx, ctx, again).await?;
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

/// One evaluation: `metrics` (read anew unless `read` covers them), the
/// transaction's own update after their backlog, then the look for backlog
/// rows of `check` committed meanwhile.
struct Round<'a> {
    metrics: &'a [LockedMetric],
    own: Option<OwnUpdate<'a>>,
    check: &'a [MetricId],
    read: Option<Reads>,
}

/// Evaluates one [`Round`]; returns what it wrote and the metrics of `check`
/// with a backlog after the writes.
async fn evaluate(
    tx: &Transaction<'_>,
    ctx: &Context,
    round: Round<'_>,
) -> Result<(Evaluated, Vec<MetricId>), StoreError> {
    let Round {
        metrics,
        own,
        check,
        read,
    } = round;
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
    let own = own.map(|o| Arrived {
        update: o.update,
        origin: o.origin,
    });
    let facts = reads.facts(metrics);
    let decisions = decide::decide(&facts, own, ctx.now(), RunId::generate);
    let folded_before = pending::folded_of(tx, &plan::folded_before_wanted(&decisions)).await?;
    let requests = plan::recipes(&ctx.settings, &decisions, &folded_before);
    let writes = plan::plan(
        &decisions,
        PlanParts {
            requests,
            lease: ctx.publish_lease,
            check_backlog: check,
        },
    );
    let written = writes.execute(tx).await?;
    let requested: Vec<RunId> = decisions.requested().map(|d| d.run_id.clone()).collect();
    let done = Evaluated {
        runs_created: written.runs_created as usize,
        runs_queued: requested.len(),
        runs_pending: decisions.runs_pending,
        backlog_evaluated: decisions.backlog_evaluated.len(),
        requests: written.requests,
        queued_run_ids: requested,
    };
    Ok((done, written.with_backlog))
}

/// What one round trip reads for the metrics being evaluated: valid for
/// metrics this transaction held before the reads ran.
pub struct Reads {
    /// The metrics read, sorted.
    metrics: Vec<MetricId>,
    open: HashMap<MetricId, pending::OpenPending>,
    sources: HashMap<MetricId, SeriesSources>,
    inputs: backlog::Inputs,
}

impl Reads {
    /// Reads `metrics`, the update `except` (the transaction's own) left out
    /// of their inputs. Only valid for metrics this transaction holds: see
    /// [`claim_then_read`] for reading in the round trip of their claim.
    async fn of(
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

    /// The facts of each of `metrics` (which these reads cover).
    fn facts<'m>(&'m self, metrics: &'m [LockedMetric]) -> Vec<MetricFacts<'m>> {
        metrics
            .iter()
            .map(|m| MetricFacts {
                metric: m,
                open: self.open.get(&m.id),
                required: self
                    .sources
                    .get(&m.id)
                    .map(SeriesSources::required_datasets)
                    .unwrap_or_default(),
                newest: self.inputs.newest(&m.id),
                backlog: self
                    .inputs
                    .backlog
                    .get(&m.id)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// Claims the metrics that depend on `dataset` without waiting (`SKIP
/// LOCKED`) and, when `guessed` names the metrics the claim is expected to
/// lock, reads their state in the same round trip, sent after the claim: the
/// server runs a pipeline's statements in the order they arrive, so what the
/// claim locks is held when it is read. The order is this function's whole
/// purpose (`tests/it/claim_order.rs` fails when the reads go first: the
/// claim is prepared before, so that its preparation cannot let them); the
/// reads are used only when the guess covers what was locked
/// ([`dependents::covers`]).
pub async fn claim_then_read(
    tx: &Transaction<'_>,
    dataset: &DatasetId,
    guessed: Option<&[MetricId]>,
    except: Option<&UpdateId>,
) -> Result<(Claimed, Option<Reads>), StoreError> {
    catalog::prepare_claim(tx).await?;
    let claim = catalog::claim_dependent_metrics(tx, dataset);
    let read = async {
        match guessed {
            Some(ids) => Reads::of(tx, ids.to_vec(), except).await.map(Some),
            None => Ok(None),
        }
    };
    // Polled in argument order: the claim is sent first.
    futures::try_join!(claim, read)
}
