use clawperf::harness::{BoxError, Measurements};

#[clawperf::scenario]
async fn no_target() -> Result<Measurements, BoxError> {
    Ok(Measurements::new())
}

fn main() {}
