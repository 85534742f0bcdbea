//! Writing an error for people: the error and its causes, outermost first.
//! Errors keep their causes as `#[source]`; where one is logged or stored
//! (a dead letter's `error_message`, an outbox row's `last_error`) it is
//! written with [`chain`].

/// An error and its causes, outermost first: `a: b: c`.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        // `#[error(transparent)]` wrappers repeat their cause word for word.
        if !text.ends_with(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;

    #[test]
    fn error_chains_name_every_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Refused);
        #[derive(Debug, thiserror::Error)]
        #[error(transparent)]
        struct Wrapper(#[from] Refused);
        assert_eq!(chain(&Outer(Refused)), "outer: connection refused");
        assert_eq!(chain(&Wrapper(Refused)), "connection refused");
    }
}
