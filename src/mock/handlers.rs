//! The HTTP routes of the mock engine and their handlers.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use tokio::time::Instant;

use super::config::{DEFAULT_MAX_TOKENS, parse_millis};
use super::engine::MockState;
use super::error::ApiError;
use super::generation::{Generation, Timing};
use super::metrics;
use super::response::{self, ResponseHeader};
use crate::openai::ChatCompletionRequest;

/// Request header that overrides the time to first token, in milliseconds (a float).
pub const TTFT_HEADER: &str = "x-clawperf-ttft-ms";
/// Request header that overrides the time per output token, in milliseconds (a float).
pub const TPOT_HEADER: &str = "x-clawperf-tpot-ms";
/// Largest request body accepted. A 200k-token prompt is about 1 MB of text, and axum's
/// default limit of 2 MB leaves little room beyond that.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024 * 1024;

/// When a request arrived, stamped before its body is read so that the mock's own parsing and
/// tokenizing never add to the latency it simulates.
#[derive(Debug, Clone, Copy)]
struct Arrival(Instant);

/// Builds the mock engine's routes: `POST /v1/chat/completions`, `GET /v1/models`,
/// `GET /health` and `GET /metrics`.
pub fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(list_models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        // The outermost layer, so it runs before anything reads the body.
        .layer(middleware::from_fn(stamp_arrival))
        .with_state(state)
}

async fn stamp_arrival(mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Arrival(Instant::now()));
    next.run(request).await
}

async fn chat_completions(
    State(state): State<Arc<MockState>>,
    Extension(Arrival(arrival)): Extension<Arrival>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let timing = request_timing(&headers, &state)?;
    let request: ChatCompletionRequest = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid request body: {err}")))?;
    if let Some(served) = &state.config().served_model_name
        && request.model != *served
    {
        return Err(ApiError::model_not_found(&request.model));
    }
    let max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 {
        return Err(ApiError::bad_request(
            "invalid max_tokens 0: a request must generate at least 1 token",
        ));
    }
    let include_usage = request
        .stream_options
        .is_some_and(|options| options.include_usage);

    let generation =
        Generation::admit(state, arrival, timing, max_tokens, request.messages).await?;
    let header = ResponseHeader::new(&generation, request.model);
    if request.stream {
        Ok(response::stream(generation, header, include_usage))
    } else {
        Ok(response::complete(generation, header).await)
    }
}

/// Returns the configured latency with the request's override headers applied.
fn request_timing(headers: &HeaderMap, state: &MockState) -> Result<Timing, ApiError> {
    let config = state.config();
    Ok(Timing {
        ttft: header_millis(headers, TTFT_HEADER)?.unwrap_or(config.ttft),
        tpot: header_millis(headers, TPOT_HEADER)?.unwrap_or(config.tpot),
    })
}

fn header_millis(headers: &HeaderMap, name: &str) -> Result<Option<Duration>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let invalid = |reason: &str| {
        let value_text = String::from_utf8_lossy(value.as_bytes());
        ApiError::bad_request(format!("invalid {name} header `{value_text}`: {reason}"))
    };
    let text = value
        .to_str()
        .map_err(|_| invalid("expected a number of milliseconds"))?;
    parse_millis(text)
        .map(Some)
        .map_err(|reason| invalid(&reason))
}

/// Lists the one model, in the OpenAI list format.
async fn list_models(State(state): State<Arc<MockState>>) -> Json<serde_json::Value> {
    let created = state
        .started_at()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let name = state.model_name();
    Json(serde_json::json!({
        "object": "list",
        "data": [{
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "clawperf",
            "root": name,
            "parent": null,
        }],
    }))
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn metrics(State(state): State<Arc<MockState>>) -> Response {
    (
        [(CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&state),
    )
        .into_response()
}
