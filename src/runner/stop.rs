//! [`StopHandle`]: stopping a run from outside (Ctrl-C, SIGTERM, a test) without losing what it
//! measured.
//!
//! A stop has two stages. [`StopHandle::stop`] lets no new turn start and no waiting user
//! arrive, while turns in flight go on. [`StopHandle::abort`] ends the turns still in flight;
//! they are dropped unrecorded, because a cut-off turn has no valid measurement, and counted
//! as aborted. The runner aborts by itself once the grace period after a stop has passed.

use tokio_util::sync::CancellationToken;

/// A cloneable handle that stops a run. Every clone controls the same run.
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    stop: CancellationToken,
    abort: CancellationToken,
}

impl StopHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets no new turn start; turns in flight finish within the grace period.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops the run and ends the turns in flight now.
    pub fn abort(&self) {
        self.stop.cancel();
        self.abort.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    pub fn is_aborted(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// Completes when [`StopHandle::stop`] or [`StopHandle::abort`] is called.
    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    /// Completes when [`StopHandle::abort`] is called.
    pub async fn aborted(&self) {
        self.abort.cancelled().await;
    }
}
