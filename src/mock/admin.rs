//! The admin endpoints: the engine's internal state as JSON, and fault settings that tests
//! change while a run is going.
//!
//! - `GET /admin/state` returns the counters of [`MockStats`], the scheduler's queues and
//!   KV-cache occupancy (engine latency model only) and the fault settings, from one snapshot.
//! - `GET /admin/faults` returns the fault settings, `PUT /admin/faults` replaces them with a
//!   JSON [`FaultSettings`] (`{"kind": "stall", "rate": 0.5, "stall_s": 2}`; omitted fields
//!   take their defaults), and `DELETE /admin/faults` turns faults off.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Serialize;

use super::engine::{MockState, MockStats, SchedulerState};
use super::error::ApiError;
use super::fault::FaultSettings;

/// The body of `GET /admin/state`.
#[derive(Debug, Serialize)]
pub(crate) struct AdminState {
    /// `fixed` or `engine`.
    latency_model: &'static str,
    counters: StatsBody,
    /// The scheduler's queues and blocks; absent with the fixed latency model.
    scheduler: Option<SchedulerState>,
    /// Fraction of HBM blocks in use, as `/metrics` reports it.
    kv_cache_usage: f64,
    faults: FaultSettings,
}

/// [`MockStats`] with the field names of the JSON body.
#[derive(Debug, Serialize)]
struct StatsBody {
    requests: u64,
    in_flight: u64,
    running: u64,
    waiting: u64,
    prefix_cache_queries: u64,
    prefix_cache_hits: u64,
    external_prefix_cache_queries: u64,
    external_prefix_cache_hits: u64,
    prompt_tokens: u64,
    generation_tokens: u64,
    hbm_cached_blocks: u64,
    external_cached_blocks: u64,
    kv_blocks_in_use: u64,
    hbm_evictions: u64,
    faults_injected: u64,
    engine_steps: u64,
}

impl From<MockStats> for StatsBody {
    fn from(stats: MockStats) -> Self {
        Self {
            requests: stats.requests,
            in_flight: stats.in_flight,
            running: stats.running,
            waiting: stats.waiting,
            prefix_cache_queries: stats.prefix_cache_queries,
            prefix_cache_hits: stats.prefix_cache_hits,
            external_prefix_cache_queries: stats.external_prefix_cache_queries,
            external_prefix_cache_hits: stats.external_prefix_cache_hits,
            prompt_tokens: stats.prompt_tokens_total,
            generation_tokens: stats.generation_tokens_total,
            hbm_cached_blocks: stats.hbm_cached_blocks,
            external_cached_blocks: stats.external_cached_blocks,
            kv_blocks_in_use: stats.kv_blocks_in_use,
            hbm_evictions: stats.hbm_evictions,
            faults_injected: stats.faults_injected,
            engine_steps: stats.engine_steps,
        }
    }
}

pub(crate) async fn state(State(state): State<Arc<MockState>>) -> Json<AdminState> {
    // The counters and the scheduler come from two lock acquisitions; the scheduler part is
    // only for inspection, and the counters are consistent among themselves.
    let stats = state.stats();
    Json(AdminState {
        latency_model: if state.is_engine_model() {
            "engine"
        } else {
            "fixed"
        },
        kv_cache_usage: state.kv_cache_usage(&stats),
        counters: stats.into(),
        scheduler: state.scheduler_state(),
        faults: state.faults().settings(),
    })
}

pub(crate) async fn get_faults(State(state): State<Arc<MockState>>) -> Json<FaultSettings> {
    Json(state.faults().settings())
}

pub(crate) async fn put_faults(
    State(state): State<Arc<MockState>>,
    body: Result<Json<FaultSettings>, JsonRejection>,
) -> Result<Json<FaultSettings>, ApiError> {
    let Json(settings) = body.map_err(|rejection| {
        ApiError::bad_request(format!(
            "invalid fault settings: {}; expected {{\"kind\": KIND or null, \"rate\": 0..1, \
             \"stall_s\": SECONDS, \"retry_after_s\": SECONDS}}",
            rejection.body_text()
        ))
    })?;
    settings.validate().map_err(ApiError::bad_request)?;
    tracing::info!(
        kind = settings.kind.map(|kind| kind.as_str()),
        rate = settings.rate,
        "fault settings replaced"
    );
    state.faults().set(settings);
    Ok(Json(settings))
}

pub(crate) async fn delete_faults(State(state): State<Arc<MockState>>) -> Json<FaultSettings> {
    let settings = FaultSettings {
        kind: None,
        ..state.faults().settings()
    };
    state.faults().set(settings);
    tracing::info!("fault injection turned off");
    Json(settings)
}
