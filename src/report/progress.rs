//! The live progress display on stderr: turns done of the total, successes and failures,
//! elapsed and estimated time, and the running P50 TTFT.
//!
//! It draws only when stderr is a terminal (indicatif hides it otherwise), and log lines go
//! through [`ProgressOutput`] as a `tracing` writer, which clears the bar while a line is
//! written and redraws it after, so the two never interleave.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::runner::RunEvent;
use crate::stats::LatencyHistogram;

const TEMPLATE: &str =
    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} turns, ETA {eta}  {msg}";

/// The stderr of a run: the progress bars and the log lines written between their redraws.
/// Clones share the same display.
#[derive(Debug, Clone)]
pub struct ProgressOutput {
    bars: MultiProgress,
}

impl ProgressOutput {
    /// Draws on stderr when it is a terminal, and nowhere otherwise.
    pub fn stderr() -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            bars: MultiProgress::with_draw_target(target),
        }
    }

    /// Never draws; log lines still go to stderr.
    pub fn hidden() -> Self {
        Self {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        }
    }

    /// Starts the progress bar of a run with `num_users` users of up to `max_turns` turns.
    /// With `quiet`, the bar is tracked but never drawn.
    pub fn start_run(&self, num_users: usize, max_turns: usize, quiet: bool) -> RunProgress {
        let total = (num_users * max_turns) as u64;
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            self.bars.add(ProgressBar::new(total))
        };
        bar.set_length(total);
        bar.set_style(
            ProgressStyle::with_template(TEMPLATE)
                .expect("the progress template is valid")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        RunProgress {
            bar,
            max_turns,
            turns_per_user: vec![0; num_users],
            ttft: LatencyHistogram::new(),
            ok: 0,
            failed: 0,
            message_at: None,
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ProgressOutput {
    type Writer = SuspendingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        SuspendingWriter {
            bars: self.bars.clone(),
        }
    }
}

/// Writes to stderr with the progress display cleared. The `tracing` formatter writes each
/// event with one `write_all`, so a log line is never split by a redraw.
pub struct SuspendingWriter {
    bars: MultiProgress,
}

impl Write for SuspendingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bars
            .suspend(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The progress of one run, updated from its events.
#[derive(Debug)]
pub struct RunProgress {
    bar: ProgressBar,
    max_turns: usize,
    turns_per_user: Vec<usize>,
    ttft: LatencyHistogram,
    ok: u64,
    failed: u64,
    /// When the message was last computed. A thousand users finish turns faster than anyone
    /// reads, and each message reads percentiles from the histogram.
    message_at: Option<Instant>,
}

/// How often the message after the bar is recomputed at most.
const MESSAGE_INTERVAL: Duration = Duration::from_millis(200);

impl RunProgress {
    /// Updates the display with one event.
    pub fn observe(&mut self, event: &RunEvent) {
        match event {
            RunEvent::TurnFinished { user_id, record } => {
                if let Some(done) = self.turns_per_user.get_mut(*user_id) {
                    *done += 1;
                }
                if record.success {
                    self.ok += 1;
                } else {
                    self.failed += 1;
                }
                if let Some(ttft_ms) = record.ttft_ms {
                    self.ttft.record(Duration::from_secs_f64(ttft_ms / 1000.0));
                }
                self.bar.inc(1);
                if !self.bar.is_hidden()
                    && self
                        .message_at
                        .is_none_or(|at| at.elapsed() >= MESSAGE_INTERVAL)
                {
                    self.message_at = Some(Instant::now());
                    self.bar.set_message(self.message());
                }
            }
            RunEvent::UserStopped { user_id, .. } => {
                // A user that stops early (context overflow, interruption) will send no more
                // turns, so the total shrinks by the turns it skipped.
                let done = self.turns_per_user.get(*user_id).copied().unwrap_or(0);
                let skipped = self.max_turns.saturating_sub(done) as u64;
                if let Some(length) = self.bar.length() {
                    self.bar.set_length(length.saturating_sub(skipped));
                }
            }
            _ => {}
        }
    }

    /// Returns the text after the bar: counts and the running P50 TTFT.
    pub fn message(&self) -> String {
        let ttft = self
            .ttft
            .summary()
            .map_or_else(|| "-".to_owned(), |stats| format!("{:.1} ms", stats.p50));
        format!("ok {}, failed {}, TTFT P50 {ttft}", self.ok, self.failed)
    }

    /// Removes the bar from the terminal, so the summary prints on a clean screen.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Consumes the run's events until the run drops its sender: updates the progress display
/// and logs each event as [`super::log_event`] does.
pub async fn report_events(
    mut events: UnboundedReceiver<RunEvent>,
    verbose: bool,
    mut progress: RunProgress,
) {
    while let Some(event) = events.recv().await {
        progress.observe(&event);
        super::log::log_event(&event, verbose);
    }
    progress.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::TurnRecord;
    use crate::runner::StopReason;

    fn turn(turn_id: usize, ttft_ms: Option<f64>) -> Box<TurnRecord> {
        let record = serde_json::json!({
            "turn_id": turn_id, "success": ttft_ms.is_some(), "start_s": 0.0,
            "ttft_ms": ttft_ms, "time_to_first_content_ms": ttft_ms, "e2e_latency_ms": null,
            "stream_end_ms": null, "tpot_ms": null, "itl_count": 0, "itl_mean_ms": null,
            "itl_max_ms": null, "input_tokens": 10, "new_input_tokens": 10,
            "output_tokens": null, "output_tokens_source": null, "context_tokens": 10,
            "user_prefix_tokens": 0, "compaction_triggered": false,
            "server_prompt_tokens": null, "server_completion_tokens": null,
            "server_cached_tokens": null, "finish_reason": null, "error": null
        });
        Box::new(serde_json::from_value(record).unwrap())
    }

    #[test]
    fn progress_counts_turns_and_ttft() {
        let mut progress = ProgressOutput::hidden().start_run(2, 3, true);
        for (user_id, ttft_ms) in [(0, Some(100.0)), (1, Some(300.0)), (1, None)] {
            progress.observe(&RunEvent::TurnFinished {
                user_id,
                record: turn(1, ttft_ms),
            });
        }

        assert_eq!(progress.bar.position(), 3);
        assert_eq!(progress.bar.length(), Some(6));
        assert_eq!(progress.message(), "ok 2, failed 1, TTFT P50 100.0 ms");
    }

    #[test]
    fn early_stop_shrinks_the_total() {
        let mut progress = ProgressOutput::hidden().start_run(2, 3, true);
        progress.observe(&RunEvent::TurnFinished {
            user_id: 0,
            record: turn(1, Some(5.0)),
        });
        progress.observe(&RunEvent::UserStopped {
            user_id: 0,
            t_s: 1.0,
            reason: StopReason::ContextOverflow,
        });

        assert_eq!(
            progress.bar.length(),
            Some(4),
            "6 turns less the 2 never sent"
        );
    }
}
