//! What stands between the network and the handlers, as tower and tower-http
//! layers: security headers on every response, a request timeout, a body
//! limit, load shedding past a bound of requests in flight, and the API's
//! error shape on every error answer, whichever layer or part of the
//! framework produced it.

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::http::{header, HeaderName, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use super::error::ApiError;
use super::ApiState;
pub use crate::config::ApiLimits;

/// Only the console's own origin: its script, style and API calls come from
/// the server itself; nothing may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Past `max_in_flight` requests at once, the routes under it answer 503
/// with `Retry-After` at once instead of queueing without limit. One
/// semaphore is shared by every route of `router`.
pub fn shed_load(router: Router<ApiState>, max_in_flight: usize) -> Router<ApiState> {
    router.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                ApiError::unavailable("the server has too many requests in flight; try again")
            }))
            .load_shed()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                max_in_flight.max(1),
            )),
    )
}

/// The outer layers, around every route and the fallback.
pub fn outer(router: Router, limits: &ApiLimits) -> Router {
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(axum::middleware::map_response(error_shape))
        .layer(header(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
}

/// Headers of a bare error answer that the error shape keeps.
const KEPT: [HeaderName; 3] = [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE];

/// Gives an error answer that is not already JSON the error shape: the
/// framework's own rejections (a wrong method, an oversized body) and the
/// timeout layer's answer have bare or empty bodies.
async fn error_shape(response: Response<Body>) -> Response<Body> {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match status {
        // The router adds `Allow` after this layer has run.
        StatusCode::METHOD_NOT_ALLOWED => {
            "method not allowed here; the Allow header lists the ones this route takes".to_string()
        }
        StatusCode::SERVICE_UNAVAILABLE if text.trim().is_empty() => {
            "the request took longer than the server allows; try again".to_string()
        }
        _ if text.trim().is_empty() => status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_string(),
        _ => text.chars().filter(|c| !c.is_control()).take(500).collect(),
    };
    let mut shaped = ApiError::for_status(status, message).into_response();
    for name in KEPT {
        if let Some(v) = parts.headers.get(&name) {
            shaped.headers_mut().insert(name, v.clone());
        }
    }
    shaped
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn shaped(
        status: StatusCode,
        body: &'static str,
        allow: Option<&'static str>,
    ) -> (StatusCode, serde_json::Value, Option<String>) {
        let mut r = Response::builder().status(status);
        if let Some(a) = allow {
            r = r.header(header::ALLOW, a);
        }
        let out = error_shape(r.body(Body::from(body)).unwrap()).await;
        let st = out.status();
        let allow = out
            .headers()
            .get(header::ALLOW)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(out.into_body(), 10_000).await.unwrap();
        (st, serde_json::from_slice(&bytes).unwrap(), allow)
    }

    #[tokio::test]
    async fn bare_error_answers_get_the_error_shape_and_keep_their_status() {
        let (st, body, allow) = shaped(StatusCode::METHOD_NOT_ALLOWED, "", Some("GET,HEAD")).await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Allow header"));
        assert_eq!(allow.as_deref(), Some("GET,HEAD"));
        let (st, body, _) =
            shaped(StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded", None).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["message"], "length limit exceeded");
        let (_, body, _) = shaped(StatusCode::SERVICE_UNAVAILABLE, "", None).await;
        assert_eq!(body["error"]["code"], "unavailable");
    }

    #[tokio::test]
    async fn success_and_json_errors_pass_untouched() {
        let ok = Response::new(Body::from("plain"));
        let out = error_shape(ok).await;
        let bytes = axum::body::to_bytes(out.into_body(), 100).await.unwrap();
        assert_eq!(&bytes[..], b"plain");
        let json = ApiError::not_found("no such run").into_response();
        let out = error_shape(json).await;
        let bytes = axum::body::to_bytes(out.into_body(), 1000).await.unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains("no such run"));
    }
}
