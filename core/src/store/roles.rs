//! Least-privilege database roles, granted by `orchestrator migrate` (the
//! schema owner): the workers read and write the tables and run no DDL; the
//! API reads everything and writes only what its four actions (cancel,
//! trigger, hold, resume) write. docs/operations.md, "Database roles".

use std::fmt;
use std::str::FromStr;

use deadpool_postgres::Pool;

use super::StoreError;

/// A role name as written in configuration: lower-case letters, digits and
/// `_`, starting with a letter or `_`, at most 63 bytes (PostgreSQL's
/// identifier limit), and not one of PostgreSQL's reserved `pg_` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted as an identifier (it holds no `"`, so this is exact).
    fn ident(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RoleName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let first_ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let rest_ok = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !first_ok || !rest_ok || s.len() > 63 {
            return Err(format!(
                "{s:?} is not a role name: lower-case letters, digits and _, starting with a letter or _, at most 63 characters"
            ));
        }
        if s.starts_with("pg_") || s == "public" {
            return Err(format!("{s:?} is reserved by PostgreSQL"));
        }
        Ok(RoleName(s.to_string()))
    }
}

/// A role to grant, and the password to give it (creating it with LOGIN
/// when missing); without one, a missing role is created NOLOGIN, to be
/// granted to the login roles that use it.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleSpec {
    pub name: RoleName,
    pub password: Option<String>,
}

impl fmt::Debug for RoleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleSpec")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The roles `migrate` keeps in step with the schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    pub worker: Option<RoleSpec>,
    pub api: Option<RoleSpec>,
}

impl Roles {
    pub fn is_empty(&self) -> bool {
        self.worker.is_none() && self.api.is_none()
    }
}

/// The tables the API's actions write: a cancelled run, a triggered run and
/// its inputs, a hold and a resume (which evaluates the held metric as an
/// update would). Everything else it only reads.
pub const API_WRITES: &[&str] = &[
    "metric_runs",
    "run_extra_inputs",
    "metric_run_pending_datasets",
    "metric_run_timers",
    "freshness_marks",
    "metric_run_folded_updates",
    "metric_update_backlog",
    "outbox_messages",
    "event_log",
    "metrics",
    "backfills",
    "backfill_points",
    "backfill_edges",
];

/// The migration history: the owner's alone to write.
const HISTORY: &str = "refinery_schema_history";

fn grants(worker: Option<&RoleName>, api: Option<&RoleName>) -> Vec<String> {
    let mut sql = vec!["REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_string()];
    if let Some(w) = worker {
        let w = w.ident();
        sql.extend([
            format!("GRANT USAGE ON SCHEMA public TO {w}"),
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {w}"),
            format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {w}"),
            format!("REVOKE INSERT, UPDATE, DELETE ON {HISTORY} FROM {w}"),
        ]);
    }
    if let Some(a) = api {
        let a = a.ident();
        sql.extend([
            format!("GRANT USAGE ON SCHEMA public TO {a}"),
            format!(
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public FROM {a}"
            ),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {a}"),
            format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {a}"),
            format!(
                "GRANT INSERT, UPDATE, DELETE ON {} TO {a}",
                API_WRITES.join(", ")
            ),
        ]);
    }
    sql
}

/// What [`apply`] did to each role, for `migrate` to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub role: RoleName,
    pub created: bool,
    pub login: bool,
}

/// Creates the roles that are missing, sets the passwords given (as SCRAM
/// verifiers computed here: the password itself never reaches the server's
/// logs) and grants each its privileges on every table of the schema, in one
/// transaction. Run after the migrations, so new tables are covered.
pub async fn apply(pool: &Pool, roles: &Roles) -> Result<Vec<Granted>, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut done = Vec::new();
    for spec in [&roles.worker, &roles.api].into_iter().flatten() {
        let exists = tx
            .query_opt(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&spec.name.as_str()],
            )
            .await?
            .is_some();
        let ident = spec.name.ident();
        let password = spec
            .password
            .as_ref()
            .map(|p| postgres_protocol::password::scram_sha_256(p.as_bytes()));
        let login = match &password {
            Some(verifier) => format!("LOGIN PASSWORD '{verifier}'"),
            None => "NOLOGIN".to_string(),
        };
        if !exists {
            tx.batch_execute(&format!("CREATE ROLE {ident} {login}"))
                .await?;
        } else if let Some(verifier) = &password {
            tx.batch_execute(&format!("ALTER ROLE {ident} LOGIN PASSWORD '{verifier}'"))
                .await?;
        }
        let db: String = tx.query_one("SELECT current_database()", &[]).await?.get(0);
        tx.batch_execute(&format!(
            "GRANT CONNECT ON DATABASE \"{}\" TO {ident}",
            db.replace('"', "\"\"")
        ))
        .await?;
        done.push(Granted {
            role: spec.name.clone(),
            created: !exists,
            login: password.is_some() || exists,
        });
    }
    let sql = grants(
        roles.worker.as_ref().map(|r| &r.name),
        roles.api.as_ref().map(|r| &r.name),
    );
    tx.batch_execute(&sql.join(";\n")).await?;
    tx.commit().await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_checked_where_they_are_written() {
        for ok in ["orchestrator_worker", "_api", "w1"] {
            assert!(ok.parse::<RoleName>().is_ok(), "{ok}");
        }
        let cases: &[(&str, &str)] = &[
            ("", "is not a role name"),
            ("Worker", "is not a role name"),
            ("1worker", "is not a role name"),
            ("a-b", "is not a role name"),
            ("x\"; DROP TABLE metrics; --", "is not a role name"),
            (&"a".repeat(64), "is not a role name"),
            ("pg_monitor", "reserved"),
            ("public", "reserved"),
        ];
        for (input, wanted) in cases {
            let err = input.parse::<RoleName>().expect_err(input);
            assert!(err.contains(wanted), "{input}: {err}");
        }
    }

    #[test]
    fn the_api_writes_no_catalog_or_update_table() {
        let sql = grants(None, Some(&"api".parse().unwrap())).join(";");
        for read_only in [
            "datasets",
            "series",
            "dataset_series",
            "metric_dependencies",
            "metric_required_datasets",
            "dataset_updates",
            HISTORY,
        ] {
            assert!(!API_WRITES.contains(&read_only), "{read_only}");
        }
        assert!(sql.contains("GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"api\""));
        assert!(!sql.contains("CREATE ON SCHEMA public TO"));
    }

    #[test]
    fn passwords_are_not_shown_in_debug_output() {
        let spec = RoleSpec {
            name: "w".parse().unwrap(),
            password: Some("s3cret".into()),
        };
        assert!(!format!("{spec:?}").contains("s3cret"));
    }
}
