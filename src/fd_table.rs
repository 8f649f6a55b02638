//! Sizing the process's file-descriptor table before a runtime starts its threads.
//!
//! Linux grows a process's descriptor table when a new descriptor does not fit, at each power
//! of two from 256 on. While several threads share the table, growing it waits for an RCU
//! grace period (`synchronize_rcu` in the kernel's `expand_fdtable`), and on a loaded machine
//! that blocked the growing thread for 10 to 20 ms. In a benchmark that thread is a runtime
//! worker opening a user's connection, so every stream it serves stalls with it and every TTFT
//! due in those milliseconds comes out late. Opening one descriptor at the highest number the
//! process will need, before it starts other threads, grows the table while nothing shares it.
//! Closing that descriptor leaves the table at its new size.

/// Grows the descriptor table to hold `count` descriptors, or as many as the soft
/// `RLIMIT_NOFILE` allows. Call it before any other thread starts. It changes nothing else, and
/// a failure only costs the stall described above, so it is logged at debug level.
pub fn reserve(count: usize) {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, getrlimit};

        let limit = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        let highest = (count as u64).min(limit.saturating_sub(1));
        let Ok(highest) = i32::try_from(highest) else {
            return;
        };
        // Duplicating stderr to the lowest free descriptor at or above `highest` makes the
        // kernel grow the table to fit it. The duplicate closes when it is dropped.
        match rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), highest) {
            Ok(_duplicate) => tracing::debug!(descriptors = highest, "reserved descriptor table"),
            Err(error) => {
                tracing::debug!(%error, "failed to reserve the descriptor table")
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = count;
}
