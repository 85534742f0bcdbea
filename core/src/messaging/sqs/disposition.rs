//! What becomes of a message once its handler has answered: a pure function
//! of the handler's result, the message's receive count and the queue's
//! limit. No I/O: the loop carries the decision out.

use super::outcome::{HandlerError, Outcome};
pub use crate::domain::events::DeadLetterReason;
use crate::ground::errors::chain as error_chain;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled (processed or ignored): delete it.
    Delete,
    /// Copy it to the DLQ with `reason` and `message`, then delete it.
    DeadLetter {
        reason: DeadLetterReason,
        message: String,
    },
    /// Leave it on the queue, invisible for the back-off of this receive.
    BackOff { error: String },
}

pub fn decide(
    result: &Result<Outcome, HandlerError>,
    receive_count: u32,
    max_receive_count: u32,
) -> Disposition {
    match result {
        Ok(_) => Disposition::Delete,
        Err(HandlerError::Invalid(e)) => Disposition::DeadLetter {
            reason: e.reason(),
            message: e.to_string(),
        },
        Err(e @ HandlerError::Unprocessable(_)) => Disposition::DeadLetter {
            reason: DeadLetterReason::Unprocessable,
            message: error_chain(e),
        },
        Err(e @ HandlerError::Transient(_)) if receive_count >= max_receive_count => {
            Disposition::DeadLetter {
                reason: DeadLetterReason::RetryExhausted,
                message: format!("gave up after {receive_count} receives: {}", error_chain(e)),
            }
        }
        Err(e @ HandlerError::Transient(_)) => Disposition::BackOff {
            error: error_chain(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::EventError;
    use crate::messaging::sqs::outcome::Ignored;

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;

    #[derive(Debug, thiserror::Error)]
    #[error("duplicate key value violates unique constraint \"x\"")]
    struct Constraint;

    fn invalid_json() -> Result<Outcome, HandlerError> {
        Err(EventError::InvalidJson("expected value".into()).into())
    }
    fn invalid_event() -> Result<Outcome, HandlerError> {
        Err(EventError::InvalidEvent("missing dataset_id".into()).into())
    }
    fn unprocessable() -> Result<Outcome, HandlerError> {
        Err(HandlerError::Unprocessable(Box::new(Constraint)))
    }
    fn transient() -> Result<Outcome, HandlerError> {
        Err(HandlerError::Transient(Box::new(Refused)))
    }

    #[test]
    fn every_result_has_its_disposition() {
        use DeadLetterReason::*;
        type Case = (
            &'static str,
            fn() -> Result<Outcome, HandlerError>,
            u32,
            Disposition,
        );
        let dead = |reason, message: &str| Disposition::DeadLetter {
            reason,
            message: message.into(),
        };
        let cases: Vec<Case> = vec![
            ("processed", || Ok(Outcome::processed("runs queued 1")), 1, Disposition::Delete),
            ("ignored", || Ok(Outcome::Ignored(Ignored::Duplicate)), 1, Disposition::Delete),
            ("processed on the last receive", || Ok(Outcome::processed("")), 10, Disposition::Delete),
            ("not JSON", invalid_json, 1, dead(InvalidJson, "invalid JSON: expected value")),
            ("not an event", invalid_event, 1, dead(InvalidEvent, "invalid event: missing dataset_id")),
            ("invalid on a late receive", invalid_event, 9, dead(InvalidEvent, "invalid event: missing dataset_id")),
            (
                "refused by the store at once",
                unprocessable,
                1,
                dead(Unprocessable, "the message cannot be processed: duplicate key value violates unique constraint \"x\""),
            ),
            (
                "transient, receives left",
                transient,
                1,
                Disposition::BackOff { error: "connection refused".into() },
            ),
            (
                "transient, one receive left",
                transient,
                9,
                Disposition::BackOff { error: "connection refused".into() },
            ),
            (
                "transient at the limit",
                transient,
                10,
                dead(RetryExhausted, "gave up after 10 receives: connection refused"),
            ),
            (
                "transient past the limit",
                transient,
                12,
                dead(RetryExhausted, "gave up after 12 receives: connection refused"),
            ),
        ];
        for (name, result, receive_count, want) in cases {
            assert_eq!(decide(&result(), receive_count, 10), want, "{name}");
        }
    }

    /// The `error_type` table of docs/contracts.md lists exactly the
    /// reasons the code writes, and the other way round.
    #[test]
    fn reasons_are_the_documented_attribute_values() {
        let documented = crate::doc_tables::first_column(
            include_str!("../../../../docs/contracts.md"),
            "| `error_type` | cause | what to do |",
        );
        let written: Vec<&str> = DeadLetterReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(documented, written);
    }
}
