//! API errors: `{"error": {"code", "message"}}` with the right status. Bad
//! input is a 400, an unknown id a 404; a store error is classified here,
//! where it is handled and logged once: data the database refused (SQLSTATE
//! classes 22 and 23) is the client's 400, logged at debug; an unreachable
//! database is a 503 with `Retry-After`, logged at error; anything else is a
//! 500, logged at error.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::dto::{ErrorBody, ErrorDetail};
use crate::store::StoreError;

/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A 503: the client may try again after `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The error shape for any status, e.g. one the HTTP framework or a
    /// tower layer answered with a bare body.
    pub fn for_status(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_client_error() => "bad_request",
            _ => "internal",
        };
        Self::new(status, code, message)
    }
}

/// What a store error means to an API client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailure {
    /// The database refused the values of the request (SQLSTATE 22, 23).
    BadData,
    /// The database cannot be reached, or is shutting down, or the pool
    /// timed out.
    Unavailable,
    /// A bug or an inconsistency: not the client's doing, not transient.
    Internal,
}

impl StoreFailure {
    pub fn of(e: &StoreError) -> Self {
        if e.is_permanent() {
            StoreFailure::BadData
        } else if e.is_unavailable() {
            StoreFailure::Unavailable
        } else {
            StoreFailure::Internal
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let cause = crate::ground::errors::chain(&e);
        match StoreFailure::of(&e) {
            StoreFailure::BadData => {
                tracing::debug!(error = %cause, "the database refused the request's values");
                Self::bad_request("a value of the request is not valid for this API")
            }
            StoreFailure::Unavailable => {
                tracing::error!(error = %cause, "database unavailable");
                Self::unavailable("the database did not answer; try again")
            }
            StoreFailure::Internal => {
                tracing::error!(error = %cause, "database query failed");
                Self::internal("the request failed on the server; it is logged")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

pub type ApiResult<T> = Result<Json<T>, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_answers_carry_retry_after_and_others_do_not() {
        let r = ApiError::unavailable("x").into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = ApiError::bad_request("x").into_response();
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn every_status_gets_a_documented_code() {
        for (status, code) in [
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            (StatusCode::URI_TOO_LONG, "bad_request"),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            (StatusCode::BAD_GATEWAY, "internal"),
        ] {
            assert_eq!(ApiError::for_status(status, "m").code, code, "{status}");
        }
    }

    #[test]
    fn store_errors_are_classified_by_cause() {
        let corrupt = StoreError::Corrupt("bad row".into());
        assert_eq!(StoreFailure::of(&corrupt), StoreFailure::Internal);
        assert_eq!(
            ApiError::from(corrupt).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let timeout = StoreError::Pool(deadpool_postgres::PoolError::Timeout(
            deadpool_postgres::TimeoutType::Wait,
        ));
        assert_eq!(StoreFailure::of(&timeout), StoreFailure::Unavailable);
        assert_eq!(
            ApiError::from(timeout).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
