//! A PostgreSQL server of one test's own (initdb into a temporary directory,
//! its own port), so that the test can restart it without disturbing the
//! tests running beside it. Needs the machine's PostgreSQL 15 binaries
//! (`PG_BIN`, default /usr/lib/postgresql/15/bin); as root it runs them as
//! the `postgres` user, as initdb requires.

use std::path::PathBuf;
use std::process::Command;

pub struct PrivatePg {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    /// Further `-c name=value` server settings, e.g. `ssl=on`.
    options: String,
}

fn as_postgres(cmd: &str) -> Command {
    let root = is_root();
    if root {
        let mut c = Command::new("su");
        c.args(["postgres", "-s", "/bin/sh", "-c", cmd]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", cmd]);
        c
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        Self::start_with(&[], "")
    }

    /// Starts a server with `files` (name, contents) written into its
    /// directory first, readable by the server alone (TLS keys), and
    /// `options` added to its command line (e.g. `-c ssl=on`).
    pub fn start_with(files: &[(&str, &str)], options: &str) -> PrivatePg {
        let bin = PathBuf::from(
            std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        assert!(
            bin.join("initdb").is_file(),
            "PostgreSQL server binaries are missing at {} (install postgresql-15 or set PG_BIN)",
            bin.display()
        );
        let dir = std::env::temp_dir().join(format!("pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, contents) in files {
            let path = dir.join(name);
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres", dir.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(ok.success(), "chown {} to postgres", dir.display());
        }
        let mut pg = PrivatePg {
            dir,
            port: 0,
            bin,
            options: options.to_string(),
        };
        pg.run(&format!(
            "{}/initdb -D {}/data -U postgres --auth=trust -E UTF8 --no-sync >/dev/null",
            pg.bin.display(),
            pg.dir.display()
        ));
        // PostgreSQL cannot listen on port 0 and say which port it got: a
        // port free a moment ago may be taken when the server binds it, so a
        // start that fails on that is tried again on another one.
        for attempt in 1.. {
            pg.port = crate::http::free_port();
            match pg.try_ctl("start") {
                Ok(()) => break,
                Err(e) if attempt < 5 && pg.log().contains("Address already in use") => {
                    eprintln!(
                        "private PostgreSQL: port {} taken ({e}); trying another",
                        pg.port
                    )
                }
                Err(e) => panic!("{e}\n{}", pg.log()),
            }
        }
        pg
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn run(&self, cmd: &str) {
        if let Err(e) = self.try_run(cmd) {
            panic!("{e}");
        }
    }

    fn try_run(&self, cmd: &str) -> Result<(), String> {
        let out = as_postgres(cmd).output().expect("shell runs");
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{cmd}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// `pg_ctl start|stop|restart`, waiting until done.
    pub fn ctl(&self, action: &str) {
        if let Err(e) = self.try_ctl(action) {
            panic!("{e}");
        }
    }

    fn try_ctl(&self, action: &str) -> Result<(), String> {
        self.try_run(&format!(
            "{}/pg_ctl -D {d}/data -l {d}/log -w -m fast -o '-p {} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off {}' {action} >/dev/null",
            self.bin.display(),
            self.port,
            self.options,
            d = self.dir.display()
        ))
    }

    /// Restarts the server with other `options` (same data, same port).
    pub fn restart_with(&mut self, options: &str) {
        self.ctl("stop");
        self.options = options.to_string();
        self.ctl("start");
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = as_postgres(&format!(
            "{}/pg_ctl -D {}/data -m immediate stop >/dev/null 2>&1",
            self.bin.display(),
            self.dir.display()
        ))
        .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
