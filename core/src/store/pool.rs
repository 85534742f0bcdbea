//! Connection pool from a `DATABASE_URL`.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use super::conninfo::{self, ConnInfo, ConnInfoError, SslMode};
use super::tls::{self, TlsSetupError};

#[derive(Debug, thiserror::Error)]
pub enum PoolConfigError {
    #[error(transparent)]
    ConnInfo(#[from] ConnInfoError),
    #[error("DATABASE_URL {url} is not a valid PostgreSQL URL: {source}")]
    Url {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("could not build the connection pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
}

/// Replaces the password of a connection string (URL or key/value form)
/// with `***` for logs and errors.
pub fn redact_url(url: &str) -> String {
    conninfo::redact(url)
}

/// What a pool is built with besides its URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolOptions {
    pub max_size: usize,
    /// Replaces the URL's password (`DATABASE_PASSWORD`, e.g. injected from
    /// Secrets Manager by ECS).
    pub password: Option<String>,
    /// Server-side bound on one statement (`statement_timeout`); `None`: the
    /// server's setting.
    pub statement_timeout: Option<Duration>,
    /// Server-side bound on a transaction left idle
    /// (`idle_in_transaction_session_timeout`).
    pub idle_in_transaction_timeout: Option<Duration>,
}

impl PoolOptions {
    pub fn sized(max_size: usize) -> Self {
        Self {
            max_size,
            ..Self::default()
        }
    }
}

/// A parsed `DATABASE_URL`: tokio-postgres's configuration and the TLS
/// settings it does not know.
#[derive(Debug, Clone)]
pub struct Target {
    pub pg: tokio_postgres::Config,
    pub info: ConnInfo,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, PoolConfigError> {
        let info = conninfo::parse(url)?;
        let mut pg: tokio_postgres::Config =
            info.rest.parse().map_err(|source| PoolConfigError::Url {
                url: redact_url(url),
                source,
            })?;
        pg.ssl_mode(match info.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        Ok(Self { pg, info })
    }

    /// Host and port, for messages.
    pub fn describe(&self) -> String {
        let host = match self.pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port} (sslmode={})", self.info.sslmode)
    }
}

/// Builds a pool of at most `max_size` connections. Connections are opened
/// lazily: an unreachable database shows up on first use, not here.
pub fn build_pool(url: &str, max_size: usize) -> Result<Pool, PoolConfigError> {
    build_pool_with(url, &PoolOptions::sized(max_size))
}

/// [`build_pool`] with a password, timeouts and a size.
pub fn build_pool_with(url: &str, options: &PoolOptions) -> Result<Pool, PoolConfigError> {
    pool_for(Target::parse(url)?, options)
}

fn session_options(options: &PoolOptions) -> Vec<String> {
    let ms = |d: Duration| d.as_millis().max(1);
    let mut out = Vec::new();
    if let Some(d) = options.statement_timeout {
        out.push(format!("-c statement_timeout={}", ms(d)));
    }
    if let Some(d) = options.idle_in_transaction_timeout {
        out.push(format!("-c idle_in_transaction_session_timeout={}", ms(d)));
    }
    out
}

/// A pool for an already parsed [`Target`].
pub fn pool_for(target: Target, options: &PoolOptions) -> Result<Pool, PoolConfigError> {
    let Target { mut pg, info } = target;
    if pg.get_application_name().is_none() {
        pg.application_name("metric-orchestrator");
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(5));
    }
    if let Some(p) = &options.password {
        pg.password(p.as_bytes());
    }
    let mut startup: Vec<String> = pg.get_options().map(str::to_string).into_iter().collect();
    startup.extend(session_options(options));
    if !startup.is_empty() {
        pg.options(startup.join(" "));
    }
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = Manager::from_config(pg, tls::connector(&info)?, manager_config);
    Ok(Pool::builder(manager)
        .max_size(options.max_size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

/// The error a failed connection under `target` is reported with at
/// start-up: TLS refusals in words naming the setting, others as they are.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("PostgreSQL at {target}: {message}")]
    Tls { target: String, message: String },
    #[error("cannot connect to PostgreSQL at {target}")]
    Other {
        target: String,
        #[source]
        source: deadpool_postgres::PoolError,
    },
}

impl ConnectError {
    pub fn is_tls(&self) -> bool {
        matches!(self, ConnectError::Tls { .. })
    }
}

/// Opens one connection of `pool` to see that `target`'s TLS settings are
/// accepted by the server; the connection goes back to the pool.
pub async fn check_connection(pool: &Pool, target: &Target) -> Result<(), ConnectError> {
    match pool.get().await {
        Ok(_) => Ok(()),
        Err(source) => {
            let tls = match &source {
                deadpool_postgres::PoolError::Backend(e) => {
                    tls::explain_tls_failure(&target.info, e)
                }
                _ => None,
            };
            Err(match tls {
                Some(message) => ConnectError::Tls {
                    target: target.describe(),
                    message,
                },
                None => ConnectError::Other {
                    target: target.describe(),
                    source,
                },
            })
        }
    }
}

/// Why a long-running process cannot open its pool at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartPoolError {
    #[error(transparent)]
    Config(#[from] PoolConfigError),
    #[error(transparent)]
    Refused(#[from] ConnectError),
}

/// The pool of a long-running process (a worker, `serve`), connected once
/// at start-up: TLS settings the server refuses stop the process with the
/// setting named; a database that is down is only logged (it may come up,
/// and readiness says so meanwhile).
pub async fn start_pool(url: &str, options: &PoolOptions) -> Result<Pool, StartPoolError> {
    let target = Target::parse(url)?;
    let pool = pool_for(target.clone(), options)?;
    match check_connection(&pool, &target).await {
        Err(e) if e.is_tls() => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %crate::ground::errors::chain(&e), "the database does not answer yet")
        }
        Ok(()) => {}
    }
    Ok(pool)
}

/// The same URL pointing at another database on the same server.
pub fn url_with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host = match base[scheme_end..].find('/') {
        Some(i) => &base[..i + scheme_end],
        None => base,
    };
    match query {
        Some(q) => format!("{host}/{name}?{q}"),
        None => format!("{host}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::url_with_dbname;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            url_with_dbname("postgres://u:p@h:1/a?x=1", "b"),
            "postgres://u:p@h:1/b?x=1"
        );
        assert_eq!(url_with_dbname("postgres://h", "b"), "postgres://h/b");
    }
}
