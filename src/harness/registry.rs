//! The scenarios that `#[clawperf::scenario]` registers, collected at link time with
//! `inventory`.

use std::future::Future;
use std::pin::Pin;

use super::custom::{BoxError, Measurements, TargetHandle};
use super::scenario::Scenario;

/// The future an `async` scenario returns, boxed.
pub type CustomFuture = Pin<Box<dyn Future<Output = Result<Measurements, BoxError>> + Send>>;

/// Form of a registered scenario: a declarative workload or an async function that measures.
#[derive(Clone, Copy)]
pub enum ScenarioBody {
    /// A function returning a [`Scenario`].
    Declarative(fn() -> Scenario),
    /// An `async` function called once per repetition.
    Custom {
        run: fn(TargetHandle) -> CustomFuture,
        repetitions: usize,
    },
}

/// One `#[clawperf::scenario]` function. Built by the macro; not meant to be written by hand.
pub struct Registration {
    /// `module_path!()` where the function is defined.
    pub module_path: &'static str,
    pub function: &'static str,
    pub ignored: bool,
    pub body: ScenarioBody,
}

inventory::collect!(Registration);

impl Registration {
    /// Returns the scenario's name: its module path without the crate name, then the
    /// function name, such as `chat::multi_turn`.
    pub fn name(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_crate, modules)) => format!("{modules}::{}", self.function),
            None => self.function.to_owned(),
        }
    }
}

/// Returns every registered scenario, sorted by name.
pub fn scenarios() -> Vec<&'static Registration> {
    let mut scenarios: Vec<&'static Registration> =
        inventory::iter::<Registration>.into_iter().collect();
    scenarios.sort_by_key(|registration| registration.name());
    scenarios
}
