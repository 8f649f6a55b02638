//! The run history: one compact JSON line per run in `clawperf_history.jsonl`, beside the
//! result JSON, so that `jq` can follow a metric over many runs.
//!
//! A line contains the run's `config`, `summary` and per-user `aggregate`s (not the turns, the
//! metric snapshots or the timeline, which stay in the result JSON named by `result_file`).
//! Example: `jq -r '[.summary.started_at, .summary.ttft.P50] | @tsv' clawperf_history.jsonl`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::result::{RunConfigRecord, RunResult, Summary, UserAggregate};

/// File name of the history, in the folder of the result JSON.
pub const HISTORY_FILE: &str = "clawperf_history.jsonl";

/// One line of the history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub schema_version: u32,
    pub clawperf_version: String,
    /// The result JSON this line summarises, as given to `--output`.
    pub result_file: String,
    pub config: RunConfigRecord,
    pub summary: Summary,
    pub users: Vec<HistoryUser>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryUser {
    pub user_id: usize,
    pub aggregate: UserAggregate,
}

#[derive(Debug, thiserror::Error)]
#[error("failed to append the run to the history file {path}")]
pub struct HistoryError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl HistoryEntry {
    pub fn new(result: &RunResult, result_file: &Path) -> Self {
        Self {
            schema_version: result.schema_version,
            clawperf_version: result.clawperf_version.clone(),
            result_file: result_file.display().to_string(),
            config: result.config.clone(),
            summary: result.summary.clone(),
            users: result
                .users
                .iter()
                .map(|user| HistoryUser {
                    user_id: user.user_id,
                    aggregate: user.aggregate.clone(),
                })
                .collect(),
        }
    }
}

/// Returns the history path for the result JSON at `result_file`: the same folder.
pub fn history_path(result_file: &Path) -> PathBuf {
    result_file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map_or_else(
            || PathBuf::from(HISTORY_FILE),
            |parent| parent.join(HISTORY_FILE),
        )
}

/// Appends one line for `result` to the history beside `result_file` and returns its path.
/// The file is created when missing.
// NOTE: the line goes out in one `write_all` in append mode. Local file systems write a line
// of this size in one piece, but POSIX does not promise that two runs appending to one
// history at the same moment never interleave.
pub fn append_history(result: &RunResult, result_file: &Path) -> Result<PathBuf, HistoryError> {
    let path = history_path(result_file);
    let error = |source| HistoryError {
        path: path.clone(),
        source,
    };
    let mut line = serde_json::to_vec(&HistoryEntry::new(result, result_file))
        .map_err(|source| error(std::io::Error::other(source)))?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(error)?;
    file.write_all(&line).map_err(error)?;
    Ok(path)
}
