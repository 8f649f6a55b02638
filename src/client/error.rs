//! Failure classes of a chat turn and the failure record that replaces its measurement.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The class of a turn's failure. The serialized and displayed names are the snake_case variant names,
/// so the result JSON and the terminal summary use the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The connection could not be established (refused, DNS, TLS handshake) or was lost before
    /// the response headers arrived.
    Connect,
    /// The whole request, from connecting to the end of the stream, took longer than the
    /// request timeout.
    Timeout,
    /// Nothing arrived for longer than the idle timeout: no response headers after the request
    /// was sent, or no body bytes after the previous ones.
    IdleTimeout,
    /// The server responded with a non-success HTTP status other than 429.
    HttpStatus,
    /// The server responded with HTTP 429 Too Many Requests.
    RateLimited,
    /// The server sent an error object inside a 200 event stream.
    StreamError,
    /// The response was not what a chat-completions stream may contain: a `data:` payload that
    /// is not JSON or not a chunk, or a 200 reply that is neither an event stream nor a
    /// `chat.completion` object.
    MalformedStream,
    /// The stream ended (EOF or a broken connection) before `[DONE]` and before any chunk
    /// carried a `finish_reason`.
    Truncated,
}

impl ErrorClass {
    /// Every class, in declaration order, for reporters that print one row per class.
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::IdleTimeout,
        ErrorClass::HttpStatus,
        ErrorClass::RateLimited,
        ErrorClass::StreamError,
        ErrorClass::MalformedStream,
        ErrorClass::Truncated,
    ];

    /// Returns the snake_case name, the same string serde writes.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::IdleTimeout => "idle_timeout",
            ErrorClass::HttpStatus => "http_status",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::StreamError => "stream_error",
            ErrorClass::MalformedStream => "malformed_stream",
            ErrorClass::Truncated => "truncated",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A turn that produced no measurement. It deliberately carries no latency values, so a failed
/// turn can never enter a latency statistic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnFailure {
    pub class: ErrorClass,
    /// The server's own message where it sent one (HTTP error body, error event), otherwise a
    /// description of what the client observed.
    pub message: String,
    /// The HTTP status of the response, when response headers arrived.
    pub status: Option<u16>,
    /// Time from just before the request was sent until the failure was detected.
    pub elapsed: Duration,
}

impl fmt::Display for TurnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} (HTTP {status}): {}", self.class, self.message),
            None => write!(f, "{}: {}", self.class, self.message),
        }
    }
}

impl std::error::Error for TurnFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_serde_name() {
        for class in ErrorClass::ALL {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{class}\""), "class {class:?}");
        }
    }

    #[test]
    fn failure_display_includes_status() {
        let failure = TurnFailure {
            class: ErrorClass::RateLimited,
            message: "slow down".to_owned(),
            status: Some(429),
            elapsed: Duration::from_millis(3),
        };
        assert_eq!(failure.to_string(), "rate_limited (HTTP 429): slow down");
    }
}
