//! Query parameters, parsed by hand so that every mistake is a 400 naming
//! the parameter (and unknown parameters are refused, not ignored). The
//! text itself was checked when it was extracted ([`super::extract`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::error::ApiError;
use super::extract::QueryParams;

/// Page sizes: default and upper bound.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug)]
pub struct Params {
    map: HashMap<String, String>,
}

impl Params {
    /// Refuses parameters outside `allowed`.
    pub fn new(query: QueryParams, allowed: &[&str]) -> Result<Self, ApiError> {
        let map: HashMap<String, String> = query.0.into_iter().collect();
        let mut unknown: Vec<&String> = map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        unknown.sort();
        if let Some(k) = unknown.first() {
            return Err(ApiError::bad_request(format!(
                "unknown parameter {k:?}; accepted: {}",
                allowed.join(", ")
            )));
        }
        Ok(Self { map })
    }

    pub fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => {
                Err(ApiError::bad_request(format!("{name} must not be empty")))
            }
            Some(v) => Ok(Some(v.clone())),
        }
    }

    pub fn parsed<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        self.text(name)?
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| ApiError::bad_request(format!("{name}={v:?}: {e}")))
            })
            .transpose()
    }

    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.text("limit")? {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "limit={v:?}: must be a whole number from 1 to {MAX_LIMIT}"
                    ))
                }),
        }
    }

    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.text(name)?
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        ApiError::bad_request(format!(
                            "{name}={v:?}: not an RFC 3339 time ({e}), e.g. 2026-11-23T10:00:00Z"
                        ))
                    })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)], allowed: &[&str]) -> Result<Params, ApiError> {
        Params::new(
            QueryParams(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            allowed,
        )
    }

    #[test]
    fn parameters_are_checked_and_every_mistake_names_the_parameter() {
        assert!(p(&[("bogus", "1")], &["limit"])
            .unwrap_err()
            .message
            .contains("\"bogus\""));
        let ok = p(
            &[("limit", "20"), ("since", "2026-11-23T10:00:00Z")],
            &["limit", "since"],
        )
        .unwrap();
        assert_eq!(ok.limit().unwrap(), 20);
        assert!(ok.time("since").unwrap().is_some());
        assert_eq!(p(&[], &["limit"]).unwrap().limit().unwrap(), DEFAULT_LIMIT);
        for bad in ["0", "501", "-1", "ten", ""] {
            let e = p(&[("limit", bad)], &["limit"])
                .unwrap()
                .limit()
                .unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.message.contains("limit"), "{}", e.message);
        }
        let e = p(&[("since", "yesterday")], &["since"])
            .unwrap()
            .time("since")
            .unwrap_err();
        assert!(e.message.contains("since=\"yesterday\""), "{}", e.message);
        let e = p(&[("status", "late")], &["status"])
            .unwrap()
            .parsed::<crate::domain::metric_status::MetricStatus>("status")
            .unwrap_err();
        assert!(e.message.contains("status=\"late\""), "{}", e.message);
    }
}
