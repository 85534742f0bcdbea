//! Child worker processes for the benchmark and soak commands.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Result};

/// A sibling binary of this executable (same target directory).
pub fn sibling(name: &str) -> Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} is missing: cargo build --release --workspace --bins",
            p.display()
        );
    }
    Ok(p)
}

/// `VmHWM` (peak) or `VmRSS` (now) of a process, in KiB.
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A child killed when dropped.
pub struct Worker(pub Child);

impl Worker {
    pub fn spawn(binary: PathBuf, args: &[&str], env: &[(String, String)]) -> Result<Worker> {
        Ok(Worker(
            Command::new(binary)
                .args(args)
                .envs(env.iter().cloned())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()?,
        ))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
