//! Where the database's time goes during a benchmark: `pg_stat_activity`
//! sampled at an interval, each active backend's wait sorted into a class,
//! and the share of samples per class.
//!
//! The sampler is one query on its own connection every `interval`; at the
//! default 250 ms it costs well under 1% of a core (an earlier sampler that
//! forked `psql` ten times a second cut throughput by a fifth).

use std::fmt::Write as _;
use std::time::Duration;

use orchestrator_core::store::{stats, Pool};
use tokio_util::sync::CancellationToken;

/// What an active backend was doing when sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitClass {
    /// Waiting for another transaction's row lock (`Lock:transactionid`,
    /// `Lock:tuple`): the lock wall.
    RowLock,
    /// Any other heavyweight lock (relation, advisory, extension…).
    OtherLock,
    /// Lightweight locks (buffer mapping, WAL insertion, lock manager…).
    LwLock,
    /// Data-file and WAL reads, writes and fsyncs.
    Io,
    /// No wait event: running on a CPU (or queued for one).
    Cpu,
    /// Waiting for the client within a statement (pipelined protocol).
    Client,
    /// IPC, timeouts and anything else.
    Other,
}

impl WaitClass {
    pub const ALL: [WaitClass; 7] = [
        WaitClass::RowLock,
        WaitClass::OtherLock,
        WaitClass::LwLock,
        WaitClass::Io,
        WaitClass::Cpu,
        WaitClass::Client,
        WaitClass::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            WaitClass::RowLock => "row locks",
            WaitClass::OtherLock => "other locks",
            WaitClass::LwLock => "LWLock",
            WaitClass::Io => "I/O",
            WaitClass::Cpu => "CPU",
            WaitClass::Client => "client",
            WaitClass::Other => "other",
        }
    }

    /// Sorts one `pg_stat_activity` row's `wait_event_type` / `wait_event`.
    pub fn of(wait_event_type: Option<&str>, wait_event: Option<&str>) -> WaitClass {
        match (wait_event_type, wait_event) {
            (None, _) => WaitClass::Cpu,
            (Some("Lock"), Some("transactionid" | "tuple")) => WaitClass::RowLock,
            (Some("Lock"), _) => WaitClass::OtherLock,
            (Some("LWLock"), _) => WaitClass::LwLock,
            (Some("IO"), _) => WaitClass::Io,
            (Some("Client"), _) => WaitClass::Client,
            (Some(_), _) => WaitClass::Other,
        }
    }
}

/// Counts of sampled backends per class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitProfile {
    counts: [u64; WaitClass::ALL.len()],
    /// Snapshots taken (each counts every active backend once).
    pub snapshots: u64,
}

impl WaitProfile {
    pub fn add(&mut self, class: WaitClass) {
        self.counts[class as usize] += 1;
    }

    pub fn merge(&mut self, other: &WaitProfile) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.snapshots += other.snapshots;
    }

    /// Active-backend samples in all.
    pub fn samples(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The share of active-backend samples in `class`, 0.0 to 1.0 (0 when
    /// nothing was sampled).
    pub fn share(&self, class: WaitClass) -> f64 {
        match self.samples() {
            0 => 0.0,
            n => self.counts[class as usize] as f64 / n as f64,
        }
    }

    /// `row locks 12% · LWLock 3% · … (n samples)`, classes with no sample left out.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for class in WaitClass::ALL {
            if self.counts[class as usize] > 0 {
                if !out.is_empty() {
                    out.push_str(" · ");
                }
                let _ = write!(out, "{} {:.0}%", class.label(), self.share(class) * 100.0);
            }
        }
        if out.is_empty() {
            out.push_str("no active backend sampled");
        }
        let _ = write!(out, " ({} samples)", self.samples());
        out
    }
}

/// Samples `pg_stat_activity` every `interval` until `stop` is cancelled.
/// A failed sample is skipped (and said once at the end), never fatal: the
/// benchmark's figures do not depend on it.
pub async fn sample(pool: Pool, interval: Duration, stop: CancellationToken) -> WaitProfile {
    let mut profile = WaitProfile::default();
    let mut failed = 0u64;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        match stats::active_waits(&pool).await {
            Ok(rows) => {
                profile.snapshots += 1;
                for r in rows {
                    profile.add(WaitClass::of(
                        r.wait_event_type.as_deref(),
                        r.wait_event.as_deref(),
                    ));
                }
            }
            Err(_) => failed += 1,
        }
    }
    if failed > 0 {
        eprintln!("wait profile: {failed} sample(s) of pg_stat_activity failed and were skipped");
    }
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_wait_events() {
        let cases: &[(Option<&str>, Option<&str>, WaitClass)] = &[
            (None, None, WaitClass::Cpu),
            (Some("Lock"), Some("transactionid"), WaitClass::RowLock),
            (Some("Lock"), Some("tuple"), WaitClass::RowLock),
            (Some("Lock"), Some("relation"), WaitClass::OtherLock),
            (Some("Lock"), Some("advisory"), WaitClass::OtherLock),
            (Some("LWLock"), Some("WALWrite"), WaitClass::LwLock),
            (Some("LWLock"), Some("LockManager"), WaitClass::LwLock),
            (Some("IO"), Some("WALSync"), WaitClass::Io),
            (Some("IO"), Some("DataFileRead"), WaitClass::Io),
            (Some("Client"), Some("ClientRead"), WaitClass::Client),
            (Some("IPC"), Some("ProcArrayGroupUpdate"), WaitClass::Other),
            (Some("Timeout"), Some("PgSleep"), WaitClass::Other),
        ];
        for (t, e, want) in cases {
            assert_eq!(WaitClass::of(*t, *e), *want, "{t:?} {e:?}");
        }
    }

    #[test]
    fn shares_and_summary() {
        let mut p = WaitProfile::default();
        assert_eq!(p.share(WaitClass::Cpu), 0.0);
        assert_eq!(p.summary(), "no active backend sampled (0 samples)");
        for class in [
            WaitClass::RowLock,
            WaitClass::RowLock,
            WaitClass::RowLock,
            WaitClass::Cpu,
        ] {
            p.add(class);
        }
        assert_eq!(p.samples(), 4);
        assert_eq!(p.share(WaitClass::RowLock), 0.75);
        assert_eq!(p.summary(), "row locks 75% · CPU 25% (4 samples)");
        let mut q = WaitProfile::default();
        q.add(WaitClass::Io);
        q.snapshots = 2;
        p.merge(&q);
        assert_eq!(p.samples(), 5);
        assert_eq!(p.snapshots, 2);
        assert_eq!(p.share(WaitClass::Io), 0.2);
    }
}
