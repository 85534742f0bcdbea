//! How a projection update changes a metric's pending run (docs/semantics.md),
//! decided in memory from the run's rows and the newest update of each
//! dataset; the store writes the result.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::freshness::is_fresh;
use super::ids::{DatasetId, UpdateId};

/// A dataset update as far as freshness is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub update_id: UpdateId,
    /// The update's `created_at` (database clock).
    pub at: DateTime<Utc>,
}

/// One row of `metric_run_pending_datasets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub dataset_id: DatasetId,
    pub required_days: i32,
    pub received: Option<Received>,
}

/// Applies update `update` of dataset `dataset` to a run's rows: that
/// dataset's row takes it; every other row that is not received, or whose
/// update is no longer fresh at `now`, takes the newest fresh update of its
/// dataset if there is one, else becomes not received. A row whose input
/// does not need to be fresh (`wants_fresh` false: a context input, or any
/// input in mode `any`) takes its dataset's newest update whatever its age.
/// Returns the indices of the rows that changed.
pub fn absorb(
    slots: &mut [Slot],
    dataset: &DatasetId,
    update: &Received,
    newest: &HashMap<DatasetId, Received>,
    now: DateTime<Utc>,
    wants_fresh: impl Fn(&DatasetId) -> bool,
) -> Vec<usize> {
    let mut changed = Vec::new();
    for (i, slot) in slots.iter_mut().enumerate() {
        let next = if slot.dataset_id == *dataset {
            Some(update.clone())
        } else if !wants_fresh(&slot.dataset_id) {
            newest.get(&slot.dataset_id).cloned()
        } else {
            match &slot.received {
                Some(r) if is_fresh(r.at, now, slot.required_days) => continue,
                _ => newest
                    .get(&slot.dataset_id)
                    .filter(|n| is_fresh(n.at, now, slot.required_days))
                    .cloned(),
            }
        };
        if next != slot.received {
            slot.received = next;
            changed.push(i);
        }
    }
    changed
}

/// A short, fixed-size key for the set of updates a run uses; a unique index
/// on (metric, key) rules out two runs of a metric with the identical set.
pub fn update_set_key(slots: &[Slot]) -> String {
    let mut ids: Vec<&str> = slots
        .iter()
        .filter_map(|s| s.received.as_ref().map(|r| r.update_id.as_str()))
        .collect();
    ids.sort_unstable();
    let digest = Sha256::digest(ids.join(",").as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_complete(slots: &[Slot]) -> bool {
        !slots.is_empty() && slots.iter().all(|s| s.received.is_some())
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn rec(id: &str, at: &str) -> Received {
        Received {
            update_id: id.into(),
            at: t(at),
        }
    }

    fn slot(d: &str, days: i32, r: Option<Received>) -> Slot {
        Slot {
            dataset_id: d.into(),
            required_days: days,
            received: r,
        }
    }

    const NOW: &str = "2026-11-20T00:00:00Z";

    #[test]
    fn the_updated_dataset_takes_the_new_update_replacing_an_older_one() {
        let mut s = vec![
            slot("a", 7, Some(rec("old", "2026-11-19T00:00:00Z"))),
            slot("b", 7, None),
        ];
        let changed = absorb(
            &mut s,
            &DatasetId::new("a"),
            &rec("new", NOW),
            &HashMap::new(),
            t(NOW),
            |_| true,
        );
        assert_eq!(changed, vec![0]);
        assert_eq!(s[0].received.as_ref().unwrap().update_id, "new");
        assert!(!is_complete(&s));
    }

    #[test]
    fn missing_rows_take_the_newest_fresh_update_of_their_dataset() {
        let newest: HashMap<_, _> =
            [(DatasetId::new("b"), rec("b1", "2026-11-15T00:00:00Z"))].into();
        let mut s = vec![slot("a", 7, None), slot("b", 7, None)];
        absorb(
            &mut s,
            &DatasetId::new("a"),
            &rec("a1", NOW),
            &newest,
            t(NOW),
            |_| true,
        );
        assert!(is_complete(&s));
    }

    #[test]
    fn stale_rows_are_dropped_or_replaced() {
        let stale = rec("b0", "2026-11-01T00:00:00Z");
        let mut s = vec![slot("a", 7, None), slot("b", 7, Some(stale.clone()))];
        let newest: HashMap<_, _> = [(DatasetId::new("b"), stale)].into();
        let changed = absorb(
            &mut s,
            &DatasetId::new("a"),
            &rec("a1", NOW),
            &newest,
            t(NOW),
            |_| true,
        );
        assert_eq!(changed, vec![0, 1]);
        assert_eq!(s[1].received, None, "nothing fresh for b: not received");
        // required_days 0: never stale.
        let mut s = vec![
            slot("a", 0, None),
            slot("b", 0, Some(rec("b0", "2000-01-01T00:00:00Z"))),
        ];
        assert_eq!(
            absorb(
                &mut s,
                &DatasetId::new("a"),
                &rec("a1", NOW),
                &HashMap::new(),
                t(NOW),
                |_| true
            ),
            vec![0]
        );
        assert!(is_complete(&s));
    }

    #[test]
    fn fresh_received_rows_keep_their_update() {
        let kept = rec("b0", "2026-11-18T00:00:00Z");
        let newer: HashMap<_, _> =
            [(DatasetId::new("b"), rec("b9", "2026-11-19T00:00:00Z"))].into();
        let mut s = vec![slot("a", 7, None), slot("b", 7, Some(kept.clone()))];
        absorb(
            &mut s,
            &DatasetId::new("a"),
            &rec("a1", NOW),
            &newer,
            t(NOW),
            |_| true,
        );
        assert_eq!(s[1].received, Some(kept));
    }

    #[test]
    fn the_update_set_key_ignores_order() {
        let a = vec![
            slot("a", 7, Some(rec("1", NOW))),
            slot("b", 7, Some(rec("2", NOW))),
        ];
        let b = vec![
            slot("b", 7, Some(rec("2", NOW))),
            slot("a", 7, Some(rec("1", NOW))),
        ];
        assert_eq!(update_set_key(&a), update_set_key(&b));
        assert_eq!(update_set_key(&a).len(), 32);
    }
}
