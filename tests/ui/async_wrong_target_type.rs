use clawperf::harness::{BoxError, Measurements};

#[clawperf::scenario]
async fn wrong_target(target: String) -> Result<Measurements, BoxError> {
    drop(target);
    Ok(Measurements::new())
}

fn main() {}
