//! The dependent metrics each dataset's last update claimed, kept by a
//! process so that the next update of that dataset reads their state in the
//! round trip of its claim (docs/semantics.md, "Reads behind the claim").
//!
//! Only a guess: the claim stays the truth. Reads made for a guess are used
//! only when the guess holds every metric the claim locked; otherwise the
//! evaluation reads again for what was locked. Metrics guessed and not
//! locked (held elsewhere, disabled, no longer dependent) are read and left
//! aside. A catalog apply therefore costs at most one round trip per dataset
//! whose dependents it changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::ids::{DatasetId, MetricId};

/// Datasets remembered at most; past it the guesses start again from none
/// (each dataset's next update claims without a guess once).
const MAX_DATASETS: usize = 10_000;

/// Each dataset's dependent metrics as its last claim saw them.
#[derive(Debug, Default)]
pub struct DependentsGuess {
    by_dataset: Mutex<HashMap<DatasetId, Arc<[MetricId]>>>,
}

impl DependentsGuess {
    /// The metrics the last claim for `dataset` found, sorted; `None` before
    /// any.
    pub fn guess(&self, dataset: &DatasetId) -> Option<Arc<[MetricId]>> {
        self.lock().get(dataset).cloned()
    }

    /// Remembers what a claim for `dataset` found: the metrics it locked and
    /// those it skipped.
    pub fn learn<'a>(&self, dataset: &DatasetId, found: impl IntoIterator<Item = &'a MetricId>) {
        let mut ids: Vec<MetricId> = found.into_iter().cloned().collect();
        ids.sort();
        ids.dedup();
        let mut map = self.lock();
        if map.len() >= MAX_DATASETS && !map.contains_key(dataset) {
            map.clear();
        }
        match map.get(dataset) {
            Some(known) if **known == *ids => {}
            _ => {
                map.insert(dataset.clone(), ids.into());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DatasetId, Arc<[MetricId]>>> {
        // A panic while the lock is held cannot leave the map half-changed.
        self.by_dataset.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether reads made for `guessed` (sorted) cover every one of `locked`.
pub fn covers<'a>(guessed: &[MetricId], locked: impl IntoIterator<Item = &'a MetricId>) -> bool {
    locked.into_iter().all(|m| guessed.binary_search(m).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<MetricId> {
        v.iter().map(|s| MetricId::from(s.to_string())).collect()
    }

    #[test]
    fn a_guess_covers_the_locked_metrics_only_when_it_holds_each() {
        // (guessed, locked, covers)
        let cases: [(&[&str], &[&str], bool); 7] = [
            (&[], &[], true),
            (&["a", "b"], &[], true),
            (&["a", "b"], &["a", "b"], true),
            (&["a", "b", "c"], &["b"], true),
            (&["a", "b"], &["a", "c"], false),
            (&[], &["a"], false),
            (&["b"], &["a"], false),
        ];
        for (guessed, locked, want) in cases {
            let (g, l) = (ids(guessed), ids(locked));
            assert_eq!(covers(&g, &l), want, "{guessed:?} / {locked:?}");
        }
    }

    #[test]
    fn what_a_claim_found_is_the_next_guess_sorted_and_once_each() {
        let d = DatasetId::from("ds".to_string());
        let other = DatasetId::from("other".to_string());
        let g = DependentsGuess::default();
        assert!(g.guess(&d).is_none(), "no guess before a claim");
        // (what the claim found, the guess after it)
        let cases: [(&[&str], &[&str]); 4] = [
            (&["b", "a"], &["a", "b"]),
            (&["c", "a", "c"], &["a", "c"]),
            (&[], &[]),
            (&["a"], &["a"]),
        ];
        for (found, want) in cases {
            g.learn(&d, &ids(found));
            assert_eq!(g.guess(&d).as_deref(), Some(&ids(want)[..]), "{found:?}");
        }
        assert!(
            g.guess(&other).is_none(),
            "one dataset's claim says nothing of another"
        );
    }

    #[test]
    fn past_its_bound_the_guesses_start_again() {
        let g = DependentsGuess::default();
        let d = |i: usize| DatasetId::from(format!("ds{i}"));
        for i in 0..MAX_DATASETS {
            g.learn(&d(i), &ids(&["m"]));
        }
        g.learn(&d(0), &ids(&["m", "n"]));
        assert!(
            g.guess(&d(1)).is_some(),
            "a known dataset does not clear the rest"
        );
        g.learn(&d(MAX_DATASETS), &ids(&["m"]));
        assert!(
            g.guess(&d(1)).is_none(),
            "a new one past the bound clears them"
        );
        assert!(g.guess(&d(MAX_DATASETS)).is_some());
        assert_eq!(g.lock().len(), 1);
    }
}
