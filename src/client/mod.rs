//! The HTTP client for streamed chat completions and its timing measurement.
