//! Worker processes for tests and `loadgen`: finding the workspace binaries,
//! starting them with their logs in a file, stopping them, reading their memory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where cargo put the workspace binary `name`: beside the running
/// executable (`loadgen`), or one level up from a test executable in `deps/`.
pub fn find_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("no executable path: {e}"))?;
    let dirs = exe.ancestors().skip(1).take(2);
    dirs.map(|d| d.join(name))
        .find(|p| p.exists())
        .ok_or_else(|| {
            format!(
                "{name} is missing beside {}: build the binaries first \
                 (`cargo build --workspace --bins`, with --release for benchmarks; tests/run.sh does)",
                exe.display()
            )
        })
}

/// [`find_binary`] for tests: panics with what to build.
pub fn binary(name: &str) -> PathBuf {
    find_binary(name).unwrap_or_else(|e| panic!("{e}"))
}

/// A worker process, killed when dropped.
pub struct Process {
    pub child: Child,
    pub name: String,
    /// Where its standard error (the logs) goes.
    pub log: PathBuf,
}

impl Process {
    /// Starts workspace binary `name`; panics when it cannot (tests).
    pub fn spawn(name: &str, env: &[(String, String)], args: &[&str]) -> Process {
        Self::try_spawn(name, env, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts workspace binary `name` with `env` and `args`; its standard
    /// error goes to a log file in the temporary directory.
    pub fn try_spawn(
        name: &str,
        env: &[(String, String)],
        args: &[&str],
    ) -> Result<Process, String> {
        Self::start(name, env, args, &[])
    }

    /// [`Process::spawn`] without `RUST_LOG`, from `env` or inherited: the
    /// process logs at its default level, as in production.
    pub fn spawn_with_default_log_level(
        name: &str,
        env: &[(String, String)],
        args: &[&str],
    ) -> Process {
        let env: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| k != "RUST_LOG")
            .cloned()
            .collect();
        Self::start(name, &env, args, &["RUST_LOG"]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn start(
        name: &str,
        env: &[(String, String)],
        args: &[&str],
        unset: &[&str],
    ) -> Result<Process, String> {
        let path = find_binary(name)?;
        let log =
            std::env::temp_dir().join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut command = Command::new(path);
        unset.iter().for_each(|k| {
            command.env_remove(k);
        });
        let child = command
            .args(args)
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        eprintln!("{name} (pid {}) logs to {}", child.id(), log.display());
        Ok(Process {
            child,
            name: name.to_string(),
            log,
        })
    }

    /// The port the process says it listens on, in its JSON log line whose
    /// message contains `message` (field `addr`): it was started with port 0
    /// and bound the port itself, so no other test can take it meanwhile.
    pub async fn bound_port(&self, message: &str) -> u16 {
        let log = self.log.clone();
        crate::eventually(
            Duration::from_secs(30),
            &format!("{} to log {message:?} with its address", self.name),
            || {
                let log = log.clone();
                async move {
                    let text = std::fs::read_to_string(&log).ok()?;
                    text.lines().find_map(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).ok()?;
                        if !v["message"].as_str()?.contains(message) {
                            return None;
                        }
                        let addr: std::net::SocketAddr = v["addr"].as_str()?.parse().ok()?;
                        Some(addr.port())
                    })
                }
            },
        )
        .await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits until the process exits by itself, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// What it wrote to standard error so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Peak resident memory (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        memory_kib(self.pid(), "VmHWM")
    }

    /// Resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        memory_kib(self.pid(), "VmRSS")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test keeps the log it points to; a passing one leaves no
        // file behind (a full run used to leave hundreds of MB in /tmp),
        // unless KEEP_PROCESS_LOGS is set.
        if !std::thread::panicking() && std::env::var_os("KEEP_PROCESS_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A `/proc/<pid>/status` memory field (`VmHWM`, `VmRSS`), in KiB.
fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Runs `orchestrator` with `args` to its end; its output (standard output,
/// then standard error). A failure fails the test with that output.
pub fn cli(env: &[(String, String)], args: &[&str]) -> String {
    let out = std::process::Command::new(binary("orchestrator"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("orchestrator runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "orchestrator {args:?}: {text}");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_of_this_process_is_read_from_proc() {
        let kib = memory_kib(std::process::id(), "VmRSS").expect("VmRSS of this process");
        assert!(kib > 100, "{kib} KiB");
        assert_eq!(memory_kib(std::process::id(), "NoSuchField"), None);
    }

    #[test]
    fn a_missing_binary_is_named_with_what_to_build() {
        let e = find_binary("no-such-binary-here").unwrap_err();
        assert!(e.contains("no-such-binary-here is missing"), "{e}");
        assert!(e.contains("cargo build"), "{e}");
    }
}
