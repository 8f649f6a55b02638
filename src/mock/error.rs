//! Errors of the mock engine: [`MockError`] for setup and serving, and the OpenAI-style error
//! bodies that handlers send to clients.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::content::ContentError;
use crate::tokenizer::TokenizerError;

/// A failure to set up or run the mock engine.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("failed to load tokenizer {path}")]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: TokenizerError,
    },
    #[error("failed to prepare output text for tokenizer {tokenizer}")]
    Content {
        tokenizer: String,
        #[source]
        source: ContentError,
    },
    #[error("invalid block size 0: a KV-cache block holds at least one token")]
    InvalidBlockSize,
    #[error("invalid engine latency model: {0}")]
    InvalidEngine(String),
    #[error("invalid fault settings: {0}")]
    InvalidFaults(String),
    #[error("failed to bind {addr}; pass another --port, or stop the process that uses it")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("failed to listen for Ctrl-C and SIGTERM")]
    Signal {
        #[source]
        source: io::Error,
    },
}

/// An HTTP error in the body format of recent vLLM releases:
/// `{"error": {"message", "type", "param", "code"}}`, where `code` repeats the HTTP status.
/// Older releases sent the same fields flat, beside `"object": "error"`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    param: Option<&'static str>,
    message: String,
    /// Whether fault injection produced the error, which is then logged at debug level only.
    injected: bool,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "BadRequestError",
            param: None,
            message: message.into(),
            injected: false,
        }
    }

    /// Creates the 404 that vLLM sends when `model` is not a served model name.
    pub(crate) fn model_not_found(model: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "NotFoundError",
            param: Some("model"),
            message: format!("The model `{model}` does not exist."),
            injected: false,
        }
    }

    /// Creates an injected HTTP error with vLLM's error type for `status`.
    pub(crate) fn injected(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = match status {
            StatusCode::TOO_MANY_REQUESTS => "RateLimitError",
            StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailableError",
            _ => "InternalServerError",
        };
        Self {
            status,
            kind,
            param: None,
            message: message.into(),
            injected: true,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "InternalServerError",
            param: None,
            message: message.into(),
            injected: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() && !self.injected {
            tracing::error!(status = self.status.as_u16(), message = %self.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), message = %self.message, "request rejected");
        }
        let body = serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.status.as_u16(),
            }
        });
        (self.status, Json(body)).into_response()
    }
}
