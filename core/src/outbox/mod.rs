//! The outbox: how what a transaction commits is published after the
//! commit, never inside it (docs/semantics.md, "Publishing").
//!
//! A message (a run request or an alert) is written in the transaction that
//! decides it: a requested run's request on its own row, anything else as a
//! row of `outbox_messages` (`store::outbox` reads and marks both). It then
//! reaches the publisher by one of three paths, all ending in
//! [`Relay`]'s publish round (publish, then mark published or failed with
//! capped exponential backoff, in a transaction that follows the network
//! call):
//!
//! - **handed**: a projection update's run requests are written leased to
//!   the worker's [`PublishQueue`] (born leased: one attempt, not due before
//!   the lease ends), and the queue publishes them right after the commit,
//!   without a claim;
//! - **submitted**: other commits (retries, alerts, sweeps) submit what they
//!   wrote by id or run key, and the queue claims and publishes them;
//! - **swept**: [`Relay::sweep_once`], every second on every replica,
//!   claims whatever is due (a crash, a failed publish, a full queue).
//!
//! **The lease rule.** A claim leases a row for [`RelayConfig::lease`]; a row
//! is the sweeper's once its lease ends. So that a sweeper never claims a row
//! while it is being published on a handed path, the queue takes a handed row
//! only with more than half its lease left and bounds each publish round by
//! half the lease ([`half_lease`]): a round that outlasts it gives up, and the
//! row's lease ends before anyone else may take it. The same bound keeps a
//! hung broker call from holding the consumer's backpressure gate shut.

mod queue;
#[cfg(feature = "test-support")]
mod recording;
mod relay;

use std::time::Duration;

pub use crate::messaging::publisher::{PublishError, Publisher};
pub use queue::PublishQueue;
#[cfg(feature = "test-support")]
pub use recording::RecordingPublisher;
pub use relay::{Relay, RelayConfig, RelayReport};

/// The lease rule's bound (see the module's documentation): a handed row is
/// taken only with more than this left of its lease, and a publish round
/// lasts at most this long.
pub fn half_lease(lease: Duration) -> Duration {
    lease / 2
}
