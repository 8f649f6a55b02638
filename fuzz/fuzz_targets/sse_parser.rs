//! Fuzzes the incremental SSE parser: see `check_sse_parser` for the properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

use clawperf_fuzz::checks::check_sse_parser;

fuzz_target!(|data: &[u8]| check_sse_parser(data));
