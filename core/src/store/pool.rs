//! Connection pool from a `DATABASE_URL`.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

#[derive(Debug, thiserror::Error)]
pub enum PoolConfigError {
    #[error("DATABASE_URL {url} is not a valid PostgreSQL URL: {source}")]
    Url {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error("could not build the connection pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
}

/// Replaces the password of a connection URL with `***` for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}://{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_string(),
    }
}

/// Builds a pool of at most `max_size` connections. Connections are opened
/// lazily: an unreachable database shows up on first use, not here.
pub fn build_pool(url: &str, max_size: usize) -> Result<Pool, PoolConfigError> {
    let pg: tokio_postgres::Config = url.parse().map_err(|source| PoolConfigError::Url {
        url: redact_url(url),
        source,
    })?;
    pool_from_config(pg, max_size)
}

/// Like [`build_pool`], from an already parsed configuration.
pub fn pool_from_config(
    mut pg: tokio_postgres::Config,
    max_size: usize,
) -> Result<Pool, PoolConfigError> {
    if pg.get_application_name().is_none() {
        pg.application_name("metric-orchestrator");
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(std::time::Duration::from_secs(5));
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
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
    use super::{redact_url, url_with_dbname};

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            url_with_dbname("postgres://u:p@h:1/a?x=1", "b"),
            "postgres://u:p@h:1/b?x=1"
        );
        assert_eq!(url_with_dbname("postgres://h", "b"), "postgres://h/b");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:s3cret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("host=h user=u"), "host=h user=u");
    }
}
