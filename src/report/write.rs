//! Writes the Markdown and HTML reports of a run to files.

use std::path::{Path, PathBuf};

use crate::result::RunResult;

use super::document::build_document;
use super::html::render_html;
use super::markdown::render_markdown;

/// The paths of the two files that `clawperf report` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    pub markdown: PathBuf,
    pub html: PathBuf,
}

impl ReportPaths {
    /// Returns `<stem>-report.md` and `<stem>-report.html` for the result file
    /// `<dir>/<stem>.json`, in `output_dir` when given, else beside the result file.
    pub fn for_result(result_path: &Path, output_dir: Option<&Path>) -> Self {
        let stem = result_path
            .file_stem()
            .map_or_else(|| "results".into(), |stem| stem.to_string_lossy());
        let dir = output_dir
            .map(Path::to_path_buf)
            .or_else(|| result_path.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        Self {
            markdown: dir.join(format!("{stem}-report.md")),
            html: dir.join(format!("{stem}-report.html")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("failed to write the report to {path}")]
pub struct WriteReportError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Renders the Markdown and HTML reports of `result` and writes them to `paths`.
pub fn write_report(result: &RunResult, paths: &ReportPaths) -> Result<(), WriteReportError> {
    let document = build_document(result);
    write_file(&paths.markdown, &render_markdown(&document))?;
    write_file(&paths.html, &render_html(&document))
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<(), WriteReportError> {
    let error = |source| WriteReportError {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    std::fs::write(path, text).map_err(error)
}
