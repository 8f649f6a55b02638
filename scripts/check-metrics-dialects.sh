#!/usr/bin/env bash
# Checks the mock server's /metrics in every dialect (vllm, sglang, mindie) with
# `promtool check metrics`. For each dialect it starts clawperf-mock-server on a free 127.0.0.1
# port, sends a few streamed requests, and pipes /metrics into promtool. It installs promtool
# from Debian's `prometheus` package when it is missing (needs root and apt-get).
# Usage: scripts/check-metrics-dialects.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
    echo "promtool not found; installing Debian's prometheus package" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi

cargo build --quiet --bin clawperf-mock-server
target_dir="${CARGO_TARGET_DIR:-target}"
server="$target_dir/debug/clawperf-mock-server"

# Returns a TCP port that was free a moment ago.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

failed=0
for dialect in vllm sglang mindie; do
    port="$(free_port)"
    log="$(mktemp)"
    "$server" --port "$port" --metrics-dialect "$dialect" \
        --latency-model engine --decode-step-base-us 1000 >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    for turn in 1 2 3; do
        curl -fsS "http://127.0.0.1:$port/v1/chat/completions" \
            -H 'Content-Type: application/json' \
            -d "{\"model\": \"mock\", \"max_tokens\": 8, \"stream\": true,
                 \"messages\": [{\"role\": \"user\", \"content\": \"$(printf 'x%.0s' $(seq 100)) turn $turn\"}]}" \
            >/dev/null
    done
    metrics="$(curl -fsS "http://127.0.0.1:$port/metrics")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -f "$log"
    # promtool exits 1 for an invalid exposition and 3 for lint findings only. vLLM and SGLang
    # name their metrics `vllm:...` and `sglang:...`, which promtool (2.42) reports as
    # "metric names should not contain ':'"; their real /metrics output gets the same findings.
    # So exit 3 passes when that is the only finding, and anything else fails.
    set +e
    output="$(printf '%s\n' "$metrics" | promtool check metrics 2>&1)"
    status=$?
    set -e
    other="$(printf '%s\n' "$output" | grep -v "metric names should not contain ':'" | grep -v '^$' || true)"
    colons="$(printf '%s\n' "$output" | grep -c "metric names should not contain ':'" || true)"
    if [ "$status" -eq 0 ] || { [ "$status" -eq 3 ] && [ -z "$other" ]; }; then
        echo "$dialect: promtool check metrics passed ($colons lint findings of ':' in names, as for the real engine)"
    else
        echo "$dialect: promtool check metrics failed with exit status $status:"
        echo "$output"
        failed=1
    fi
done
exit "$failed"
