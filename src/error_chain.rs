//! One-line rendering of an error and its causes, for messages and logs.

use std::error::Error;

/// Formats `error` and each of its sources as `error: cause: cause`.
pub fn error_chain(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
