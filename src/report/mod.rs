//! Everything a person reads: the live progress display, the end-of-run summary, the per-turn
//! log, the Markdown and HTML reports and the comparison of two runs.

mod chart;
mod compare;
mod compare_table;
mod document;
mod figures;
mod html;
mod load;
mod log;
mod markdown;
mod progress;
mod summary;
mod verdict;
mod write;

pub use compare::{BadDirection, Comparison, MIN_SAMPLES, MetricRow, compare_runs};
pub use compare_table::{P_VALUE_NOTE, render_comparison_markdown, render_comparison_text};
pub use document::{Block, Document, Section, Table, build_document};
pub use html::render_html;
pub use load::{LoadError, load_result};
pub use log::{log_event, log_events};
pub use markdown::render_markdown;
pub use progress::{ProgressOutput, RunProgress, SuspendingWriter, report_events};
pub use summary::render_summary;
pub use write::{ReportPaths, WriteReportError, write_report};
