//! What the database does for a run of messages: WAL bytes
//! (`pg_current_wal_lsn()`), WAL records, full-page images and syncs
//! (`pg_stat_wal`: a sync is a durable commit, or several grouped), the
//! transactions committed (`pg_stat_database`, read-only ones included:
//! every statement outside a transaction counts), the commits that wrote and
//! the WAL by record type (`pg_walinspect`, when it can be created), statement time
//! (`pg_stat_statements`, when it is loaded) and the backends' CPU (from
//! `/proc`, when the server runs on this machine), read before and after and
//! divided per message.

use std::collections::HashMap;

use anyhow::{Context, Result};
use orchestrator_core::store::Pool;

/// Counters at one moment, for one database.
#[derive(Debug, Clone)]
pub struct Snapshot {
    lsn: String,
    commits: i64,
    /// `pg_stat_wal`: records, full-page images, syncs.
    wal: [i64; 3],
    /// Sum of `total_exec_time` in milliseconds; `None` without the extension.
    statement_ms: Option<f64>,
    /// CPU time of each backend of the database, by pid, in milliseconds.
    cpu_ms: HashMap<i32, f64>,
}

/// The difference of two snapshots.
#[derive(Debug, Clone, Default)]
pub struct DbWork {
    pub wal_bytes: f64,
    pub wal_records: i64,
    pub wal_fpi: i64,
    pub wal_syncs: i64,
    pub commits: i64,
    /// `Transaction/COMMIT` records in the WAL between the snapshots.
    pub write_commits: Option<i64>,
    /// The WAL record types with the most bytes: (type, records, bytes).
    pub wal_by_type: Vec<(String, i64, i64)>,
    pub statement_ms: Option<f64>,
    pub backend_cpu_ms: Option<f64>,
}

/// The CPU time a process has used, in milliseconds (`/proc/<pid>/stat`,
/// fields 14 and 15, in clock ticks of 10 ms on Linux).
fn cpu_ms(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

pub async fn snapshot(pool: &Pool) -> Result<Snapshot> {
    let client = pool.get().await.context("a connection for the counters")?;
    // Counters flushed by backends that already exited are in the stats;
    // ours first flushes its own.
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .ok();
    let row = client
        .query_one(
            "SELECT pg_current_wal_lsn()::text,
                    (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
                    ARRAY(SELECT pid FROM pg_stat_activity WHERE datname = current_database()),
                    ARRAY[wal_records, wal_fpi, wal_sync]::int8[]
               FROM pg_stat_wal",
            &[],
        )
        .await?;
    let pids: Vec<i32> = row.get(2);
    let wal: Vec<i64> = row.get(3);
    // The view exists once the extension is created (the benchmark's own
    // database); it answers only when the library is loaded.
    client
        .batch_execute(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') THEN
                 CREATE EXTENSION pg_stat_statements;
               END IF;
             END $$",
        )
        .await
        .ok();
    let statement_ms = match client
        .query_one(
            "SELECT COALESCE(sum(total_exec_time), 0)::float8 FROM pg_stat_statements
              WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
    {
        Ok(r) => Some(r.get(0)),
        Err(_) => None,
    };
    Ok(Snapshot {
        lsn: row.get(0),
        commits: row.get(1),
        wal: [wal[0], wal[1], wal[2]],
        statement_ms,
        cpu_ms: pids
            .into_iter()
            .filter_map(|p| cpu_ms(p).map(|c| (p, c)))
            .collect(),
    })
}

/// The backends' CPU now, for the pids of `before` and any newer ones.
pub async fn backend_cpu(pool: &Pool) -> Result<HashMap<i32, f64>> {
    Ok(snapshot(pool).await?.cpu_ms)
}

/// Waits until this pool's connection is the database's only backend.
pub async fn wait_for_backends_to_exit(pool: &Pool, timeout: std::time::Duration) -> Result<()> {
    let client = pool.get().await?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await?
            .get(0);
        if n == 0 || std::time::Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `after` − `before`. `cpu_at_end` is the backends' CPU read while they were
/// still connected (a backend's time is gone from `/proc` once it exits).
pub async fn difference(
    pool: &Pool,
    before: &Snapshot,
    after: &Snapshot,
    cpu_at_end: &HashMap<i32, f64>,
) -> Result<DbWork> {
    let client = pool.get().await?;
    let wal: f64 = client
        .query_one(
            "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::float8",
            &[&after.lsn, &before.lsn],
        )
        .await?
        .get(0);
    let by_type = match client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
    {
        Ok(()) => client
            .query(
                "SELECT \"resource_manager/record_type\", count, combined_size
                   FROM pg_get_wal_stats($1::text::pg_lsn, $2::text::pg_lsn, true)
                  WHERE count > 0 ORDER BY combined_size DESC",
                &[&before.lsn, &after.lsn],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r.get::<_, String>(0),
                            r.get::<_, i64>(1),
                            r.get::<_, i64>(2),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .ok(),
        Err(_) => None,
    };
    let cpu: f64 = cpu_at_end
        .iter()
        .map(|(pid, end)| end - before.cpu_ms.get(pid).copied().unwrap_or(0.0))
        .sum();
    Ok(DbWork {
        wal_bytes: wal,
        wal_records: after.wal[0] - before.wal[0],
        wal_fpi: after.wal[1] - before.wal[1],
        wal_syncs: after.wal[2] - before.wal[2],
        commits: after.commits - before.commits,
        write_commits: by_type.as_ref().map(|t| {
            t.iter()
                .filter(|(k, _, _)| k == "Transaction/COMMIT")
                .map(|(_, n, _)| n)
                .sum()
        }),
        wal_by_type: by_type.unwrap_or_default().into_iter().take(5).collect(),
        statement_ms: after
            .statement_ms
            .zip(before.statement_ms)
            .map(|(a, b)| a - b),
        backend_cpu_ms: (!cpu_at_end.is_empty()).then_some(cpu),
    })
}

impl DbWork {
    /// One line, per message: `WAL 95.1 KB, 1.02 commits, statements 2.05 ms, backends' CPU 3.1 ms`.
    pub fn per_message(&self, n: usize) -> String {
        let n = n.max(1) as f64;
        let mut s = format!(
            "per update: WAL {:.1} KB in {:.0} records ({:.1} full-page images), {:.2} WAL syncs, \
             {:.2} transactions",
            self.wal_bytes / n / 1024.0,
            self.wal_records as f64 / n,
            self.wal_fpi as f64 / n,
            self.wal_syncs as f64 / n,
            self.commits as f64 / n
        );
        if let Some(c) = self.write_commits {
            s += &format!(" ({:.2} that wrote)", c as f64 / n);
        }
        match self.statement_ms {
            Some(ms) => s += &format!(", statements {:.2} ms", ms / n),
            None => s += ", statements n/a (pg_stat_statements not loaded)",
        }
        match self.backend_cpu_ms {
            Some(ms) => s += &format!(", backends' CPU {:.2} ms", ms / n),
            None => s += ", backends' CPU n/a",
        }
        if !self.wal_by_type.is_empty() {
            let top: Vec<String> = self
                .wal_by_type
                .iter()
                .map(|(k, c, b)| {
                    format!(
                        "{k} {:.1} KB ({:.1})",
                        *b as f64 / n / 1024.0,
                        *c as f64 / n
                    )
                })
                .collect();
            s += &format!("; WAL by record type: {}", top.join(", "));
        }
        s
    }
}
