//! The writes of one metric evaluation (`app::evaluate`), as one typed plan:
//! each part is named, and [`EvaluationWrites::execute`] destructures the
//! plan, so a part added here does not compile until it is written. The
//! parts are pipelined in one round trip, in an order where each statement
//! only needs rows of the ones before it: a metric's old pending run is
//! queued before a new one is inserted (one pending run per metric), runs
//! exist before their pending rows, uses and requests. Behind them goes the
//! look for backlog rows other transactions committed meanwhile for the
//! metrics held (`app::evaluate::settle`), so that it costs no round trip
//! of its own.

use super::runs::{Completed, CreatedRun, Use};
use chrono::{DateTime, Utc};

use super::{backlog, outbox, pending, runs, trigger_policies, StoreResult, Transaction};
use crate::domain::ids::{MetricId, OutboxId, RunId};

/// Everything one evaluation writes.
#[derive(Default)]
pub struct EvaluationWrites<'a> {
    /// Pending runs the evaluation completed: `pending_dependencies → queued`.
    pub queue: Vec<Completed<'a>>,
    /// New runs, queued at once when complete, else pending.
    pub create: Vec<CreatedRun<'a>>,
    /// The pending rows of new runs that still wait.
    pub new_slots: Vec<pending::SlotRow<'a>>,
    /// Pending rows of existing runs that received an update.
    pub changed_slots: Vec<pending::SlotRow<'a>>,
    /// The updates each requested run uses.
    pub uses: Vec<Use<'a>>,
    /// The run requests, to the outbox.
    pub requests: Vec<super::requests::NewMessage<'a>>,
    /// Set when the caller's relay publishes the requests at the commit:
    /// their rows are born leased to it for this long
    /// ([`crate::app::Context::publish_lease`]).
    pub lease: Option<std::time::Duration>,
    /// Backlog rows evaluated, to delete.
    pub backlog_evaluated: Vec<backlog::Evaluated<'a>>,
    /// Timers of runs left waiting under a policy or a hold.
    pub timers: Vec<pending::TimerRow<'a>>,
    /// Timers of runs requested, to drop.
    pub timers_done: Vec<&'a RunId>,
    /// Updates runs folded in while they waited.
    pub folded: Vec<pending::FoldedRow<'a>>,
    /// Metrics with a cooldown that had a run requested, and when.
    pub cooled: Vec<(&'a MetricId, DateTime<Utc>)>,
    /// Metrics the transaction holds whose backlog is looked at after these
    /// writes ([`Written::with_backlog`]).
    pub check_backlog: &'a [MetricId],
}

/// What the plan wrote that its caller needs.
#[derive(Debug, Default)]
pub struct Written {
    /// The requests' keys, in the order given.
    pub requests: Vec<outbox::RequestKey>,
    pub runs_created: u64,
    /// Those of [`EvaluationWrites::check_backlog`] with a backlog row after
    /// the writes, in id order: rows other transactions committed since the
    /// evaluation read theirs.
    pub with_backlog: Vec<MetricId>,
}

impl EvaluationWrites<'_> {
    /// Prepares every statement first (so that the pipeline never waits for
    /// a preparation, and nothing overtakes an earlier statement on a
    /// connection's first use), then sends them all.
    pub async fn execute(&self, tx: &Transaction<'_>) -> StoreResult<Written> {
        let Self {
            queue,
            create,
            new_slots,
            changed_slots,
            uses,
            requests,
            lease,
            backlog_evaluated,
            timers,
            timers_done,
            folded,
            cooled,
            check_backlog,
        } = self;
        for sql in [
            runs::QUEUE_PENDING,
            runs::INSERT_CREATED,
            pending::INSERT_ROWS,
            pending::UPDATE_ROWS,
            runs::RECORD_USED,
            backlog::REMOVE,
            backlog::WITH_BACKLOG,
        ] {
            tx.prepare_cached(sql).await?;
        }
        // Only metrics with a policy or a hold write these: prepared when used.
        let timed = !(timers.is_empty() && timers_done.is_empty() && folded.is_empty());
        if timed || !cooled.is_empty() {
            for sql in [
                pending::UPSERT_TIMERS,
                pending::DELETE_TIMERS,
                pending::INSERT_FOLDED,
                trigger_policies::MARK_REQUESTED,
            ] {
                tx.prepare_cached(sql).await?;
            }
        }
        // A requested run carries its request on its row (V14): a request
        // of a run the plan neither creates nor queues is a bug, refused
        // below before anything commits.
        let on_rows = runs::RequestColumns::new(requests, *lease);
        let (
            queued,
            (runs_created, created),
            _new_rows,
            _changed_rows,
            _used_rows,
            _removed,
            with_backlog,
        ) = futures::try_join!(
            runs::queue_pending(tx, queue, &on_rows),
            runs::insert_created(tx, create, &on_rows),
            pending::insert_rows(tx, new_slots),
            pending::update_rows(tx, changed_slots),
            runs::record_used(tx, uses),
            backlog::remove(tx, backlog_evaluated),
            backlog::held_with_backlog(tx, check_backlog),
        )?;
        let mut by_run: std::collections::HashMap<RunId, OutboxId> =
            queued.into_iter().chain(created).collect();
        let keys = requests
            .iter()
            .map(|r| match by_run.remove(r.run_id) {
                Some(id) => Ok(outbox::RequestKey {
                    id,
                    run: r.run_id.clone(),
                }),
                None => Err(super::StoreError::Corrupt(format!(
                    "the request of run {} was not written",
                    r.run_id
                ))),
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // After the runs exist (the rows below point at them).
        futures::try_join!(
            pending::upsert_timers(tx, timers),
            pending::delete_timers(tx, timers_done),
            pending::insert_folded(tx, folded),
            trigger_policies::mark_requested(tx, cooled),
        )?;
        Ok(Written {
            requests: keys,
            runs_created,
            with_backlog,
        })
    }
}
