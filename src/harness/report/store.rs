//! The run's output directory: each scenario's report and result JSON, and the merged JUnit
//! and Markdown files rebuilt from all reports of the run.

use std::path::{Path, PathBuf};

use super::super::baseline::{file_name, write_atomically};
use super::super::judge::ScenarioReport;
use super::{render_markdown, write_junit};
use crate::result::RunResult;

#[derive(Debug, thiserror::Error)]
#[error("failed to write {path}")]
pub struct StoreError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn store_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.to_owned(),
        source,
    }
}

/// The output files of one run, under `<target>/clawperf/`.
pub struct ReportStore {
    output_dir: PathBuf,
    /// `runs/<run id>/`: one report per scenario of this run.
    run_dir: PathBuf,
}

impl ReportStore {
    /// Opens the store of the run `run_id`, removing the reports of earlier runs.
    pub fn open(output_dir: &Path, run_id: &str) -> Result<Self, StoreError> {
        let runs = output_dir.join("runs");
        let run_dir = runs.join(run_id);
        std::fs::create_dir_all(&run_dir).map_err(store_error(&run_dir))?;
        if let Ok(entries) = std::fs::read_dir(&runs) {
            for entry in entries.flatten() {
                if entry.path() != run_dir {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(Self {
            output_dir: output_dir.to_owned(),
            run_dir,
        })
    }

    /// Writes each repetition's result JSON to `results/<scenario>/repetition-<i>.json`.
    pub fn write_results(&self, scenario: &str, results: &[RunResult]) -> Result<(), StoreError> {
        let stem = file_name(scenario);
        let dir = self
            .output_dir
            .join("results")
            .join(stem.trim_end_matches(".json"));
        let _ = std::fs::remove_dir_all(&dir);
        for (index, result) in results.iter().enumerate() {
            let path = dir.join(format!("repetition-{}.json", index + 1));
            result.write_json(&path).map_err(store_error(&path))?;
        }
        Ok(())
    }

    /// Stores one scenario's report.
    pub fn add(&self, report: &ScenarioReport) -> Result<(), StoreError> {
        let path = self.run_dir.join(file_name(&report.name));
        let json = serde_json::to_vec_pretty(report).expect("a report serialises");
        write_atomically(&path, &json).map_err(store_error(&path))
    }

    /// Returns every report of this run, sorted by scenario name. Unreadable files are
    /// skipped with a warning.
    pub fn reports(&self) -> Vec<ScenarioReport> {
        let mut reports = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.run_dir) else {
            return reports;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            match std::fs::read(&path).map(|bytes| serde_json::from_slice::<ScenarioReport>(&bytes))
            {
                Ok(Ok(report)) => reports.push(report),
                Ok(Err(err)) => {
                    tracing::warn!(path = %path.display(), error = %err, "skipping an unreadable scenario report")
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "skipping an unreadable scenario report")
                }
            }
        }
        reports.sort_by(|a, b| a.name.cmp(&b.name));
        reports
    }

    /// Rewrites the JUnit file and `summary.md` from every report of this run, and returns
    /// the Markdown.
    pub fn write_merged(&self, junit_path: &Path) -> Result<String, StoreError> {
        let reports = self.reports();
        write_junit(&reports, junit_path).map_err(store_error(junit_path))?;
        let markdown = render_markdown(&reports);
        let summary = self.output_dir.join("summary.md");
        write_atomically(&summary, markdown.as_bytes()).map_err(store_error(&summary))?;
        Ok(markdown)
    }
}
