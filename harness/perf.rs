//! This repository's performance scenarios, run by `cargo test --test perf` against the
//! embedded mock and compared with `baselines/mock/`.
//!
//! Sizes are small so that the whole set runs in well under a minute: the mock's built-in
//! tokenizer counts one token per byte, its TTFT is 20 ms and its TPOT 5 ms.

use clawperf::harness::Scenario;

/// Applies the tolerances these scenarios share. The mock's inter-token gap is 5 ms, the
/// scale of scheduling jitter on a busy 2-core machine, so ITL is flagged only when it
/// doubles. With 12 to 36 requests per repetition, P90 and P99 are the slowest one or two
/// requests, so they get 30 % and 50 %. TTFT and E2E averages and medians keep the default
/// 15 %, which catches a 20 % slower TTFT.
fn shared_tolerances(scenario: Scenario) -> Scenario {
    scenario
        .tolerance("itl.*", 1.0)
        .tolerance("*.p90", 0.3)
        .tolerance("*.p99", 0.5)
}

mod chat {
    use clawperf::harness::{Scenario, Workload};

    use super::shared_tolerances;

    /// One user, four turns: the baseline of every latency metric.
    #[clawperf::scenario]
    fn single_user() -> Scenario {
        shared_tolerances(Scenario::new(Workload {
            max_turns: 4,
            ..Workload::default()
        }))
        .limit_at_most("ttft.p99", 2000.0)
    }

    /// Three users arriving 200 ms apart, so each later user's first turn finds the shared
    /// system prefix already cached (the mock caches a prompt when its first token is due,
    /// 20 ms after arrival).
    #[clawperf::scenario]
    fn multi_user() -> Scenario {
        shared_tolerances(Scenario::new(Workload {
            num_users: 3,
            user_arrival: "steady:0.2".to_owned(),
            system_prefix_tokens: 400,
            max_turns: 4,
            ..Workload::default()
        }))
    }
}

mod compaction {
    use clawperf::harness::{Scenario, Workload};

    use super::shared_tolerances;

    /// A context limit low enough that every user compacts twice and then overflows.
    #[clawperf::scenario]
    fn append_mode() -> Scenario {
        shared_tolerances(Scenario::new(Workload {
            num_users: 2,
            user_arrival: "steady:0.2".to_owned(),
            system_prefix_tokens: 100,
            user_prefix_tokens: 50,
            input_tokens_per_turn: 20,
            output_tokens_per_turn: 10,
            max_context_tokens: 300,
            compaction_prefix_increment: 30,
            max_turns: 10,
            ..Workload::default()
        }))
    }
}

mod cache {
    use clawperf::harness::{BoxError, Measurements, TargetHandle, Workload};

    /// Runs a conversation twice with the same seed and measures the second pass, whose
    /// prompts the server has seen: every turn should hit the prefix cache up to its last
    /// block.
    #[clawperf::scenario(repetitions = 5)]
    async fn warm_rerun(target: TargetHandle) -> Result<Measurements, BoxError> {
        let workload = Workload {
            system_prefix_tokens: 800,
            max_turns: 3,
            ..Workload::default()
        };
        target.run(&workload, 7).await?;
        let warm = target.run(&workload, 7).await?;
        let mut measurements = Measurements::new();
        measurements.tolerance("itl.*", 1.0);
        measurements.tolerance("*.p90", 0.3);
        measurements.tolerance("*.p99", 0.5);
        measurements.add_run(&warm);
        if let Some(stats) = target.mock_stats() {
            measurements.add_counter("hbm_cached_blocks", stats.hbm_cached_blocks);
        }
        Ok(measurements)
    }
}

fn main() {
    clawperf::harness::main()
}
