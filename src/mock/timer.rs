//! Sleeps that end within tens of microseconds of their deadline, for the mock's token
//! schedule and engine steps.
//!
//! Tokio's timer wheel counts in whole milliseconds and rounds every deadline up to the next
//! tick, so a token due at `t` would go out anywhere in `t..t + 1 ms`. That error lands in
//! every TTFT a client measures against the mock, and a benchmark client is judged on errors
//! of that size. On Linux each mock server therefore keeps its pending deadlines in a heap and
//! arms one `timerfd` (a kernel timer with nanosecond resolution, read through a file
//! descriptor) for the earliest. The descriptor is registered with the runtime's I/O driver,
//! so the worker waiting in `epoll` wakes at the deadline itself and runs the due sleeps, with
//! no thread of its own and no hand-off between threads. Elsewhere, or if the descriptor cannot
//! be created, sleeps fall back to Tokio's timer.
//!
//! The driver task starts with the first sleep and stops when the server's state is dropped.
//! It is tied to the runtime that was current at that first sleep. A sleep that is dropped
//! before its deadline leaves its entry in the heap until the deadline passes; waking a dropped
//! task does nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::time::{Instant, Sleep};

/// The precise timer of one mock server.
#[derive(Default)]
pub(crate) struct PreciseTimer {
    /// The running driver, or `None` when the platform has no timerfd.
    driver: OnceLock<Option<Driver>>,
}

impl std::fmt::Debug for PreciseTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreciseTimer").finish_non_exhaustive()
    }
}

struct Driver {
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl Drop for PreciseTimer {
    fn drop(&mut self) {
        if let Some(Some(driver)) = self.driver.get() {
            driver.task.abort();
        }
    }
}

impl PreciseTimer {
    /// Completes at `deadline`, or at once if it has passed. Must be polled inside a Tokio
    /// runtime.
    pub(crate) fn sleep_until(&self, deadline: Instant) -> PreciseSleep {
        match self.driver.get_or_init(start_driver) {
            Some(driver) => PreciseSleep::Precise {
                shared: Arc::clone(&driver.shared),
                deadline,
                slot: None,
            },
            None => PreciseSleep::Coarse(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }
}

/// The future returned by [`PreciseTimer::sleep_until`].
pub(crate) enum PreciseSleep {
    Precise {
        shared: Arc<Shared>,
        deadline: Instant,
        /// The slot the driver takes this sleep's waker from, once the sleep is registered.
        slot: Option<WakerSlot>,
    },
    Coarse(Pin<Box<Sleep>>),
}

type WakerSlot = Arc<Mutex<Option<Waker>>>;

impl Future for PreciseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let (shared, deadline, slot) = match self.get_mut() {
            PreciseSleep::Coarse(sleep) => return sleep.as_mut().poll(context),
            PreciseSleep::Precise {
                shared,
                deadline,
                slot,
            } => (shared, *deadline, slot),
        };
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        match slot {
            Some(slot) => {
                let mut waker = lock(slot);
                match waker.as_mut() {
                    // Polled again before the deadline, perhaps by another task.
                    Some(waker) => waker.clone_from(context.waker()),
                    // The driver takes the waker only once the clock has passed the deadline,
                    // so this is not reached. Registering again keeps the sleep correct if it
                    // ever is.
                    None => {
                        *waker = Some(context.waker().clone());
                        drop(waker);
                        shared.register(deadline, Arc::clone(slot));
                    }
                }
            }
            None => {
                let new_slot = Arc::new(Mutex::new(Some(context.waker().clone())));
                shared.register(deadline, Arc::clone(&new_slot));
                *slot = Some(new_slot);
            }
        }
        Poll::Pending
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pending deadline, ordered by deadline and then by registration.
struct Entry {
    deadline: Instant,
    sequence: u64,
    slot: WakerSlot,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.sequence) == (other.deadline, other.sequence)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.sequence).cmp(&(other.deadline, other.sequence))
    }
}

#[derive(Default)]
struct Pending {
    heap: BinaryHeap<Reverse<Entry>>,
    next_sequence: u64,
    /// The deadline the timerfd is armed for.
    armed: Option<Instant>,
}

/// The heap of deadlines and the timer armed for the earliest.
pub(crate) struct Shared {
    pending: Mutex<Pending>,
    fd: os::TimerFd,
}

impl Shared {
    fn register(&self, deadline: Instant, slot: WakerSlot) {
        let mut pending = lock(&self.pending);
        let sequence = pending.next_sequence;
        pending.next_sequence += 1;
        pending.heap.push(Reverse(Entry {
            deadline,
            sequence,
            slot,
        }));
        // Arming under the lock keeps the driver from re-arming for a later deadline at the
        // same time.
        if pending.armed.is_none_or(|armed| deadline < armed) {
            self.fd.arm(Some(deadline));
            pending.armed = Some(deadline);
        }
    }

    /// Wakes every sleep whose deadline has passed and arms the timer for the next one.
    fn fire_due(&self) {
        let mut due = Vec::new();
        {
            let mut pending = lock(&self.pending);
            let now = Instant::now();
            while pending
                .heap
                .peek()
                .is_some_and(|Reverse(entry)| entry.deadline <= now)
            {
                if let Some(Reverse(entry)) = pending.heap.pop() {
                    due.push(entry.slot);
                }
            }
            let next = pending.heap.peek().map(|Reverse(entry)| entry.deadline);
            self.fd.arm(next);
            pending.armed = next;
        }
        for slot in due {
            if let Some(waker) = lock(&slot).take() {
                waker.wake();
            }
        }
    }
}

/// Creates the timerfd and spawns the task that watches it, or returns `None` (and the sleeps
/// use Tokio's timer) when that fails.
fn start_driver() -> Option<Driver> {
    let fd = match os::TimerFd::new() {
        Ok(fd) => fd,
        Err(error) => {
            tracing::warn!(
                "the mock server's token timing falls back to millisecond precision: {error}"
            );
            return None;
        }
    };
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        fd,
    });
    match os::spawn_driver(Arc::clone(&shared)) {
        Ok(task) => Some(Driver { shared, task }),
        Err(error) => {
            tracing::warn!(
                "the mock server's token timing falls back to millisecond precision: failed to \
                 watch its timer: {error}"
            );
            None
        }
    }
}

#[cfg(target_os = "linux")]
mod os {
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::sync::Arc;

    use rustix::time::{
        Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
        timerfd_settime,
    };
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    use tokio::task::AbortHandle;
    use tokio::time::Instant;

    use super::Shared;

    /// A non-blocking timerfd on the monotonic clock, the clock `Instant` reads.
    pub(super) struct TimerFd(OwnedFd);

    impl TimerFd {
        pub(super) fn new() -> io::Result<Self> {
            let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
            Ok(Self(timerfd_create(TimerfdClockId::Monotonic, flags)?))
        }

        /// Arms the timer to expire at `deadline`, or disarms it for `None`.
        pub(super) fn arm(&self, deadline: Option<Instant>) {
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let value = match deadline {
                // A zero value would disarm the timer, so a passed deadline expires in 1 ns.
                Some(deadline) => {
                    let delay = deadline.saturating_duration_since(Instant::now());
                    Timespec {
                        tv_sec: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                        tv_nsec: i64::from(delay.subsec_nanos().max(1)),
                    }
                }
                None => zero,
            };
            let spec = Itimerspec {
                it_interval: zero,
                it_value: value,
            };
            // Setting a valid spec on a timerfd that this process owns does not fail.
            if let Err(error) = timerfd_settime(&self.0, TimerfdTimerFlags::empty(), &spec) {
                tracing::warn!("failed to arm the mock server's token timer: {error}");
            }
        }
    }

    /// Gives the I/O driver the descriptor while the shared state keeps owning it.
    struct Watched(Arc<Shared>);

    impl AsRawFd for Watched {
        fn as_raw_fd(&self) -> RawFd {
            self.0.fd.0.as_raw_fd()
        }
    }

    /// Registers the timer with the current runtime's I/O driver and spawns the task that
    /// fires the due sleeps whenever it expires.
    pub(super) fn spawn_driver(shared: Arc<Shared>) -> io::Result<AbortHandle> {
        // SAFETY: `Watched` keeps alive the `Shared` that owns the descriptor for as long as
        // the `AsyncFd` exists, and always returns that same descriptor.
        let watched =
            unsafe { AsyncFd::register_with_interest(Watched(shared), Interest::READABLE) }
                .map_err(io::Error::from)?;
        Ok(tokio::spawn(drive(watched)).abort_handle())
    }

    /// Waits for the timer to expire and fires the due sleeps, until aborted.
    async fn drive(watched: AsyncFd<Watched>) {
        let mut expirations = [0_u8; 8];
        loop {
            let mut guard = match watched.readable().await {
                Ok(guard) => guard,
                Err(error) => {
                    tracing::warn!("the mock server's token timer stopped: {error}");
                    return;
                }
            };
            // Reading resets the timer's readiness; `WouldBlock` clears the guard's.
            let read = guard.try_io(|watched| {
                rustix::io::read(&watched.get_ref().0.fd.0, &mut expirations)
                    .map_err(io::Error::from)
            });
            if let Ok(Err(error)) = read {
                tracing::warn!("failed to read the mock server's token timer: {error}");
            }
            watched.get_ref().0.fire_due();
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    use std::io;
    use std::sync::Arc;

    use tokio::time::Instant;

    use super::Shared;

    pub(super) struct TimerFd;

    impl TimerFd {
        pub(super) fn new() -> io::Result<Self> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "timerfd is Linux-only",
            ))
        }

        pub(super) fn arm(&self, _deadline: Option<Instant>) {}
    }

    pub(super) fn spawn_driver(_shared: Arc<Shared>) -> io::Result<tokio::task::AbortHandle> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "timerfd is Linux-only",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn sleeps_end_at_their_deadlines_in_any_order() {
        let timer = PreciseTimer::default();
        let start = Instant::now();
        let sleeps = [30_u64, 5, 20, 0, 10].map(|delay| {
            let deadline = start + Duration::from_millis(delay);
            let sleep = timer.sleep_until(deadline);
            async move {
                sleep.await;
                (delay, deadline, Instant::now())
            }
        });
        for (delay, deadline, ended) in futures_util::future::join_all(sleeps).await {
            // Only the lower bound is checked: a shared machine may run any thread late.
            assert!(ended >= deadline, "the {delay} ms sleep ended early");
        }
    }

    #[tokio::test]
    async fn dropped_sleep_leaves_later_ones() {
        let timer = PreciseTimer::default();
        let start = Instant::now();
        let abandoned = tokio::time::timeout(
            Duration::from_millis(1),
            timer.sleep_until(start + Duration::from_millis(50)),
        )
        .await;
        assert!(abandoned.is_err());
        let deadline = start + Duration::from_millis(10);
        timer.sleep_until(deadline).await;
        assert!(Instant::now() >= deadline);
    }

    #[tokio::test]
    async fn past_deadline_is_ready_at_once() {
        let timer = PreciseTimer::default();
        timer
            .sleep_until(Instant::now() - Duration::from_millis(1))
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sleeps_fire_on_a_single_threaded_runtime() {
        let timer = PreciseTimer::default();
        let deadline = Instant::now() + Duration::from_millis(3);
        timer.sleep_until(deadline).await;
        assert!(Instant::now() >= deadline);
    }
}
