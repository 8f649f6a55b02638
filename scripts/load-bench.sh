#!/usr/bin/env bash
# Measures the clawperf client under load: runs `clawperf` against a separate
# `clawperf-mock-server` process with a fixed TTFT and TPOT at several user counts, and prints
# per level the request and token rates, the client's CPU seconds and peak RSS, and the
# measured TTFT minus the configured TTFT (p50 and p99, from every turn's exact ttft_ms).
# `warm_p99` leaves out each user's first turn, whose TTFT includes opening its connection
# while every other user opens theirs. The mock's CPU seconds are printed too: the mock shares the machine, and a TTFT error can
# come from either process.
#
# The contexts are small (built-in tokenizer, about 200 prompt tokens) so that the mock's
# tokenizing is not the bottleneck, and each user runs a few turns, so a level takes seconds.
# Every server it starts listens on 127.0.0.1 and is stopped on exit.
#
# Usage: scripts/load-bench.sh [LEVEL...]        (default levels: 1 16 64 256 1000)
# Environment: TTFT_MS (200), TPOT_MS (20), OUTPUT_TOKENS (16), TURNS (3),
#              CARGO_TARGET_DIR (target), OUT_DIR (a new temporary directory).
# Needs: cargo, python3, /usr/bin/time (GNU time, for CPU seconds and peak RSS).

set -euo pipefail

TTFT_MS=${TTFT_MS:-200}
TPOT_MS=${TPOT_MS:-20}
OUTPUT_TOKENS=${OUTPUT_TOKENS:-16}
TURNS=${TURNS:-3}
LEVELS=("$@")
if [ ${#LEVELS[@]} -eq 0 ]; then
    LEVELS=(1 16 64 256 1000)
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
out_dir=${OUT_DIR:-$(mktemp -d -t clawperf-load-bench.XXXXXX)}
mkdir -p "$out_dir"

# 1000 users hold 1000 client sockets, and the mock as many again.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

(cd "$repo" && cargo build --release --bins --quiet)
clawperf="$target_dir/release/clawperf"
mock="$target_dir/release/clawperf-mock-server"

mock_log="$out_dir/mock.log"
RUST_LOG=info NO_COLOR=1 "$mock" --port 0 --ttft "$TTFT_MS" --tpot "$TPOT_MS" >"$mock_log" 2>&1 &
mock_pid=$!
trap 'kill "$mock_pid" 2>/dev/null || true' EXIT

address=""
for _ in $(seq 100); do
    address=$(sed -n 's/.*mock server listening.*addr=\([0-9.:]*\).*/\1/p; s/.*addr=\([0-9.:]*\).*mock server listening.*/\1/p' "$mock_log" | head -n 1)
    [ -n "$address" ] && break
    sleep 0.1
done
if [ -z "$address" ]; then
    echo "error: the mock server did not report its address; its log:" >&2
    cat "$mock_log" >&2
    exit 1
fi

echo "mock server at $address: TTFT $TTFT_MS ms, TPOT $TPOT_MS ms; $OUTPUT_TOKENS output tokens x $TURNS turns per user"
echo "load average before: $(cut -d ' ' -f 1-3 /proc/loadavg); $(nproc) cores"
printf '%6s %9s %10s %8s %9s %9s %9s %8s %8s %7s %10s\n' \
    users "req/s" "tok/s" "cpu_s" "cpu_cores" "rss_MiB" "ttft_err" "ttft_err" "ttft_err" failed "mock_cpu_s"
printf '%6s %9s %10s %8s %9s %9s %9s %8s %8s %7s %10s\n' \
    "" "" "" "" "" "" "p50_ms" "p99_ms" "warm_p99" "" ""

# CPU seconds (user + system) the mock server has used so far.
mock_cpu_seconds() {
    awk -v ticks="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / ticks }' "/proc/$mock_pid/stat"
}

for users in "${LEVELS[@]}"; do
    mock_cpu_before=$(mock_cpu_seconds)
    result="$out_dir/users-$users.json"
    timing="$out_dir/users-$users.time"
    /usr/bin/time -v -o "$timing" "$clawperf" \
        --endpoint "http://$address/v1" --model mock \
        --num-users "$users" --max-turns "$TURNS" \
        --system-prefix-tokens 100 --user-prefix-tokens 20 --input-tokens-per-turn 20 \
        --output-tokens-per-turn "$OUTPUT_TOKENS" --max-context-tokens 100000 \
        --request-timeout 120 --seed 1 \
        --output "$result" --journal "$out_dir/users-$users.turns.jsonl" \
        >"$out_dir/users-$users.stdout" 2>"$out_dir/users-$users.stderr" || {
        echo "error: clawperf failed at $users users; see $out_dir/users-$users.stderr" >&2
        exit 1
    }
    mock_cpu=$(awk -v before="$mock_cpu_before" -v after="$(mock_cpu_seconds)" 'BEGIN { printf "%.2f", after - before }')
    python3 - "$result" "$timing" "$users" "$TTFT_MS" "$mock_cpu" <<'EOF'
import json
import sys

result_path, timing_path = sys.argv[1], sys.argv[2]
users, ttft_ms, mock_cpu_s = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
result = json.load(open(result_path))
timing = {}
for line in open(timing_path):
    key, _, value = line.strip().rpartition(": ")
    timing[key] = value
cpu_s = float(timing["User time (seconds)"]) + float(timing["System time (seconds)"])
rss_mib = int(timing["Maximum resident set size (kbytes)"]) / 1024
summary = result["summary"]

measured = [
    (turn["turn_id"], turn["ttft_ms"] - ttft_ms)
    for user in result["users"]
    for turn in user["turns"]
    if turn["success"] and turn["ttft_ms"] is not None
]
errors = sorted(error for _, error in measured)
warm_errors = sorted(error for turn_id, error in measured if turn_id > 1)


def percentile(values, fraction):
    # Nearest rank: the smallest value with at least `fraction` of the values at or below it.
    if not values:
        return float("nan")
    rank = max(1, -(-len(values) * fraction // 1))
    return values[int(rank) - 1]


print(
    f"{users:6d} {summary['request_throughput_per_s']:9.1f} {summary['output_throughput_tok_s']:10.1f} "
    f"{cpu_s:8.2f} {cpu_s / summary['duration_s']:9.2f} {rss_mib:9.1f} "
    f"{percentile(errors, 0.50):9.3f} {percentile(errors, 0.99):8.3f} "
    f"{percentile(warm_errors, 0.99):8.3f} {summary['failed_turns']:7d} "
    f"{mock_cpu_s:10.2f}"
)
EOF
done
echo "load average after: $(cut -d ' ' -f 1-3 /proc/loadavg)"
echo "results in $out_dir"
