//! The HTTP client for streamed chat completions and its timing measurement.

pub mod endpoint;

pub use endpoint::{EndpointError, EndpointProblem, base_url, chat_completions_url};
