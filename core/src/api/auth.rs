//! The bearer token (`API_TOKEN`) and what it guards (`API_AUTH`): the
//! actions always, the reads too with `API_AUTH=all`. Checked by
//! tower-http's `ValidateRequestHeaderLayer` before any handler or extractor
//! runs, so an anonymous client learns nothing from a guarded route.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use axum::response::IntoResponse;
use sha2::{Digest, Sha256};
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use super::error::ApiError;
pub use crate::config::AuthScope;

/// The server's token, kept as its SHA-256: comparing digests takes the same
/// time whatever the given token's length or how much of it is right.
#[derive(Clone)]
pub struct Token(Arc<[u8; 32]>);

impl Token {
    pub fn new(token: &str) -> Self {
        Self(Arc::new(digest(token)))
    }

    fn matches(&self, given: &str) -> bool {
        constant_time_eq::constant_time_eq_32(&digest(given), &self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Why a request is refused, or `None` when `authorization` carries the
/// token. The scheme is matched without regard to case (RFC 9110 §11.1).
pub fn refusal(token: Option<&Token>, authorization: Option<&[u8]>) -> Option<ApiError> {
    let Some(token) = token else {
        return Some(ApiError::forbidden(
            "actions are off: the server has no API_TOKEN; set it to enable cancel and trigger",
        ));
    };
    let missing = || {
        ApiError::unauthorized("this request needs the header Authorization: Bearer <API_TOKEN>")
    };
    let Some(value) = authorization else {
        return Some(missing());
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return Some(missing());
    };
    let (scheme, given) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Some(missing());
    }
    let given = given.trim();
    if given.is_empty() {
        return Some(ApiError::unauthorized("the bearer token is empty"));
    }
    (!token.matches(given))
        .then(|| ApiError::unauthorized("the bearer token is not the server's API_TOKEN"))
}

/// The check as a tower-http validator.
#[derive(Clone)]
pub struct RequireToken(Option<Token>);

impl<B> ValidateRequest<B> for RequireToken {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<Body>> {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        match refusal(self.0.as_ref(), given) {
            None => Ok(()),
            Some(e) => {
                tracing::warn!(client = %client_of(request), path = %request.uri().path(),
                    reason = %e.message, "refused a request: no valid API token");
                let unauthorized = e.status == axum::http::StatusCode::UNAUTHORIZED;
                let mut response = e.into_response();
                if unauthorized {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"orchestrator\""),
                    );
                }
                Err(response)
            }
        }
    }
}

/// Where a request came from, for the log: the peer address, and what a
/// proxy says in `X-Forwarded-For` (as stated, unverified).
pub fn client_of<B>(request: &Request<B>) -> String {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.to_string());
    match request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(fwd) => format!(
            "{peer} (forwarded for {})",
            fwd.chars().take(200).collect::<String>()
        ),
        None => peer,
    }
}

/// The layer that refuses requests without the token (403 when the server
/// has none).
pub fn require(token: Option<Token>) -> ValidateRequestHeaderLayer<RequireToken> {
    ValidateRequestHeaderLayer::custom(RequireToken(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    const RIGHT: &str = "a-test-token-of-32-characters-xx";

    fn status(token: Option<&Token>, header: Option<&str>) -> Option<StatusCode> {
        refusal(token, header.map(str::as_bytes)).map(|e| e.status)
    }

    #[test]
    fn only_the_exact_token_passes_whatever_the_scheme_case() {
        let t = Token::new(RIGHT);
        let same_length_wrong = "b-test-token-of-32-characters-xx";
        assert_eq!(same_length_wrong.len(), RIGHT.len());
        let cases: [(Option<&str>, Option<StatusCode>); 11] = [
            (Some("Bearer a-test-token-of-32-characters-xx"), None),
            (Some("bearer a-test-token-of-32-characters-xx"), None),
            (Some("BEARER  a-test-token-of-32-characters-xx "), None),
            (
                Some("Bearer b-test-token-of-32-characters-xx"),
                Some(StatusCode::UNAUTHORIZED),
            ),
            (
                Some("Bearer a-test-token-of-32"),
                Some(StatusCode::UNAUTHORIZED),
            ),
            (
                Some("Bearer a-test-token-of-32-characters-xxx"),
                Some(StatusCode::UNAUTHORIZED),
            ),
            (Some("Bearer "), Some(StatusCode::UNAUTHORIZED)),
            (Some("Bearer"), Some(StatusCode::UNAUTHORIZED)),
            (
                Some("Basic a-test-token-of-32-characters-xx"),
                Some(StatusCode::UNAUTHORIZED),
            ),
            (
                Some("a-test-token-of-32-characters-xx"),
                Some(StatusCode::UNAUTHORIZED),
            ),
            (None, Some(StatusCode::UNAUTHORIZED)),
        ];
        for (header, want) in cases {
            assert_eq!(status(Some(&t), header), want, "{header:?}");
        }
        assert_eq!(
            refusal(Some(&t), Some(b"Bearer \xff\xfe")).map(|e| e.status),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(status(None, Some("Bearer x")), Some(StatusCode::FORBIDDEN));
    }

    #[test]
    fn a_refusal_says_how_to_authenticate() {
        let mut check = RequireToken(Some(Token::new(RIGHT)));
        let mut req = Request::new(());
        let r = check.validate(&mut req).unwrap_err();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"orchestrator\""
        );
        let mut off = RequireToken(None);
        let r = off.validate(&mut Request::new(())).unwrap_err();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert!(!format!("{:?}", Token::new(RIGHT)).contains("test"));
    }

    #[test]
    fn the_scope_parses_from_its_two_names() {
        assert_eq!("all".parse::<AuthScope>(), Ok(AuthScope::All));
        assert_eq!("actions".parse::<AuthScope>(), Ok(AuthScope::Actions));
        assert!("ALL".parse::<AuthScope>().is_err());
        assert_eq!(AuthScope::default().as_str(), "actions");
    }
}
