#!/usr/bin/env bash
# Measures the clawperf client under load: runs `clawperf` against a separate
# `clawperf-mock-server` process with a fixed TTFT and TPOT at several user counts, and prints
# per level the request and token rates, the client's CPU seconds and peak RSS, and the
# measured TTFT minus the configured TTFT (p50 and p99, from every turn's exact ttft_ms).
# `warm_p99` leaves out each user's first turn, whose TTFT includes opening its connection
# while other users open theirs. The mock's CPU seconds are printed too: the mock shares the
# machine, and a TTFT error can come from either process.
#
# Each level runs REPEAT times and the row shows the medians, with the range of the p99 over
# the repetitions, because one run on a shared machine can be far off. With PIN=1 the mock
# runs on CPU 1 and the client on CPU 0 (taskset), so that neither takes the other's core,
# as when the server under test has a machine of its own.
#
# The contexts are small (built-in tokenizer, about 200 prompt tokens) so that the mock's
# tokenizing is not the bottleneck, and each user runs a few turns, so a level takes seconds.
# Every server it starts listens on 127.0.0.1 and is stopped on exit.
#
# Usage: scripts/load-bench.sh [LEVEL...]        (default levels: 1 16 64 256 1000)
# Environment: TTFT_MS (200), TPOT_MS (20), OUTPUT_TOKENS (16), TURNS (5), REPEAT (3),
#              ARRIVAL (a --user-arrival value; default Poisson over one turn), PIN (0),
#              CARGO_TARGET_DIR (target), OUT_DIR (a new temporary directory).
# Needs: cargo, python3, /usr/bin/time (GNU time, for CPU seconds and peak RSS), and taskset
# for PIN=1.

set -euo pipefail

TTFT_MS=${TTFT_MS:-200}
TPOT_MS=${TPOT_MS:-20}
OUTPUT_TOKENS=${OUTPUT_TOKENS:-16}
TURNS=${TURNS:-5}
REPEAT=${REPEAT:-3}
PIN=${PIN:-0}
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

mock_pin=()
client_pin=()
if [ "$PIN" = 1 ]; then
    mock_pin=(taskset -c 1)
    client_pin=(taskset -c 0)
fi

mock_log="$out_dir/mock.log"
RUST_LOG=info NO_COLOR=1 ${mock_pin[@]+"${mock_pin[@]}"} "$mock" --port 0 --ttft "$TTFT_MS" --tpot "$TPOT_MS" >"$mock_log" 2>&1 &
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
echo "arrival ${ARRIVAL:-poisson over one turn}; $REPEAT runs per level (medians); pinned to separate CPUs: $PIN"
echo "load average before: $(cut -d ' ' -f 1-3 /proc/loadavg); $(nproc) cores"
printf '%6s %9s %10s %8s %9s %9s %9s %8s %12s %8s %7s %10s\n' \
    users "req/s" "tok/s" "cpu_s" "cpu_cores" "rss_MiB" "ttft_err" "ttft_err" "ttft_err" "ttft_err" failed "mock_cpu_s"
printf '%6s %9s %10s %8s %9s %9s %9s %8s %12s %8s %7s %10s\n' \
    "" "" "" "" "" "" "p50_ms" "p99_ms" "p99_range" "warm_p99" "" ""

# CPU seconds (user + system) the mock server has used so far.
mock_cpu_seconds() {
    awk -v ticks="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / ticks }' "/proc/$mock_pid/stat"
}

# Users start at random (Poisson) times spread over about one turn unless ARRIVAL sets
# another --user-arrival value. With `burst`, all users' tokens fall due at the same instants,
# turn after turn.
turn_ms=$((TTFT_MS + (OUTPUT_TOKENS - 1) * TPOT_MS))

for users in "${LEVELS[@]}"; do
    arrival=${ARRIVAL:-poisson:$(awk -v users="$users" -v turn_ms="$turn_ms" 'BEGIN { printf "%.3f", users * 1000 / turn_ms }')}
    runs="$out_dir/users-$users.runs.jsonl"
    : >"$runs"
    for repeat in $(seq "$REPEAT"); do
        mock_cpu_before=$(mock_cpu_seconds)
        run="$out_dir/users-$users.run-$repeat"
        /usr/bin/time -v -o "$run.time" ${client_pin[@]+"${client_pin[@]}"} "$clawperf" \
            --endpoint "http://$address/v1" --model mock \
            --num-users "$users" --max-turns "$TURNS" --user-arrival "$arrival" \
            --system-prefix-tokens 100 --user-prefix-tokens 20 --input-tokens-per-turn 20 \
            --output-tokens-per-turn "$OUTPUT_TOKENS" --max-context-tokens 100000 \
            --request-timeout 120 --seed "$repeat" \
            --output "$run.json" --journal "$run.turns.jsonl" \
            >"$run.stdout" 2>"$run.stderr" || {
            echo "error: clawperf failed at $users users; see $run.stderr" >&2
            exit 1
        }
        mock_cpu=$(awk -v before="$mock_cpu_before" -v after="$(mock_cpu_seconds)" 'BEGIN { printf "%.2f", after - before }')
        python3 - "$run.json" "$run.time" "$TTFT_MS" "$mock_cpu" >>"$runs" <<'EOF'
import json
import sys

result_path, timing_path = sys.argv[1], sys.argv[2]
ttft_ms, mock_cpu_s = float(sys.argv[3]), float(sys.argv[4])
result = json.load(open(result_path))
timing = {}
for line in open(timing_path):
    key, _, value = line.strip().rpartition(": ")
    timing[key] = value
cpu_s = float(timing["User time (seconds)"]) + float(timing["System time (seconds)"])
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


print(json.dumps({
    "req_s": summary["request_throughput_per_s"],
    "tok_s": summary["output_throughput_tok_s"],
    "cpu_s": cpu_s,
    "cpu_cores": cpu_s / summary["duration_s"],
    "rss_mib": int(timing["Maximum resident set size (kbytes)"]) / 1024,
    "p50": percentile(errors, 0.50),
    "p99": percentile(errors, 0.99),
    "warm_p99": percentile(warm_errors, 0.99),
    "failed": summary["failed_turns"],
    "mock_cpu_s": mock_cpu_s,
}))
EOF
    done
    python3 - "$runs" "$users" <<'EOF'
import json
import statistics
import sys

runs = [json.loads(line) for line in open(sys.argv[1])]
users = int(sys.argv[2])
median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
p99s = [run["p99"] for run in runs]
p99_range = f"{min(p99s):.2f}-{max(p99s):.2f}"
print(
    f"{users:6d} {median['req_s']:9.1f} {median['tok_s']:10.1f} "
    f"{median['cpu_s']:8.2f} {median['cpu_cores']:9.2f} {median['rss_mib']:9.1f} "
    f"{median['p50']:9.3f} {median['p99']:8.3f} {p99_range:>12} {median['warm_p99']:8.3f} "
    f"{sum(run['failed'] for run in runs):7d} {median['mock_cpu_s']:10.2f}"
)
EOF
done
echo "load average after: $(cut -d ' ' -f 1-3 /proc/loadavg)"
echo "results in $out_dir"
