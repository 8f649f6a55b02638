//! Process exit codes of the `clawperf` binary, in one place because CI scripts branch on them.

/// The run finished and at least one turn succeeded.
pub const SUCCESS: u8 = 0;
/// An option was invalid, or the run could not start (tokenizer, endpoint, mock server).
pub const CONFIG_ERROR: u8 = 1;
/// The run finished but every turn failed; the result JSON is still written.
pub const ALL_TURNS_FAILED: u8 = 2;
/// The run was interrupted (Ctrl-C or SIGTERM); the partial result JSON is written.
pub const INTERRUPTED: u8 = 3;
