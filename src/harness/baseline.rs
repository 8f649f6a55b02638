//! The baseline file: `baselines/<target>/<scenario>.json`, pretty JSON that records what a
//! scenario measured on one target, with enough context to judge a later comparison.
//!
//! `schemas/baseline.schema.json` describes the layout; a test checks the committed
//! baselines against it. Histograms are HdrHistogram's compressed V2 serialisation (the
//! format of `V2DeflateSerializer`, readable by every HdrHistogram port) in base64, with
//! values in microseconds.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::gate::RepetitionSummary;
use crate::stats::LatencyHistogram;

use super::measure::Measured;

/// Version of the baseline layout; a change that old readers cannot read bumps it.
pub const BASELINE_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub schema_version: u32,
    /// The scenario's path, such as `chat::multi_turn`.
    pub scenario: String,
    /// The baseline set, `mock` or the `CLAWPERF_TARGET` of a real stack.
    pub target: String,
    /// The run's description: the scenario's workload, mock settings and repetitions (or the `async`
    /// form's name and repetitions). A baseline whose workload differs from the scenario's is
    /// stale.
    pub workload: serde_json::Value,
    pub environment: Environment,
    pub repetitions: Vec<RecordedRepetition>,
}

/// The machine, versions and target a baseline was recorded on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub clawperf_version: String,
    /// `git rev-parse HEAD` of the package, when it is a git checkout.
    pub git_revision: Option<String>,
    /// The `model name` of `/proc/cpuinfo`, where the platform has it.
    pub cpu_model: Option<String>,
    pub cpu_count: usize,
    pub os: String,
    /// The model the target served (`/v1/models`).
    pub target_model: Option<String>,
    /// The server's version, from `GET /version` (vLLM and SGLang serve it).
    pub server_version: Option<String>,
}

/// One repetition: its gated values, counters and latency histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRepetition {
    /// Latency statistics in ms (`ttft.p50`, ...) and `throughput` in tokens per second.
    pub metrics: BTreeMap<String, f64>,
    pub counters: BTreeMap<String, u64>,
    /// Per latency series, the base64 of its compressed V2 HdrHistogram (microseconds).
    pub histograms: BTreeMap<String, String>,
}

impl RecordedRepetition {
    pub fn summary(&self) -> RepetitionSummary {
        RepetitionSummary {
            metrics: self.metrics.clone(),
            counters: self.counters.clone(),
        }
    }

    pub fn from_measured(measured: &Measured) -> Result<Self, BaselineError> {
        let histograms = measured
            .histograms
            .iter()
            .map(|(name, histogram)| Ok((name.clone(), encode_histogram(histogram)?)))
            .collect::<Result<_, BaselineError>>()?;
        Ok(Self {
            metrics: measured.summary.metrics.clone(),
            counters: measured.summary.counters.clone(),
            histograms,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("failed to read the baseline {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "failed to parse the baseline {path}; fix or delete it, then re-record it with \
         CLAWPERF_BLESS=1"
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the baseline {path} has schema_version {found}, expected {BASELINE_SCHEMA_VERSION}; \
         re-record it with CLAWPERF_BLESS=1"
    )]
    SchemaVersion { path: PathBuf, found: u32 },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to serialise a latency histogram: {0}")]
    Histogram(String),
}

/// Returns the base64 of the histogram's compressed V2 serialisation.
pub fn encode_histogram(histogram: &LatencyHistogram) -> Result<String, BaselineError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(histogram.histogram(), &mut bytes)
        .map_err(|err| BaselineError::Histogram(format!("{err:?}")))?;
    Ok(BASE64.encode(bytes))
}

/// Returns the file name of a scenario's baseline: the path with `::` replaced by `.`,
/// because `:` is not allowed in file names on Windows or in CI artifacts.
pub fn file_name(scenario: &str) -> String {
    format!("{}.json", scenario.replace("::", "."))
}

impl Baseline {
    /// Reads the baseline at `path`; `Ok(None)` when the file does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, BaselineError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(BaselineError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|value| value.get("schema_version")?.as_u64());
        if let Some(found) = version
            && found != u64::from(BASELINE_SCHEMA_VERSION)
        {
            return Err(BaselineError::SchemaVersion {
                path: path.to_owned(),
                found: found as u32,
            });
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| BaselineError::Parse {
                path: path.to_owned(),
                source,
            })
    }

    /// Writes the baseline as pretty JSON ending in a newline, through a temporary file and
    /// a rename.
    pub fn write(&self, path: &Path) -> Result<(), BaselineError> {
        let mut json = serde_json::to_string_pretty(self).expect("a baseline serialises");
        json.push('\n');
        write_atomically(path, json.as_bytes()).map_err(|source| BaselineError::Write {
            path: path.to_owned(),
            source,
        })
    }

    pub fn summaries(&self) -> Vec<RepetitionSummary> {
        self.repetitions
            .iter()
            .map(RecordedRepetition::summary)
            .collect()
    }
}

/// Writes `bytes` to `path` through `<path>.tmp` and a rename, creating the parent directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}
