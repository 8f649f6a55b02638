use clawperf::harness::{Scenario, Workload};

#[clawperf::scenario(timeout = 5)]
fn with_timeout() -> Scenario {
    Scenario::new(Workload::default())
}

fn main() {}
