//! Sleeps that end within tens of microseconds of their deadline, for the mock's token
//! schedule and engine steps.
//!
//! Tokio's timer wheel counts in whole milliseconds and rounds every deadline up to the next
//! tick, so a token due at `t` goes out anywhere in `t..t + 1 ms`. That error lands in every
//! TTFT a client measures against the mock, and a benchmark client is judged on errors of that
//! size. Here one thread per process keeps the pending deadlines in a heap and sleeps in the
//! kernel (`thread::park_timeout`, a futex with a nanosecond timeout) until the earliest one,
//! then wakes the tasks whose deadlines have passed. A wake crosses into the runtime through
//! its own wake-up path, which does not wait for a timer tick.
//!
//! A sleep that is dropped before its deadline leaves its entry in the heap until the deadline
//! passes; waking a dropped task does nothing. The heap thus holds at most one entry per sleep
//! started in the last `max(delay)`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

/// Completes at `deadline`, or at once if it has passed.
pub(crate) fn sleep_until(deadline: tokio::time::Instant) -> PreciseSleep {
    PreciseSleep {
        deadline: deadline.into_std(),
        slot: None,
    }
}

/// The future returned by [`sleep_until`].
pub(crate) struct PreciseSleep {
    deadline: Instant,
    /// Where the timer thread finds this sleep's waker, once the sleep is registered.
    slot: Option<Arc<Mutex<Option<Waker>>>>,
}

impl Future for PreciseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        if let Some(slot) = &self.slot {
            let mut waker = lock(slot);
            if let Some(waker) = waker.as_mut() {
                // Polled again before the deadline, perhaps by another task.
                waker.clone_from(context.waker());
                return Poll::Pending;
            }
            // The timer thread takes the waker only once its clock has reached the deadline,
            // and the clock is monotonic across threads, so this is not reached; registering
            // again keeps the sleep correct if it ever is.
            *waker = Some(context.waker().clone());
            drop(waker);
            timer().register(self.deadline, Arc::clone(slot));
            return Poll::Pending;
        }
        let slot = Arc::new(Mutex::new(Some(context.waker().clone())));
        timer().register(self.deadline, Arc::clone(&slot));
        self.slot = Some(slot);
        Poll::Pending
    }
}

type WakerSlot = Arc<Mutex<Option<Waker>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
}

/// The process's timer thread and the deadlines it waits for.
struct Timer {
    pending: Arc<Mutex<Pending>>,
    thread: Thread,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let thread_pending = Arc::clone(&pending);
        let handle = thread::Builder::new()
            .name("clawperf-mock-timer".to_owned())
            .spawn(move || run(&thread_pending))
            .unwrap_or_else(|error| {
                // Without this thread no token would ever be sent; the process cannot serve.
                panic!("failed to start the mock server's timer thread: {error}")
            });
        Timer {
            pending,
            thread: handle.thread().clone(),
        }
    })
}

impl Timer {
    fn register(&self, deadline: Instant, slot: WakerSlot) {
        let mut pending = lock(&self.pending);
        let sequence = pending.next_sequence;
        pending.next_sequence += 1;
        let is_earliest = pending
            .heap
            .peek()
            .is_none_or(|Reverse(earliest)| deadline < earliest.deadline);
        pending.heap.push(Reverse(Entry {
            deadline,
            sequence,
            slot,
        }));
        drop(pending);
        if is_earliest {
            self.thread.unpark();
        }
    }
}

/// The timer thread: wakes every sleep whose deadline has passed, then parks until the next
/// deadline or until an earlier one is registered.
fn run(pending: &Mutex<Pending>) {
    let mut due = Vec::new();
    loop {
        let now = Instant::now();
        let next = {
            let mut pending = lock(pending);
            while let Some(Reverse(entry)) = pending.heap.peek() {
                if entry.deadline > now {
                    break;
                }
                if let Some(Reverse(entry)) = pending.heap.pop() {
                    due.push(entry.slot);
                }
            }
            pending.heap.peek().map(|Reverse(entry)| entry.deadline)
        };
        for slot in due.drain(..) {
            if let Some(waker) = lock(&slot).take() {
                waker.wake();
            }
        }
        match next {
            Some(deadline) => thread::park_timeout(deadline.saturating_duration_since(now)),
            None => thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn sleeps_end_at_their_deadlines_in_any_order() {
        let start = tokio::time::Instant::now();
        let sleeps = [30_u64, 5, 20, 0, 10].map(|delay| async move {
            let deadline = start + Duration::from_millis(delay);
            sleep_until(deadline).await;
            (delay, deadline, tokio::time::Instant::now())
        });
        for (delay, deadline, ended) in futures_util::future::join_all(sleeps).await {
            // Only the lower bound is checked: a shared machine may run any thread late.
            assert!(ended >= deadline, "the {delay} ms sleep ended early");
        }
    }

    #[tokio::test]
    async fn a_dropped_sleep_does_not_hold_up_later_ones() {
        let start = tokio::time::Instant::now();
        drop(
            tokio::time::timeout(
                Duration::from_millis(1),
                sleep_until(start + Duration::from_millis(50)),
            )
            .await,
        );
        let deadline = start + Duration::from_millis(10);
        sleep_until(deadline).await;
        assert!(tokio::time::Instant::now() >= deadline);
    }

    #[tokio::test]
    async fn a_past_deadline_is_ready_at_once() {
        let past = tokio::time::Instant::now() - Duration::from_millis(1);
        sleep_until(past).await;
    }
}
