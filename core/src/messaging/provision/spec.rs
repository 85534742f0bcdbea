//! What `orchestrator provision` is asked to build, checked before any AWS
//! call: names, FIFO per resource, which topics deliver to which queue, and
//! the queue policies that let them (pure; the calls are in the parent).

use serde_json::{json, Value};

/// FIFO, chosen per resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fifo {
    /// The run-requests topic and the runner's queue (they must match).
    pub run_requests: bool,
    pub projection_updates: bool,
    pub run_lifecycle: bool,
}

impl Fifo {
    pub fn all(fifo: bool) -> Self {
        Self {
            run_requests: fifo,
            projection_updates: fifo,
            run_lifecycle: fifo,
        }
    }
}

/// Raw (no SNS envelope) or enveloped delivery, per subscription. The
/// workers read both; what a runner reads depends on the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDelivery {
    pub run_requests: bool,
    pub projection_updates: bool,
    pub run_lifecycle: bool,
}

impl Default for RawDelivery {
    fn default() -> Self {
        Self {
            run_requests: true,
            projection_updates: true,
            run_lifecycle: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProvisionSpec {
    /// Prepended to every name (e.g. `dev-`), so that several stacks share an account.
    pub prefix: String,
    pub fifo: Fifo,
    pub output_bucket: String,
    /// Receives before SQS itself moves a message to the DLQ (a backstop
    /// behind the workers' own `MAX_RECEIVE_COUNT`).
    pub max_receive_count: u32,
    /// Publish run requests to this existing topic instead of creating one.
    pub run_requests_topic_arn: Option<String>,
    /// Existing topics the runner publishes lifecycle events to.
    pub run_lifecycle_topic_arns: Vec<String>,
    /// Existing topics the producer publishes projection updates to.
    pub projection_updates_topic_arns: Vec<String>,
    pub raw: RawDelivery,
}

impl ProvisionSpec {
    pub fn new(prefix: &str, output_bucket: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            fifo: Fifo::default(),
            output_bucket: output_bucket.to_string(),
            max_receive_count: 5,
            run_requests_topic_arn: None,
            run_lifecycle_topic_arns: Vec::new(),
            projection_updates_topic_arns: Vec::new(),
            raw: RawDelivery::default(),
        }
    }
}

pub fn is_fifo_arn(arn: &str) -> bool {
    arn.ends_with(".fifo")
}

/// Why a spec cannot be built: SNS delivers FIFO topics only to FIFO queues
/// and standard topics only to standard queues.
pub fn check(spec: &ProvisionSpec) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut kind_of = |what: &str, flag: &str, queue_fifo: bool, topics: &[String]| {
        for t in topics {
            if is_fifo_arn(t) != queue_fifo {
                problems.push(format!(
                    "{what}: topic {t} is {} but the queue is {}; {}",
                    kind(is_fifo_arn(t)),
                    kind(queue_fifo),
                    if is_fifo_arn(t) {
                        format!("pass {flag} (SNS delivers FIFO topics to FIFO queues only)")
                    } else {
                        format!("drop {flag} and --fifo (SNS delivers standard topics to standard queues only)")
                    }
                ));
            }
        }
    };
    kind_of(
        "run-lifecycle queue",
        "--fifo-run-lifecycle",
        spec.fifo.run_lifecycle,
        &spec.run_lifecycle_topic_arns,
    );
    kind_of(
        "projection-updates queue",
        "--fifo-projection-updates",
        spec.fifo.projection_updates,
        &spec.projection_updates_topic_arns,
    );
    if let Some(t) = &spec.run_requests_topic_arn {
        kind_of(
            "runner's run-requests queue",
            "--fifo-run-requests",
            spec.fifo.run_requests,
            std::slice::from_ref(t),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn kind(fifo: bool) -> &'static str {
    if fifo {
        "FIFO"
    } else {
        "standard"
    }
}

/// A queue's name with the `.fifo` suffix when FIFO.
pub fn queue_name(prefix: &str, base: &str, fifo: bool) -> String {
    format!("{prefix}{base}{}", if fifo { ".fifo" } else { "" })
}

/// The policy that lets each of `topics` deliver to the queue `queue_arn` (on
/// AWS a queue refuses SNS otherwise).
pub fn queue_policy(queue_arn: &str, topics: &[String]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "FromSubscribedTopics",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topics}}
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        f: Fifo,
        lifecycle: &[&str],
        updates: &[&str],
        requests: Option<&str>,
    ) -> ProvisionSpec {
        ProvisionSpec {
            fifo: f,
            run_lifecycle_topic_arns: lifecycle.iter().map(|s| s.to_string()).collect(),
            projection_updates_topic_arns: updates.iter().map(|s| s.to_string()).collect(),
            run_requests_topic_arn: requests.map(str::to_string),
            ..ProvisionSpec::new("p-", "b")
        }
    }

    #[test]
    fn topic_and_queue_kinds_must_match() {
        let lifecycle_fifo = Fifo {
            run_lifecycle: true,
            ..Fifo::default()
        };
        let three = [
            "arn:t:started.fifo",
            "arn:t:heartbeat.fifo",
            "arn:t:completed.fifo",
        ];
        let cases: Vec<(ProvisionSpec, &[&str])> = vec![
            (spec(lifecycle_fifo, &three, &["arn:t:ingest"], None), &[]),
            (
                spec(
                    Fifo::default(),
                    &["arn:t:a", "arn:t:b"],
                    &[],
                    Some("arn:t:req"),
                ),
                &[],
            ),
            (
                spec(Fifo::default(), &three[..1], &[], None),
                &["pass --fifo-run-lifecycle"],
            ),
            (
                spec(Fifo::all(true), &three, &["arn:t:ingest"], None),
                &["drop --fifo-projection-updates"],
            ),
            (
                spec(Fifo::default(), &[], &[], Some("arn:t:req.fifo")),
                &["pass --fifo-run-requests"],
            ),
            (
                spec(lifecycle_fifo, &["arn:t:a.fifo", "arn:t:b"], &[], None),
                &["topic arn:t:b is standard but the queue is FIFO"],
            ),
        ];
        for (s, want) in cases {
            let got = check(&s).err().unwrap_or_default();
            assert_eq!(got.len(), want.len(), "{s:?}: {got:?}");
            for (g, w) in got.iter().zip(want.iter()) {
                assert!(g.contains(w), "{g:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn names_and_policies() {
        assert_eq!(
            queue_name("p-", "run-lifecycle", true),
            "p-run-lifecycle.fifo"
        );
        assert_eq!(
            queue_name("", "run-lifecycle-dlq", false),
            "run-lifecycle-dlq"
        );
        let p = queue_policy("arn:q", &["arn:t1".into(), "arn:t2".into()]);
        assert_eq!(
            p["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"],
            json!(["arn:t1", "arn:t2"])
        );
        assert_eq!(p["Statement"][0]["Resource"], "arn:q");
        assert_eq!(
            p["Statement"][0]["Principal"]["Service"],
            "sns.amazonaws.com"
        );
    }
}
