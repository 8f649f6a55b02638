//! End-to-end runs of the benchmark against the embedded mock server.

mod support;

use clap::Parser;
use clawperf::cli::Cli;
use clawperf::result::{RunResult, TurnRecord};
use clawperf::runner;

/// Runs a benchmark with `--endpoint mock` and the given options.
async fn run_mock(options: &[&str]) -> RunResult {
    let mut argv = vec![
        "clawperf",
        "--endpoint",
        "mock",
        "--model",
        "mock-model",
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

fn turn_summary(turn: &TurnRecord) -> (usize, bool, u64, bool, u64, Option<&str>) {
    (
        turn.turn_id,
        turn.success,
        turn.input_tokens,
        turn.compaction_triggered,
        turn.user_prefix_tokens,
        turn.error.as_ref().map(|error| error.class.as_str()),
    )
}

/// With the built-in tokenizer (one token per byte, one per ChatML special token) every size
/// is known: the system message adds 10 framing tokens, a user message 8, an assistant
/// message 13 and the generation prompt 11. Turn 1 sends 110 + (8 + 50 + 2 + 20) + 11 = 201
/// tokens and every later turn adds a 10-token reply and a 20-token input, 51 tokens. A
/// request reaches the 300-token limit when its prompt plus 10 output tokens reach 300.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_overflow_turn_records() {
    let result = run_mock(&[
        "--system-prefix-tokens",
        "100",
        "--user-prefix-tokens",
        "50",
        "--input-tokens-per-turn",
        "20",
        "--output-tokens-per-turn",
        "10",
        "--max-context-tokens",
        "300",
        "--compaction-prefix-increment",
        "30",
        "--max-turns",
        "10",
        "--mock-ttft",
        "5",
        "--mock-tpot",
        "1",
    ])
    .await;

    let turns = &result.users[0].turns;
    let summaries: Vec<_> = turns.iter().map(turn_summary).collect();
    assert_eq!(
        summaries,
        vec![
            (1, true, 201, false, 50, None),
            (2, true, 252, false, 50, None),
            // 303 + 10 reaches 300: history dropped, prefix grown to 80: 110 + 110 + 11.
            (3, true, 231, true, 80, None),
            (4, true, 282, false, 80, None),
            // 333 + 10 reaches 300: prefix grown to 110: 110 + 140 + 11.
            (5, true, 261, true, 110, None),
            // 312 + 10 reaches 300, and even prefix 140 (110 + 170 + 11 = 291, + 10) does.
            (6, false, 312, false, 110, Some("context_overflow")),
        ]
    );
    for turn in &turns[..5] {
        assert_eq!(turn.output_tokens, Some(10), "turn {}", turn.turn_id);
        assert_eq!(
            turn.server_prompt_tokens,
            Some(turn.input_tokens),
            "turn {}",
            turn.turn_id
        );
        assert_eq!(
            turn.context_tokens,
            turn.input_tokens + 10,
            "turn {}",
            turn.turn_id
        );
    }
    assert_eq!(turns[5].ttft_ms, None);
    assert_eq!(result.users[0].aggregate.stop_reason, "context_overflow");
    assert_eq!(result.users[0].aggregate.compaction_count, 2);
    assert_eq!(result.summary.total_compactions, 2);
    assert_eq!(result.summary.context_overflows, 1);
    assert_eq!(result.summary.successful_turns, 5);
    assert_eq!(result.summary.failed_turns, 1);
}

/// The mock caches `prompt ++ output[..n-1]` of every finished request in 16-token blocks, and
/// each turn's prompt extends the previous turn's prompt and reply. So turn k (k > 1) hits
/// the full blocks of the previous prompt plus all but the last output token, and turn 1
/// hits nothing on a fresh server. The queries are every prompt token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_cache_hits_match_the_workload() {
    let tokenizer_dir = support::qwen3_tokenizer_dir();
    let tokenizer = tokenizer_dir.to_str().unwrap();
    let result = run_mock(&[
        "--tokenizer",
        tokenizer,
        "--system-prefix-tokens",
        "1500",
        "--user-prefix-tokens",
        "500",
        "--input-tokens-per-turn",
        "500",
        "--output-tokens-per-turn",
        "100",
        "--max-turns",
        "5",
        "--mock-ttft",
        "20",
        "--mock-tpot",
        "1",
    ])
    .await;

    let turns = &result.users[0].turns;
    assert_eq!(turns.len(), 5);
    let mut expected_hits = 0;
    let mut expected_queries = 0;
    let mut previous: Option<&TurnRecord> = None;
    for turn in turns {
        assert!(
            turn.success,
            "turn {} failed: {:?}",
            turn.turn_id, turn.error
        );
        assert_eq!(
            turn.server_prompt_tokens,
            Some(turn.input_tokens),
            "turn {}",
            turn.turn_id
        );
        let hits = match previous {
            None => 0,
            Some(previous) => {
                (previous.input_tokens + previous.output_tokens.unwrap() - 1) / 16 * 16
            }
        };
        assert_eq!(
            turn.server_cached_tokens,
            Some(hits),
            "turn {}",
            turn.turn_id
        );
        expected_hits += hits;
        expected_queries += turn.input_tokens;
        previous = Some(turn);
    }

    let summary = &result.summary;
    assert_eq!(
        summary.prefix_cache_hit_tokens_delta,
        Some(expected_hits as f64)
    );
    assert_eq!(
        summary.prefix_cache_query_tokens_delta,
        Some(expected_queries as f64)
    );
    let expected_rate = expected_hits as f64 / expected_queries as f64;
    assert!((summary.prefix_cache_token_hit_rate.unwrap() - expected_rate).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_json_has_every_documented_field() {
    let result = run_mock(&[
        "--num-users",
        "2",
        "--system-prefix-tokens",
        "200",
        "--user-prefix-tokens",
        "50",
        "--input-tokens-per-turn",
        "50",
        "--output-tokens-per-turn",
        "8",
        "--max-turns",
        "2",
        "--mock-ttft",
        "5",
        "--mock-tpot",
        "1",
    ])
    .await;
    let json = serde_json::to_value(&result).unwrap();

    for key in [
        "schema_version",
        "config",
        "summary",
        "users",
        "system_metrics",
        "timeline",
    ] {
        assert!(json.get(key).is_some(), "missing top-level {key}");
    }
    for key in [
        "ttft",
        "tpot",
        "itl",
        "e2e_latency",
        "prefix_cache_token_hit_rate",
        "prefix_cache_hit_tokens_delta",
        "prefix_cache_query_tokens_delta",
        "external_prefix_cache_token_hit_rate",
        "external_prefix_cache_hit_tokens_delta",
        "external_prefix_cache_query_tokens_delta",
        "total_compactions",
        "total_input_tokens",
        "total_output_tokens",
    ] {
        assert!(json["summary"].get(key).is_some(), "missing summary.{key}");
    }
    for key in ["avg", "min", "max", "P50", "P90", "P95", "P99", "count"] {
        assert!(
            json["summary"]["ttft"].get(key).is_some(),
            "missing summary.ttft.{key}"
        );
    }
    let user = &json["users"][0];
    assert!(user.get("user_id").is_some());
    for key in [
        "total_output_tokens",
        "ttft",
        "tpot",
        "throughput_tok_s",
        "error_count",
        "compaction_count",
    ] {
        assert!(
            user["aggregate"].get(key).is_some(),
            "missing aggregate.{key}"
        );
    }
    for key in [
        "turn_id",
        "success",
        "ttft_ms",
        "e2e_latency_ms",
        "tpot_ms",
        "input_tokens",
        "output_tokens",
        "context_tokens",
        "compaction_triggered",
        "error",
        "server_prompt_tokens",
        "server_cached_tokens",
    ] {
        assert!(user["turns"][0].get(key).is_some(), "missing turn.{key}");
    }
    let events: Vec<&str> = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for event in ["user_start", "turn_start", "turn_end", "user_stop"] {
        assert!(events.contains(&event), "timeline lacks {event}");
    }
    assert!(
        json["system_metrics"].as_array().unwrap().len() >= 2,
        "start and end snapshots"
    );
}
