//! The HTTP client for streamed chat completions and its timing measurement.

pub mod endpoint;
pub mod http;
pub mod sse;

pub use endpoint::{EndpointError, EndpointProblem, base_url, chat_completions_url};
pub use http::{ClientError, TlsOptions, build_http_client};
pub use sse::{SseEvent, SseParser, UnterminatedTail};
