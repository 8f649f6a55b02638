//! Logs run events: phase changes always, and every turn with `--verbose`.

use tokio::sync::mpsc::UnboundedReceiver;

use crate::runner::RunEvent;

/// Consumes events until the run drops its sender.
pub async fn log_events(mut events: UnboundedReceiver<RunEvent>, verbose: bool) {
    while let Some(event) = events.recv().await {
        log_event(&event, verbose);
    }
}

/// Logs one event: context overflows always, turns, compactions and user stops with `verbose`.
pub fn log_event(event: &RunEvent, verbose: bool) {
    {
        match event {
            RunEvent::TurnFinished { user_id, record } if verbose => match &record.error {
                None => tracing::info!(
                    user_id,
                    turn_id = record.turn_id,
                    ttft_ms = record.ttft_ms,
                    tpot_ms = record.tpot_ms,
                    e2e_ms = record.e2e_latency_ms,
                    input_tokens = record.input_tokens,
                    output_tokens = record.output_tokens,
                    cached_tokens = record.server_cached_tokens,
                    "turn finished"
                ),
                Some(error) => tracing::warn!(
                    user_id,
                    turn_id = record.turn_id,
                    class = %error.class,
                    status = error.status,
                    message = %error.message,
                    "turn failed"
                ),
            },
            RunEvent::Compaction {
                user_id,
                turn_id,
                user_prefix_tokens,
                ..
            } if verbose => {
                tracing::info!(
                    user_id,
                    turn_id,
                    user_prefix_tokens,
                    "compacted the conversation"
                );
            }
            RunEvent::ContextOverflow {
                user_id,
                turn_id,
                request_tokens,
                ..
            } => {
                tracing::warn!(
                    user_id,
                    turn_id,
                    request_tokens,
                    "context overflow: the request reaches --max-context-tokens and compaction cannot \
                     shrink it below; the user stops"
                );
            }
            RunEvent::UserStopped {
                user_id, reason, ..
            } if verbose => {
                tracing::info!(user_id, reason = reason.as_str(), "user finished");
            }
            _ => {}
        }
    }
}
