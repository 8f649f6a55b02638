//! The HTTP client for streamed chat completions and its timing measurement.

pub mod endpoint;
pub mod http;

pub use endpoint::{EndpointError, EndpointProblem, base_url, chat_completions_url};
pub use http::{ClientError, TlsOptions, build_http_client};
