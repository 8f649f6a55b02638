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

use super::admin;
use super::config::{DEFAULT_MAX_TOKENS, parse_millis};
use super::engine::MockState;
use super::error::ApiError;
use super::fault::{Fault, FaultKind, FaultOverride};
use super::generation::{Generation, Timing};
use super::metrics;
use super::response::{self, ResponseHeader};
use crate::openai::ChatCompletionRequest;

/// Request header that overrides the time to first token, in milliseconds (a float). Fixed
/// latency model only.
pub const TTFT_HEADER: &str = "x-clawperf-ttft-ms";
/// Request header that overrides the time per output token, in milliseconds (a float). Fixed
/// latency model only.
pub const TPOT_HEADER: &str = "x-clawperf-tpot-ms";
/// Request header that forces a fault kind (such as `stall`) on the request, or `none` to
/// exempt it from the server's fault settings.
pub const FAULT_HEADER: &str = "x-clawperf-fault";
/// Largest request body accepted. A 200k-token prompt is about 1 MB of text, and axum's
/// default limit of 2 MB leaves little room beyond that.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024 * 1024;

/// When a request arrived, stamped before its body is read so that the mock's own parsing and
/// tokenizing never add to the latency it simulates.
#[derive(Debug, Clone, Copy)]
struct Arrival(Instant);

/// Builds the mock engine's routes: `POST /v1/chat/completions`, `GET /v1/models`,
/// `GET /health`, `GET /metrics`, `GET /admin/state` and `GET|PUT|DELETE /admin/faults`. With
/// the engine latency model this also starts the scheduler task, so it must be called inside a
/// Tokio runtime.
pub fn router(state: Arc<MockState>) -> Router {
    state.start_scheduler();
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(list_models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/admin/state", get(admin::state))
        .route(
            "/admin/faults",
            get(admin::get_faults)
                .put(admin::put_faults)
                .delete(admin::delete_faults),
        )
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
    let fault_override = fault_header(&headers)?;
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

    let fault = state.faults().decide(fault_override);
    if let Some(fault) = fault
        && fault.kind.is_http_error()
    {
        return Ok(http_fault(fault));
    }
    let generation =
        Generation::admit(state, arrival, timing, max_tokens, request.messages).await?;
    let header = ResponseHeader::new(&generation, request.model);
    if request.stream {
        Ok(response::stream(generation, header, include_usage, fault))
    } else {
        Ok(response::complete(generation, header, fault).await)
    }
}

/// Builds the response of an injected HTTP error, sent before the request reaches the engine.
fn http_fault(fault: Fault) -> Response {
    let (status, message) = match fault.kind {
        FaultKind::RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            "injected fault: too many requests",
        ),
        FaultKind::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "injected fault: service unavailable",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected fault: internal server error",
        ),
    };
    let mut response = ApiError::injected(status, message).into_response();
    if fault.kind == FaultKind::RateLimited {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(fault.retry_after_s),
        );
    }
    response
}

/// Reads the [`FAULT_HEADER`]: a fault kind, `none`, or absent.
fn fault_header(headers: &HeaderMap) -> Result<FaultOverride, ApiError> {
    let Some(value) = headers.get(FAULT_HEADER) else {
        return Ok(FaultOverride::None);
    };
    let text = value.to_str().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid {FAULT_HEADER} header: expected a fault kind or `none` in ASCII"
        ))
    })?;
    let text = text.trim();
    if text == "none" {
        return Ok(FaultOverride::Suppress);
    }
    text.parse::<FaultKind>()
        .map(FaultOverride::Force)
        .map_err(|reason| ApiError::bad_request(format!("invalid {FAULT_HEADER} header: {reason}")))
}

/// Returns the configured latency with the request's override headers applied.
fn request_timing(headers: &HeaderMap, state: &MockState) -> Result<Timing, ApiError> {
    let config = state.config();
    if state.is_engine_model() {
        for name in [TTFT_HEADER, TPOT_HEADER] {
            if headers.contains_key(name) {
                return Err(ApiError::bad_request(format!(
                    "invalid {name} header: the server runs the engine latency model, where \
                     the scheduler decides token times; drop the header"
                )));
            }
        }
    }
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
        [(
            CONTENT_TYPE,
            metrics::content_type(state.config().metrics_dialect),
        )],
        metrics::render(&state),
    )
        .into_response()
}
