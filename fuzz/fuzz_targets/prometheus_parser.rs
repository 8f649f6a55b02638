//! Fuzzes the Prometheus text parser: see `check_prometheus_parser` for the properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

use clawperf_fuzz::checks::check_prometheus_parser;

fuzz_target!(|data: &[u8]| check_prometheus_parser(data));
