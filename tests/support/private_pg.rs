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
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres", dir.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(ok.success(), "chown {} to postgres", dir.display());
        }
        let port = crate::http::free_port();
        let pg = PrivatePg { dir, port, bin };
        pg.run(&format!(
            "{}/initdb -D {}/data -U postgres --auth=trust -E UTF8 --no-sync >/dev/null",
            pg.bin.display(),
            pg.dir.display()
        ));
        pg.ctl("start");
        pg
    }

    fn run(&self, cmd: &str) {
        let out = as_postgres(cmd).output().expect("shell runs");
        assert!(
            out.status.success(),
            "{cmd}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl start|stop|restart`, waiting until done.
    pub fn ctl(&self, action: &str) {
        self.run(&format!(
            "{}/pg_ctl -D {d}/data -l {d}/log -w -m fast -o '-p {} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off' {action} >/dev/null",
            self.bin.display(),
            self.port,
            d = self.dir.display()
        ));
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
