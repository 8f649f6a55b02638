use clawperf::harness::Scenario;

#[clawperf::scenario]
fn takes_an_argument(users: usize) -> Scenario {
    todo!("{users}")
}

fn main() {}
