#!/usr/bin/env bash
# Measures the mock server's speed with the fixed latency model: streamed tokens per second
# with the server on one runtime thread, and 10,000 concurrent streams without errors.
# Usage: scripts/bench-mock.sh [--streams N] [--tokens N] [--concurrent N]
set -euo pipefail
cd "$(dirname "$0")/.."

# Client and server are separate processes, and each needs one file descriptor per stream.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
    echo "warning: the open-file limit is $(ulimit -n);" \
         "10,000 concurrent streams need about 10,100" >&2
fi
echo "nproc: $(nproc)"
cargo bench --bench mock_throughput -- "$@"
