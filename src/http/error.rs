//! The one error type at the HTTP edge and the response envelopes.
//!
//! Success: `{"success": true, "data": …}`. Failure: `{"success": false, "error": {"code", "message"}}`.
//! A 5xx never carries internal text: the detail is logged, the client gets a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Status {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "NOT_FOUND", m),
            ApiError::Status {
                status,
                code,
                message,
            } => (status, code, message),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", m),
            ApiError::Internal(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "internal error answering a request"
                );
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "internal error; see the daemon's log".to_owned(),
                )
            }
        };
        let body = json!({"success": false, "error": {"code": code, "message": message}});
        (status, Json(body)).into_response()
    }
}

/// `{"success": true, "data": …}`.
pub fn ok<T: Serialize>(data: T) -> Response {
    Json(json!({"success": true, "data": data})).into_response()
}

pub type ApiResult = Result<Response, ApiError>;
