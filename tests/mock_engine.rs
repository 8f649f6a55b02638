//! The mock's engine latency model, KV capacity, admin state and metric dialects, measured
//! through clawperf's own runner. Every server is started by the test on 127.0.0.1, port 0.

use std::time::Duration;

use clap::Parser;
use clawperf::cli::Cli;
use clawperf::mock::{EngineParams, LatencyModel, MetricsDialect, MockConfig, MockServer};
use clawperf::prom::{Backend, Exposition};
use clawperf::result::{RunResult, TurnRecord};
use clawperf::runner;
use serde_json::Value;

/// Engine parameters with every time set to zero, for tests to override.
fn engine_params() -> EngineParams {
    EngineParams {
        prefill_us_per_token: 0.0,
        external_load_us_per_token: 0.0,
        decode_step_base_us: 0.0,
        decode_step_us_per_seq: 0.0,
        ..EngineParams::default()
    }
}

fn engine_config(params: EngineParams) -> MockConfig {
    MockConfig {
        latency_model: LatencyModel::Engine(params),
        ..MockConfig::default()
    }
}

async fn start(config: MockConfig) -> MockServer {
    MockServer::start(config)
        .await
        .expect("start the mock server")
}

/// Runs clawperf against `server` with `--seed 42`, its metrics endpoint and `options`.
async fn run_against(server: &MockServer, options: &[&str]) -> RunResult {
    let base_url = server.base_url();
    let metrics_url = server.metrics_url();
    let mut argv = vec![
        "clawperf",
        "--endpoint",
        &base_url,
        "--model",
        "mock",
        "--metrics-endpoint",
        &metrics_url,
        "--seed",
        "42",
    ];
    argv.extend_from_slice(options);
    let config = Cli::try_parse_from(argv)
        .expect("valid arguments")
        .bench
        .validate()
        .expect("valid config");
    runner::run(config, None).await.expect("the run completes")
}

fn successful_turns(result: &RunResult) -> Vec<&TurnRecord> {
    let turns: Vec<&TurnRecord> = result.users.iter().flat_map(|user| &user.turns).collect();
    for turn in &turns {
        assert!(
            turn.success,
            "turn {} failed: {:?}",
            turn.turn_id, turn.error
        );
    }
    turns
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url)
        .await
        .expect("send the request")
        .json()
        .await
        .expect("a JSON body")
}

async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("send the request")
        .text()
        .await
        .expect("a text body")
}

fn admin_url(server: &MockServer, path: &str) -> String {
    format!("http://{}{path}", server.addr())
}

const PREFILL_US: f64 = 20.0;
const STEP_BASE_US: f64 = 2000.0;
const BATCHED_TOKENS: usize = 8192;

/// Returns the model's TTFT in ms for one request alone: its uncached tokens prefilled in
/// chunks of `BATCHED_TOKENS`, one step each.
fn predicted_ttft_ms(prompt_tokens: u64, cached_tokens: u64) -> f64 {
    let uncached = (prompt_tokens - cached_tokens) as usize;
    let steps = uncached.div_ceil(BATCHED_TOKENS);
    (steps as f64 * STEP_BASE_US + uncached as f64 * PREFILL_US) / 1000.0
}

/// Runs the seed's context sizes (15000 + 5000 + 5000 tokens) for 3 turns of 8 output tokens.
async fn run_seed_context(prefix_caching: bool) -> RunResult {
    let server = start(MockConfig {
        prefix_caching,
        ..engine_config(EngineParams {
            prefill_us_per_token: PREFILL_US,
            decode_step_base_us: STEP_BASE_US,
            max_num_batched_tokens: BATCHED_TOKENS,
            ..engine_params()
        })
    })
    .await;
    let result = run_against(
        &server,
        &["--output-tokens-per-turn", "8", "--max-turns", "3"],
    )
    .await;
    server.shutdown().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_drops_by_cached_prefill() {
    let cached = run_seed_context(true).await;
    let uncached = run_seed_context(false).await;
    let cached_turns = successful_turns(&cached);
    let uncached_turns = successful_turns(&uncached);

    for turn in cached_turns.iter().chain(&uncached_turns) {
        let prompt = turn.server_prompt_tokens.unwrap();
        let hits = turn.server_cached_tokens.unwrap();
        let predicted = predicted_ttft_ms(prompt, hits);
        let measured = turn.ttft_ms.unwrap();
        // The request also pays for HTTP, tokenizing 25k+ tokens and waiting for the next step.
        assert!(
            measured >= predicted && measured <= predicted * 1.1 + 40.0,
            "turn {}: TTFT {measured:.1} ms, model {predicted:.1} ms ({prompt} tokens, {hits} cached)",
            turn.turn_id
        );
    }

    assert_eq!(cached_turns[0].server_cached_tokens, Some(0));
    for index in 1..3 {
        let with_cache = cached_turns[index];
        let without_cache = uncached_turns[index];
        let hits = with_cache.server_cached_tokens.unwrap();
        assert!(
            hits > 20_000,
            "turn {}: {hits} cached tokens",
            with_cache.turn_id
        );
        assert_eq!(without_cache.server_cached_tokens, Some(0));
        assert!(
            with_cache.ttft_ms.unwrap() < cached_turns[0].ttft_ms.unwrap(),
            "turn {} is faster than turn 1 with the cache",
            with_cache.turn_id
        );
        assert!(
            without_cache.ttft_ms.unwrap() > uncached_turns[0].ttft_ms.unwrap(),
            "turn {} is slower than turn 1 without the cache",
            without_cache.turn_id
        );
        let saving = without_cache.ttft_ms.unwrap() - with_cache.ttft_ms.unwrap();
        let cached_prefill_ms = hits as f64 * PREFILL_US / 1000.0;
        assert!(
            (saving - cached_prefill_ms).abs()
                <= cached_prefill_ms * 0.15 + 2.0 * STEP_BASE_US / 1000.0 + 20.0,
            "turn {}: the cache saved {saving:.1} ms, the prefill of {hits} cached tokens is \
             {cached_prefill_ms:.1} ms",
            with_cache.turn_id
        );
    }
}

const DECODE_BASE_US: f64 = 10_000.0;
const DECODE_PER_SEQ_US: f64 = 1_000.0;

/// Returns the mean TPOT in ms of `users` users who each send one short request at once.
async fn mean_tpot_ms(users: usize) -> f64 {
    let server = start(engine_config(EngineParams {
        decode_step_base_us: DECODE_BASE_US,
        decode_step_us_per_seq: DECODE_PER_SEQ_US,
        ..engine_params()
    }))
    .await;
    let users_text = users.to_string();
    let result = run_against(
        &server,
        &[
            "--num-users",
            &users_text,
            "--system-prefix-tokens",
            "100",
            "--user-prefix-tokens",
            "50",
            "--input-tokens-per-turn",
            "50",
            "--output-tokens-per-turn",
            "64",
            "--max-turns",
            "1",
        ],
    )
    .await;
    server.shutdown().await;
    let turns = successful_turns(&result);
    assert_eq!(turns.len(), users);
    turns.iter().map(|turn| turn.tpot_ms.unwrap()).sum::<f64>() / users as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpot_grows_with_batch_as_modelled() {
    for users in [1, 32] {
        let measured = mean_tpot_ms(users).await;
        let predicted = (DECODE_BASE_US + DECODE_PER_SEQ_US * users as f64) / 1000.0;
        assert!(
            (measured - predicted).abs() <= predicted * 0.1,
            "{users} users: TPOT {measured:.2} ms, model {predicted:.2} ms"
        );
    }
}

/// Runs 8 users for 3 turns against an engine with `gpu_blocks` blocks and returns the result
/// with the highest waiting count seen on `/admin/state` during the run.
async fn run_with_blocks(gpu_blocks: usize) -> (RunResult, u64, MockServer) {
    let server = start(MockConfig {
        hbm_blocks: gpu_blocks,
        ..engine_config(EngineParams {
            prefill_us_per_token: 1.0,
            decode_step_base_us: 1000.0,
            ..engine_params()
        })
    })
    .await;
    let state_url = admin_url(&server, "/admin/state");
    let watcher = tokio::spawn(async move {
        let mut max_waiting = 0;
        loop {
            let state = get_json(&state_url).await;
            let counters = &state["counters"];
            let running = counters["running"].as_u64().unwrap();
            let waiting = counters["waiting"].as_u64().unwrap();
            assert_eq!(running + waiting, counters["in_flight"].as_u64().unwrap());
            assert!(
                counters["prefix_cache_hits"].as_u64() <= counters["prefix_cache_queries"].as_u64()
            );
            max_waiting = max_waiting.max(waiting);
            tokio::time::sleep(Duration::from_millis(5)).await;
            if max_waiting > 0 && counters["in_flight"] == 0 {
                return max_waiting;
            }
        }
    });
    let result = run_against(
        &server,
        &[
            "--num-users",
            "8",
            "--system-prefix-tokens",
            "400",
            "--user-prefix-tokens",
            "200",
            "--input-tokens-per-turn",
            "100",
            "--output-tokens-per-turn",
            "20",
            "--max-turns",
            "3",
        ],
    )
    .await;
    let max_waiting = match tokio::time::timeout(Duration::from_millis(200), watcher).await {
        Ok(joined) => joined.expect("the watcher's checks hold"),
        Err(_) => 0,
    };
    (result, max_waiting, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_kv_cache_evicts_and_queues() {
    let (large, _, large_server) = run_with_blocks(100_000).await;
    let large_stats = large_server.stats();
    large_server.shutdown().await;
    // A request holds up to ceil((1000 + 19) / 16) = 64 blocks, so 2 fit at a time.
    let (small, max_waiting, small_server) = run_with_blocks(140).await;
    successful_turns(&large);
    successful_turns(&small);

    let small_stats = small_server.stats();
    assert_eq!(large_stats.hbm_evictions, 0);
    assert!(small_stats.hbm_evictions > 0, "{small_stats:?}");
    assert!(max_waiting > 0, "no request ever waited");
    let large_rate = large.summary.prefix_cache_token_hit_rate.unwrap();
    let small_rate = small.summary.prefix_cache_token_hit_rate.unwrap();
    assert!(
        small_rate < large_rate,
        "hit rate {small_rate:.3} with 140 blocks, {large_rate:.3} with 100000"
    );

    // The counters, /metrics and /admin/state agree once the run is over.
    let state = get_json(&admin_url(&small_server, "/admin/state")).await;
    let counters = &state["counters"];
    let exposition = Exposition::parse(&get_text(&small_server.metrics_url()).await).unwrap();
    let snapshot =
        Backend::Vllm.snapshot(&exposition, Duration::ZERO, std::time::SystemTime::now());
    let pairs = [
        (
            "prefix_cache_queries",
            snapshot.prefix_cache_queries_tokens,
            small_stats.prefix_cache_queries,
        ),
        (
            "prefix_cache_hits",
            snapshot.prefix_cache_hits_tokens,
            small_stats.prefix_cache_hits,
        ),
        (
            "prompt_tokens",
            snapshot.prompt_tokens_total,
            small_stats.prompt_tokens_total,
        ),
        (
            "generation_tokens",
            snapshot.generation_tokens_total,
            small_stats.generation_tokens_total,
        ),
        (
            "running",
            snapshot.num_requests_running,
            small_stats.running,
        ),
        (
            "waiting",
            snapshot.num_requests_waiting,
            small_stats.waiting,
        ),
    ];
    for (name, metric, stat) in pairs {
        assert_eq!(metric, Some(stat as f64), "{name} on /metrics");
        assert_eq!(
            counters[name].as_u64(),
            Some(stat),
            "{name} on /admin/state"
        );
    }
    assert_eq!(
        counters["hbm_evictions"].as_u64(),
        Some(small_stats.hbm_evictions)
    );
    assert_eq!(
        snapshot.kv_cache_usage,
        Some(0.0),
        "no request holds blocks after the run"
    );
    assert_eq!(state["scheduler"]["blocks_total"], 140);
    assert_eq!(state["scheduler"]["blocks_in_use"], 0);
    assert_eq!(
        large.summary.prefix_cache_query_tokens_delta,
        small.summary.prefix_cache_query_tokens_delta,
        "both runs send the same prompts"
    );
    small_server.shutdown().await;
}

/// Runs a short workload against a fixed-model server with `dialect` and returns the result
/// and the server's final exposition. One user's turns run one after another, so every run
/// gets the same cache hits; concurrent users would race to cache the shared system prefix.
async fn run_dialect(dialect: MetricsDialect) -> (RunResult, String) {
    let server = start(MockConfig {
        ttft: Duration::ZERO,
        tpot: Duration::ZERO,
        metrics_dialect: dialect,
        ..MockConfig::default()
    })
    .await;
    let backend = dialect.to_string();
    let result = run_against(
        &server,
        &[
            "--backend",
            &backend,
            "--system-prefix-tokens",
            "300",
            "--user-prefix-tokens",
            "100",
            "--input-tokens-per-turn",
            "100",
            "--output-tokens-per-turn",
            "10",
            "--max-turns",
            "6",
        ],
    )
    .await;
    let text = get_text(&server.metrics_url()).await;
    server.shutdown().await;
    (result, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialects_report_same_hit_rate() {
    let (vllm, vllm_text) = run_dialect(MetricsDialect::Vllm).await;
    let (sglang, sglang_text) = run_dialect(MetricsDialect::Sglang).await;
    let (mindie, mindie_text) = run_dialect(MetricsDialect::Mindie).await;
    let vllm_rate = vllm.summary.prefix_cache_token_hit_rate.unwrap();
    assert!(vllm_rate > 0.5, "vLLM hit rate {vllm_rate}");

    let sglang_rate = sglang.summary.prefix_cache_token_hit_rate.unwrap();
    assert!(
        (sglang_rate - vllm_rate).abs() < 1e-9,
        "SGLang {sglang_rate}, vLLM {vllm_rate}"
    );
    // MindIE exports no token counters, only the hit-rate gauge.
    assert_eq!(mindie.summary.prefix_cache_token_hit_rate, None);
    let mindie_gauge = mindie
        .system_metrics
        .last()
        .and_then(|snapshot| snapshot.cache_hit_rate_gauge)
        .expect("the poller reads npu_prefix_cache_hit_rate");
    assert!(
        (mindie_gauge - vllm_rate).abs() < 1e-9,
        "MindIE gauge {mindie_gauge}, vLLM {vllm_rate}"
    );

    for (dialect, text, ttft) in [
        ("vllm", &vllm_text, "vllm:time_to_first_token_seconds_count"),
        (
            "sglang",
            &sglang_text,
            "sglang:time_to_first_token_seconds_count",
        ),
        ("mindie", &mindie_text, "time_to_first_token_seconds_count"),
    ] {
        let exposition = Exposition::parse(text)
            .unwrap_or_else(|err| panic!("{dialect} exposition does not parse: {err}"));
        assert_eq!(exposition.sum(ttft), Some(6.0), "{dialect}: 6 turns");
    }
    assert!(
        mindie_text.contains("le=\"1\""),
        "MindIE writes integers bare"
    );
    assert!(
        vllm_text.contains("le=\"1.0\""),
        "vLLM writes Python floats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_rejects_fixed_latency_headers() {
    let server = start(engine_config(engine_params())).await;
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .header(clawperf::mock::TTFT_HEADER, "5")
        .json(&serde_json::json!({
            "model": "mock",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_rejects_request_larger_than_cache() {
    let server = start(MockConfig {
        hbm_blocks: 4,
        ..engine_config(engine_params())
    })
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&serde_json::json!({
            "model": "mock",
            "messages": [{"role": "user", "content": "x".repeat(200)}],
            "max_tokens": 2,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("--num-gpu-blocks"), "{message}");
    assert_eq!(server.stats().in_flight, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_tier_serves_evicted_prefix() {
    const LOAD_US: f64 = 2.0;
    let server = start(MockConfig {
        // 120 blocks hold one request (up to about 80 blocks) but not both users' prefixes.
        hbm_blocks: 120,
        external_blocks: 10_000,
        ..engine_config(EngineParams {
            prefill_us_per_token: PREFILL_US,
            external_load_us_per_token: LOAD_US,
            decode_step_base_us: STEP_BASE_US,
            ..engine_params()
        })
    })
    .await;
    // Two users with different user prefixes take turns in HBM and evict each other's blocks.
    let result = run_against(
        &server,
        &[
            "--num-users",
            "2",
            "--system-prefix-tokens",
            "100",
            "--user-prefix-tokens",
            "800",
            "--input-tokens-per-turn",
            "100",
            "--output-tokens-per-turn",
            "4",
            "--max-turns",
            "3",
        ],
    )
    .await;
    successful_turns(&result);
    let stats = server.stats();
    assert!(stats.hbm_evictions > 0, "{stats:?}");
    assert!(stats.external_prefix_cache_hits > 0, "{stats:?}");
    assert!(
        stats.external_prefix_cache_queries == stats.prefix_cache_queries - stats.prefix_cache_hits,
        "the external tier is asked for every token HBM missed: {stats:?}"
    );
    assert_eq!(
        result.summary.external_prefix_cache_hit_tokens_delta,
        Some(stats.external_prefix_cache_hits as f64)
    );
    // Turns report the hits of both tiers as cached tokens.
    let turns = successful_turns(&result);
    let cached_total: u64 = turns
        .iter()
        .map(|turn| turn.server_cached_tokens.unwrap())
        .sum();
    assert_eq!(
        cached_total,
        stats.prefix_cache_hits + stats.external_prefix_cache_hits
    );
    server.shutdown().await;
}
