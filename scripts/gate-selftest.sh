#!/usr/bin/env bash
# The regression gate's self-test: 20 A/A comparisons of an unchanged embedded mock and 20
# A/B comparisons against a mock with 20 % slower TTFT, printing the false alarm rate and
# the detection rate. Each comparison runs the chat::single_user scenario twice, 5
# repetitions per side, in about 4 s. The whole test takes about 3 minutes on 2 cores once
# built.
# Arguments are passed on: --comparisons N, --slowdown F.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --example gate_selftest -- "$@"
