//! [`Exposition`], a parsed Prometheus exposition, and the queries clawperf runs on it. The
//! parser in [`super::parse`] builds it.

use std::collections::HashMap;

use super::parse::ParseError;

/// One parsed sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample name as written, including suffixes such as `_total`, `_bucket` or `_created`.
    pub name: String,
    /// Label pairs in the order written, with escapes resolved.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// The timestamp as written, not converted: integer milliseconds in format 0.0.4, float
    /// seconds in OpenMetrics. clawperf does not use it, because the parser cannot tell the two
    /// formats apart.
    pub timestamp: Option<f64>,
}

impl Sample {
    /// Returns the value of the label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A metric family's type from its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
    /// OpenMetrics `unknown`, the successor of `untyped`.
    Unknown,
    /// OpenMetrics `info`.
    Info,
    /// OpenMetrics `stateset`.
    StateSet,
    /// OpenMetrics `gaugehistogram`.
    GaugeHistogram,
}

/// A parsed exposition: the samples in input order, plus the TYPE and HELP of each family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub(super) samples: Vec<Sample>,
    /// Metric type by family name.
    pub(super) types: HashMap<String, MetricType>,
    /// Help text by family name.
    pub(super) help: HashMap<String, String>,
    pub(super) skipped_lines: Vec<ParseError>,
}

impl Exposition {
    /// Returns all samples in input order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Returns the samples whose name is exactly `name`, over all label sets.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |sample| sample.name == name)
    }

    /// Sums the values of all samples named exactly `name`, over all label sets (for example
    /// every `engine` of a vLLM server). Returns `None` when no sample has that name.
    ///
    /// Names are never matched by prefix, so `vllm:prefix_cache_hits_total` does not pick up the
    /// `vllm:prefix_cache_hits_created` timestamp that prometheus_client exports beside it.
    pub fn sum(&self, name: &str) -> Option<f64> {
        self.series(name)
            .map(|sample| sample.value)
            .reduce(|total, value| total + value)
    }

    /// Averages the values of all samples named exactly `name`. Returns `None` when no sample has
    /// that name. Meant for fractions such as KV-cache usage, where a sum over engines exceeds 1.
    pub fn mean(&self, name: &str) -> Option<f64> {
        let (total, count) = self
            .series(name)
            .fold((0.0, 0_u32), |(total, count), sample| {
                (total + sample.value, count + 1)
            });
        (count > 0).then(|| total / f64::from(count))
    }

    /// Returns the type that a `# TYPE` line declared for the metric family `family`.
    pub fn metric_type(&self, family: &str) -> Option<MetricType> {
        self.types.get(family).copied()
    }

    /// Returns the help text of the metric family `family`, with escapes resolved.
    pub fn help(&self, family: &str) -> Option<&str> {
        self.help.get(family).map(String::as_str)
    }

    /// Returns the lines that [`Exposition::parse_lenient`] skipped. Always empty after
    /// [`Exposition::parse`].
    pub fn skipped_lines(&self) -> &[ParseError] {
        &self.skipped_lines
    }

    /// Moves the skipped lines out, leaving none.
    pub(crate) fn take_skipped_lines(&mut self) -> Vec<ParseError> {
        std::mem::take(&mut self.skipped_lines)
    }
}
