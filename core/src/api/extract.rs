//! What the API takes from a request's path and query string, checked where
//! it is extracted: valid UTF-8 once percent-decoded, no control characters
//! (NUL among them: PostgreSQL refuses it in text), a length bound, each
//! parameter at most once. Every refusal is a 400 in the API's error shape
//! naming the parameter, so nothing malformed reaches the database.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::error::ApiError;

/// Longest id or code accepted in a path (run ids, metric codes, dataset ids).
pub const MAX_PATH_PARAM: usize = 200;
/// Longest query parameter value.
pub const MAX_QUERY_VALUE: usize = 500;
/// Most query parameters in one request.
const MAX_QUERY_PARAMS: usize = 20;

/// Checks one decoded value: no control characters, at most `max` characters.
pub fn checked_text(what: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{what} is longer than {max} characters"
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ApiError::bad_request(format!(
            "{what} contains the control character U+{:04X}",
            c as u32
        )));
    }
    Ok(())
}

/// Percent-decodes one component of a query string (`+` is a space).
fn decode(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The single path parameter of a route (`{id}` or `{code}`), checked.
#[derive(Debug)]
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| match rejection {
                PathRejection::FailedToDeserializePathParams(e) => match e.into_kind() {
                    ErrorKind::InvalidUtf8InPathParam { key } => ApiError::bad_request(format!(
                        "path parameter {key}: not valid UTF-8 once percent-decoded"
                    )),
                    other => ApiError::bad_request(format!("path: {other}")),
                },
                other => ApiError::internal(format!("path parameters: {}", other.body_text())),
            })?;
        match <[(String, String); 1]>::try_from(params) {
            Ok([(name, value)]) => {
                if value.is_empty() {
                    return Err(ApiError::bad_request(format!(
                        "path parameter {name} must not be empty"
                    )));
                }
                checked_text(&format!("path parameter {name}"), &value, MAX_PATH_PARAM)?;
                Ok(PathParam(value))
            }
            Err(params) => Err(ApiError::internal(format!(
                "a route with {} path parameters uses PathParam",
                params.len()
            ))),
        }
    }
}

/// The query string as name/value pairs, decoded strictly (invalid UTF-8 is
/// refused, not replaced) and checked; a name given twice is refused.
#[derive(Debug, Default)]
pub struct QueryParams(pub Vec<(String, String)>);

impl QueryParams {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            if pairs.len() == MAX_QUERY_PARAMS {
                return Err(ApiError::bad_request(format!(
                    "more than {MAX_QUERY_PARAMS} query parameters"
                )));
            }
            let (raw_name, raw_value) = part.split_once('=').unwrap_or((part, ""));
            let name = decode(raw_name).ok_or_else(|| {
                ApiError::bad_request("a query parameter's name is not valid UTF-8")
            })?;
            checked_text("a query parameter's name", &name, 100)?;
            let value = decode(raw_value).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "query parameter {name:?}: not valid UTF-8 once percent-decoded"
                ))
            })?;
            checked_text(
                &format!("query parameter {name:?}"),
                &value,
                MAX_QUERY_VALUE,
            )?;
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::bad_request(format!(
                    "query parameter {name:?} is given more than once"
                )));
            }
            pairs.push((name, value));
        }
        Ok(Self(pairs))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Self::parse(parts.uri.query())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn refusal(query: &str) -> String {
        QueryParams::parse(Some(query)).unwrap_err().message
    }

    #[test]
    fn queries_are_decoded_strictly_and_every_refusal_names_the_parameter() {
        let ok = QueryParams::parse(Some("metric=a%2Eb&since=2026-11-23T10%3A00%3A00Z&x+y=1+2"))
            .unwrap();
        assert_eq!(
            ok.0,
            [
                ("metric".into(), "a.b".into()),
                ("since".into(), "2026-11-23T10:00:00Z".into()),
                ("x y".into(), "1 2".into())
            ]
        );
        assert!(QueryParams::parse(None).unwrap().0.is_empty());
        assert!(QueryParams::parse(Some("&&")).unwrap().0.is_empty());
        for (query, needle) in [
            ("cursor=%FF%FE%00garbage", "\"cursor\": not valid UTF-8"),
            (
                "cursor=ab%00cd",
                "\"cursor\" contains the control character U+0000",
            ),
            (
                "metric=%1B[31m",
                "\"metric\" contains the control character U+001B",
            ),
            ("limit=1&limit=2", "\"limit\" is given more than once"),
            ("%C3%28=1", "name is not valid UTF-8"),
        ] {
            let m = refusal(query);
            assert!(m.contains(needle), "{query}: {m}");
        }
        let long = format!("metric={}", "é".repeat(MAX_QUERY_VALUE + 1));
        assert!(refusal(&long).contains("longer than 500 characters"));
        let many = (0..=MAX_QUERY_PARAMS)
            .map(|i| format!("p{i}=1"))
            .collect::<Vec<_>>();
        assert!(refusal(&many.join("&")).contains("more than 20"));
    }

    #[test]
    fn text_checks_count_characters_not_bytes() {
        assert!(checked_text("x", &"é".repeat(10), 10).is_ok());
        assert!(checked_text("x", &"é".repeat(11), 10).is_err());
        assert!(checked_text("x", "tab\there", 100).is_err());
        assert!(checked_text("x", "zero\u{200B}width", 100).is_ok());
    }

    proptest! {
        /// Whatever bytes a query carries, it parses to checked pairs or is
        /// refused with a 400: no panic, and nothing with a control
        /// character or invalid UTF-8 gets through.
        #[test]
        fn any_query_is_parsed_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let encoded: String = bytes.iter().map(|b| match b {
                b'&' | b'=' => (*b as char).to_string(),
                b if b.is_ascii_alphanumeric() => (*b as char).to_string(),
                b => format!("%{b:02X}"),
            }).collect();
            match QueryParams::parse(Some(&encoded)) {
                Ok(q) => {
                    for (n, v) in q.0 {
                        prop_assert!(!n.chars().chain(v.chars()).any(char::is_control));
                    }
                }
                Err(e) => prop_assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST),
            }
        }
    }
}
