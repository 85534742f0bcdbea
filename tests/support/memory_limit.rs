//! A memory limit for one child process, as a container runtime sets it: a
//! cgroup of its own under this process's, with `memory.limit_in_bytes`
//! (cgroup v1) or `memory.max` (v2). Needs root, as CI and these machines
//! run the tests; a machine where neither can be made fails the test that
//! asks, with the reason.

use std::path::PathBuf;

pub struct MemoryLimit {
    dir: PathBuf,
    v1: bool,
}

/// This process's cgroup directory for the memory controller, and whether
/// it is v1.
fn own_memory_cgroup() -> Result<(PathBuf, bool), String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            let dir = PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
            return Ok((dir, true));
        }
    }
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("0::") {
            let dir = PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
            return Ok((dir, false));
        }
    }
    Err("no memory cgroup in /proc/self/cgroup".into())
}

impl MemoryLimit {
    pub fn new(bytes: u64) -> Result<MemoryLimit, String> {
        let (parent, v1) = own_memory_cgroup()?;
        let dir = parent.join(format!("it-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))?;
        let limit = MemoryLimit { dir, v1 };
        let file = if v1 {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        limit.write(file, &bytes.to_string())?;
        if v1 && limit.dir.join("memory.memsw.limit_in_bytes").exists() {
            // Swap cannot stretch the limit either.
            limit.write("memory.memsw.limit_in_bytes", &bytes.to_string())?;
        } else if !v1 && limit.dir.join("memory.swap.max").exists() {
            limit.write("memory.swap.max", "0")?;
        }
        Ok(limit)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(self.dir.join(file), value)
            .map_err(|e| format!("cannot write {value} to {}/{file}: {e}", self.dir.display()))
    }

    /// Puts process `pid` under the limit.
    pub fn add(&self, pid: u32) -> Result<(), String> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// Processes of the group the kernel killed for memory so far.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v1 {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The group's highest memory use so far, in bytes.
    pub fn peak_bytes(&self) -> Option<u64> {
        let file = if self.v1 {
            "memory.max_usage_in_bytes"
        } else {
            "memory.peak"
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        // Its processes have exited (or been killed) by now; an empty group
        // is removed with rmdir.
        let _ = std::fs::remove_dir(&self.dir);
    }
}
