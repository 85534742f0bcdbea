//! Which metrics' newest outputs are stale, and why: the store's facts
//! judged by `domain::staleness`, read a page at a time.

use std::collections::HashMap;
use std::ops::ControlFlow;

use crate::domain::staleness::{judge, ReasonKind, Staleness};
use crate::store::{staleness, Pool, StoreError};

/// Metrics read per statement.
const PAGE: i64 = 500;

/// Judges every metric after `after`, in code order, until `each` breaks.
async fn each_judged(
    pool: &Pool,
    mut after: Option<String>,
    mut each: impl FnMut(String, Staleness) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    loop {
        let page = staleness::page(&client, after.as_deref(), PAGE).await?;
        let exhausted = (page.len() as i64) < PAGE;
        after = page.last().map(|(code, _)| code.clone());
        for (code, facts) in page {
            if each(code, judge(&facts)).is_break() {
                return Ok(());
            }
        }
        if exhausted {
            return Ok(());
        }
    }
}

/// Up to `limit` metrics after `after` (code order) whose output is stale,
/// for `reason` when given.
pub async fn stale(
    pool: &Pool,
    reason: Option<ReasonKind>,
    after: Option<String>,
    limit: usize,
) -> Result<Vec<(String, Staleness)>, StoreError> {
    let mut out = Vec::new();
    each_judged(pool, after, |code, s| {
        let wanted = match reason {
            Some(k) => s.has(k),
            None => matches!(s, Staleness::Stale(_)),
        };
        if wanted {
            out.push((code, s));
        }
        if out.len() >= limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await?;
    Ok(out)
}

/// How many metrics are stale for each reason (a metric counts under each
/// of its reasons), and in all.
pub async fn counts(pool: &Pool) -> Result<(HashMap<ReasonKind, i64>, i64), StoreError> {
    let mut by: HashMap<ReasonKind, i64> = ReasonKind::ALL.into_iter().map(|k| (k, 0)).collect();
    let mut total = 0;
    each_judged(pool, None, |_, s| {
        if let Staleness::Stale(reasons) = &s {
            total += 1;
            for r in reasons {
                *by.entry(r.kind()).or_default() += 1;
            }
        }
        ControlFlow::Continue(())
    })
    .await?;
    Ok((by, total))
}
