//! Settings from the environment (docs/operations.md), validated once at start-up with
//! errors that name the variable and what was wrong.

use std::str::FromStr;
use std::time::Duration;

use crate::app::sweeper::Timeouts;
use crate::domain::events::ProgressScale;
use crate::domain::run_request::RequestSettings;
use crate::ground::telemetry::LogFormat;
use crate::messaging::sqs::ConsumerConfig;
use crate::store::pool::PoolOptions;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set: {1}")]
    Missing(&'static str, &'static str),
    #[error("{name}={value:?} is invalid: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Bounds on what one request may take (`API_REQUEST_TIMEOUT_SECS`,
/// `API_MAX_BODY_BYTES`, `API_MAX_IN_FLIGHT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
            max_body_bytes: 64 * 1024,
            max_in_flight: 32,
        }
    }
}

/// What needs the token (`API_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthScope {
    /// Only the actions (cancel, trigger): reads are open to the network.
    #[default]
    Actions,
    /// Every `/api/v1` route, reads included.
    All,
}

impl AuthScope {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthScope::Actions => "actions",
            AuthScope::All => "all",
        }
    }
}

impl FromStr for AuthScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "actions" => Ok(AuthScope::Actions),
            "all" => Ok(AuthScope::All),
            other => Err(format!("{other:?} is not actions or all")),
        }
    }
}

/// A process kind's pool defaults (docs/operations.md, "Database").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolDefaults {
    pub size: u32,
    pub statement_timeout_secs: u64,
    pub idle_in_transaction_timeout_secs: u64,
}

/// Reads variables through `lookup` (the process environment in production,
/// a map in tests).
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

impl Env<fn(&str) -> Option<String>> {
    pub fn process() -> Self {
        Env(|k| std::env::var(k).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &'static str, help: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name, help))
    }

    pub fn or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_string())
    }

    pub fn secs(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(Duration::from_secs(default)),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Duration::from_secs)
                .ok_or(ConfigError::Invalid {
                    name,
                    value: v,
                    expected: "a whole number of seconds > 0",
                }),
        }
    }

    /// Like [`Env::secs`], where `0` turns the thing off (`None`).
    pub fn secs_or_off(
        &self,
        name: &'static str,
        default: u64,
    ) -> Result<Option<Duration>, ConfigError> {
        match self.get(name) {
            Some(v) if v.trim() == "0" => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .map(|n| Some(Duration::from_secs(n)))
                .ok_or(ConfigError::Invalid {
                    name,
                    value: v,
                    expected: "a whole number of seconds (0 turns it off)",
                }),
            None => Ok(Some(Duration::from_secs(default))),
        }
    }

    pub fn database_url(&self) -> Result<String, ConfigError> {
        self.required(
            "DATABASE_URL",
            "the PostgreSQL URL, e.g. postgres://postgres:postgres@127.0.0.1:5432/postgres",
        )
    }

    pub fn log_format(&self) -> Result<LogFormat, ConfigError> {
        let v = self.or("LOG_FORMAT", "json");
        v.parse().map_err(|_| ConfigError::Invalid {
            name: "LOG_FORMAT",
            value: v,
            expected: "json or pretty",
        })
    }

    /// How run requests are shaped: output location and FIFO-ness of the topic.
    pub fn request_settings(&self) -> Result<RequestSettings, ConfigError> {
        let output_bucket = self.required(
            "OUTPUT_BUCKET",
            "the bucket metric runners write outputs to",
        )?;
        let output_prefix = self.or("OUTPUT_PREFIX", "metrics/");
        let style = self.or("OUTPUT_PATH_STYLE", "s3-url");
        let output_path_style = style.parse().map_err(|_| ConfigError::Invalid {
            name: "OUTPUT_PATH_STYLE",
            value: style,
            expected: "s3-url (s3://OUTPUT_BUCKET/OUTPUT_PREFIX<metricCode>/) or key (OUTPUT_PREFIX<metricCode>/)",
        })?;
        let fifo = self
            .get("RUN_REQUESTS_TOPIC_ARN")
            .is_some_and(|a| a.ends_with(".fifo"));
        Ok(RequestSettings {
            output_bucket,
            output_prefix,
            output_path_style,
            fifo,
        })
    }

    pub fn timeouts(&self) -> Result<Timeouts, ConfigError> {
        Ok(Timeouts {
            heartbeat: self.secs_or_off("RUN_HEARTBEAT_TIMEOUT_SECS", 600)?,
            start: self.secs("RUN_START_TIMEOUT_SECS", 3600)?,
        })
    }

    /// `RUNNER_PROGRESS_SCALE`: how runners report heartbeat progress.
    pub fn progress_scale(&self) -> Result<ProgressScale, ConfigError> {
        let v = self.or("RUNNER_PROGRESS_SCALE", "percent");
        v.parse().map_err(|_| ConfigError::Invalid {
            name: "RUNNER_PROGRESS_SCALE",
            value: v,
            expected: "percent (0-100) or fraction (0.0-1.0)",
        })
    }

    pub fn reaper_interval(&self) -> Result<Duration, ConfigError> {
        self.secs("REAPER_INTERVAL_SECS", 30)
    }

    pub fn count(&self, name: &'static str, default: u32, max: u32) -> Result<u32, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or(ConfigError::Invalid {
                    name,
                    value: v,
                    expected: "a whole number >= 1 (and within reason)",
                }),
        }
    }

    /// The consumer of the queue named by `queue_var` (its DLQ may be
    /// overridden by `dlq_var`; otherwise the queue's RedrivePolicy names it).
    pub fn consumer(
        &self,
        queue_var: &'static str,
        dlq_var: &'static str,
    ) -> Result<ConsumerConfig, ConfigError> {
        let mut c = ConsumerConfig::new(
            self.required(queue_var, "the URL of the queue this worker consumes")?,
        );
        c.dlq_url = self.get(dlq_var);
        c.concurrency = self.count("WORKER_CONCURRENCY", 8, 1000)? as usize;
        c.max_receive_count = self.count("MAX_RECEIVE_COUNT", 5, 1000)?;
        c.shutdown_grace = self.secs("SHUTDOWN_GRACE_SECS", 30)?;
        // Visibility is renewed at half this period, so 2 s is the useful floor.
        c.visibility_timeout = self
            .secs("VISIBILITY_TIMEOUT_SECS", 30)?
            .max(Duration::from_secs(2));
        c.inflight_bytes = self.count(
            "WORKER_INFLIGHT_BYTES",
            crate::messaging::sqs::config::DEFAULT_INFLIGHT_BYTES as u32,
            u32::MAX,
        )? as usize;
        if c.inflight_bytes < 1024 * 1024 {
            return Err(ConfigError::Invalid {
                name: "WORKER_INFLIGHT_BYTES",
                value: c.inflight_bytes.to_string(),
                expected: "at least 1048576 (1 MiB): a message body alone may be 1 MiB",
            });
        }
        c.pointers = self.pointer_policy()?;
        Ok(c)
    }

    /// `S3_POINTER_BUCKETS` (comma-separated; default: the large-payload
    /// bucket) and `S3_EXPECTED_BUCKET_OWNER` (a 12-digit account id).
    pub fn pointer_policy(&self) -> Result<crate::messaging::s3::PointerPolicy, ConfigError> {
        let buckets: Vec<String> = match self.get("S3_POINTER_BUCKETS") {
            Some(v) => v.split(',').map(|b| b.trim().to_string()).collect(),
            None => vec![self.large_payload_bucket()?],
        };
        for b in &buckets {
            let ok = (3..=63).contains(&b.len())
                && b.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !ok {
                return Err(ConfigError::Invalid {
                    name: "S3_POINTER_BUCKETS",
                    value: b.clone(),
                    expected: "comma-separated S3 bucket names (3-63 lower-case letters, digits, '-' and '.')",
                });
            }
        }
        let expected_owner = self.get("S3_EXPECTED_BUCKET_OWNER");
        if let Some(o) = &expected_owner {
            if o.len() != 12 || !o.chars().all(|c| c.is_ascii_digit()) {
                return Err(ConfigError::Invalid {
                    name: "S3_EXPECTED_BUCKET_OWNER",
                    value: o.clone(),
                    expected: "a 12-digit AWS account id",
                });
            }
        }
        Ok(crate::messaging::s3::PointerPolicy {
            buckets,
            expected_owner,
        })
    }

    /// Address of the ops endpoints (`OPS_ADDR`).
    pub fn ops_addr(&self, default: &str) -> Result<std::net::SocketAddr, ConfigError> {
        self.socket_addr("OPS_ADDR", default)
    }

    pub fn socket_addr(
        &self,
        name: &'static str,
        default: &str,
    ) -> Result<std::net::SocketAddr, ConfigError> {
        let v = self.or(name, default);
        v.parse().map_err(|_| ConfigError::Invalid {
            name,
            value: v,
            expected: "host:port, e.g. 0.0.0.0:9090",
        })
    }

    pub fn optional(&self, name: &str) -> Option<String> {
        self.get(name)
    }

    /// `API_TOKEN`: unset turns the API's actions off; a set token must be
    /// long enough not to be guessed.
    pub fn api_token(&self) -> Result<Option<String>, ConfigError> {
        match self.get("API_TOKEN") {
            None => Ok(None),
            Some(t) if t.trim().len() >= 16 => Ok(Some(t.trim().to_string())),
            Some(_) => Err(ConfigError::Invalid {
                name: "API_TOKEN",
                value: "(hidden)".into(),
                expected: "at least 16 characters (e.g. `openssl rand -hex 32`), or unset to turn the actions off",
            }),
        }
    }

    /// `DATABASE_POOL_SIZE`: connections per process, at most.
    pub fn pool_size(&self, default: u32) -> Result<usize, ConfigError> {
        Ok(self.count("DATABASE_POOL_SIZE", default, 1000)? as usize)
    }

    /// A process's pool: `DATABASE_POOL_SIZE`, `DATABASE_PASSWORD` (replaces
    /// the URL's), and the server-side bounds
    /// `DATABASE_STATEMENT_TIMEOUT_SECS` and
    /// `DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECS` (`0` leaves the server's).
    pub fn pool_options(&self, defaults: PoolDefaults) -> Result<PoolOptions, ConfigError> {
        Ok(PoolOptions {
            max_size: self.pool_size(defaults.size)?,
            password: self.get("DATABASE_PASSWORD"),
            statement_timeout: self.secs_or_off(
                "DATABASE_STATEMENT_TIMEOUT_SECS",
                defaults.statement_timeout_secs,
            )?,
            idle_in_transaction_timeout: self.secs_or_off(
                "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECS",
                defaults.idle_in_transaction_timeout_secs,
            )?,
        })
    }

    /// `API_TOKEN` and `API_AUTH`; `all` needs a token, or every read would
    /// be refused.
    pub fn api_auth(&self) -> Result<(Option<String>, AuthScope), ConfigError> {
        let token = self.api_token()?;
        let v = self.or("API_AUTH", "actions");
        let scope: AuthScope = v.parse().map_err(|_| ConfigError::Invalid {
            name: "API_AUTH",
            value: v.clone(),
            expected: "actions (the token guards the actions) or all (reads too)",
        })?;
        if scope == AuthScope::All && token.is_none() {
            return Err(ConfigError::Invalid {
                name: "API_AUTH",
                value: v,
                expected: "actions when API_TOKEN is unset (all needs API_TOKEN)",
            });
        }
        Ok((token, scope))
    }

    /// `API_REQUEST_TIMEOUT_SECS`, `API_MAX_BODY_BYTES`, `API_MAX_IN_FLIGHT`.
    pub fn api_limits(&self) -> Result<ApiLimits, ConfigError> {
        let d = ApiLimits::default();
        Ok(ApiLimits {
            request_timeout: self.secs("API_REQUEST_TIMEOUT_SECS", d.request_timeout.as_secs())?,
            max_body_bytes: self.count("API_MAX_BODY_BYTES", d.max_body_bytes as u32, 16 << 20)?
                as usize,
            max_in_flight: self.count("API_MAX_IN_FLIGHT", d.max_in_flight as u32, 100_000)?
                as usize,
        })
    }

    pub fn topic_arn(&self) -> Result<String, ConfigError> {
        self.required(
            "RUN_REQUESTS_TOPIC_ARN",
            "the ARN of the run-requests SNS topic",
        )
    }

    /// `ALERTS_TOPIC_ARN`: where alerts go; unset, none are written.
    pub fn alerts_topic_arn(&self) -> Option<String> {
        self.get("ALERTS_TOPIC_ARN")
            .filter(|s| !s.trim().is_empty())
    }

    /// `FRESHNESS_SWEEP_SECS`: how often a worker judges the freshness
    /// expectations (one replica at a time does).
    pub fn freshness_sweep_interval(&self) -> Result<std::time::Duration, ConfigError> {
        Ok(std::time::Duration::from_secs(u64::from(self.count(
            "FRESHNESS_SWEEP_SECS",
            30,
            86_400,
        )?)))
    }

    /// Bucket for run requests over the SNS size limit (default: OUTPUT_BUCKET).
    pub fn large_payload_bucket(&self) -> Result<String, ConfigError> {
        match self.get("LARGE_PAYLOAD_BUCKET") {
            Some(b) => Ok(b),
            None => self.required(
                "OUTPUT_BUCKET",
                "the bucket metric runners write outputs to",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env(move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_and_fifo_follows_the_topic_name() {
        let e = env(&[
            ("OUTPUT_BUCKET", "b"),
            ("RUN_REQUESTS_TOPIC_ARN", "arn:aws:sns:x:1:t.fifo"),
        ]);
        let s = e.request_settings().unwrap();
        assert_eq!(s.base_path("m"), "s3://b/metrics/m/");
        assert!(s.fifo);
        assert_eq!(e.timeouts().unwrap(), Timeouts::default());
        assert_eq!(e.reaper_interval().unwrap(), Duration::from_secs(30));
    }

    #[test]
    fn missing_and_malformed_values_name_the_variable() {
        let e = env(&[("RUN_HEARTBEAT_TIMEOUT_SECS", "ten"), ("LOG_FORMAT", "xml")]);
        assert!(e
            .database_url()
            .unwrap_err()
            .to_string()
            .starts_with("DATABASE_URL is not set"));
        assert!(e
            .timeouts()
            .unwrap_err()
            .to_string()
            .contains("RUN_HEARTBEAT_TIMEOUT_SECS=\"ten\""));
        assert!(e.log_format().is_err());
        assert!(e
            .request_settings()
            .unwrap_err()
            .to_string()
            .contains("OUTPUT_BUCKET"));
    }

    #[test]
    fn the_compatibility_settings_parse_and_reject_unknown_values() {
        let e = env(&[
            ("OUTPUT_BUCKET", "b"),
            ("OUTPUT_PATH_STYLE", "key"),
            ("RUNNER_PROGRESS_SCALE", "fraction"),
            ("RUN_HEARTBEAT_TIMEOUT_SECS", "0"),
        ]);
        assert_eq!(e.request_settings().unwrap().base_path("m"), "metrics/m/");
        assert_eq!(e.progress_scale().unwrap(), ProgressScale::Fraction);
        assert_eq!(e.timeouts().unwrap().heartbeat, None);
        assert_eq!(env(&[]).progress_scale().unwrap(), ProgressScale::Percent);
        let e = env(&[("RUN_HEARTBEAT_TIMEOUT_SECS", "90")]);
        assert_eq!(
            e.timeouts().unwrap().heartbeat,
            Some(Duration::from_secs(90))
        );
        let bad = env(&[
            ("OUTPUT_BUCKET", "b"),
            ("OUTPUT_PATH_STYLE", "url"),
            ("RUNNER_PROGRESS_SCALE", "ratio"),
            ("RUN_HEARTBEAT_TIMEOUT_SECS", "-1"),
        ]);
        for (err, name) in [
            (
                bad.request_settings().unwrap_err(),
                "OUTPUT_PATH_STYLE=\"url\"",
            ),
            (
                bad.progress_scale().unwrap_err(),
                "RUNNER_PROGRESS_SCALE=\"ratio\"",
            ),
            (
                bad.timeouts().unwrap_err(),
                "RUN_HEARTBEAT_TIMEOUT_SECS=\"-1\"",
            ),
        ] {
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
