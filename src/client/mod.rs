//! The HTTP client for streamed chat completions and its timing measurement.
//!
//! - [`endpoint`]: turning `--endpoint` into the chat-completions URL.
//! - [`http`]: the shared `reqwest::Client` with its TLS options.
//! - [`sse`]: the incremental Server-Sent Events parser.
//! - [`stream`]: [`ChatClient`], which sends a request and classifies the outcome.
//! - [`measure`]: the timing definitions (TTFT, ITL, E2E) and [`StreamRecord`].
//! - [`error`]: [`ErrorClass`] and [`TurnFailure`].
//!
//! A turn yields either a [`StreamRecord`] with its timings or a [`TurnFailure`] without any, so
//! a failed request can never contribute a latency value.

mod chunk;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod measure;
pub mod sse;
pub mod stream;

pub use endpoint::{EndpointError, EndpointProblem, base_url, chat_completions_url};
pub use error::{ErrorClass, TurnFailure};
pub use http::{ClientError, TlsOptions, build_http_client};
pub use measure::StreamRecord;
pub use sse::{SseEvent, SseParser, UnterminatedTail};
pub use stream::ChatClient;
