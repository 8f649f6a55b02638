#!/usr/bin/env bash
# Runs clawperf against a real vLLM engine (vLLM's CPU build serving a tiny local model on
# 127.0.0.1) and checks the core measurements against it:
#   - every turn of 2 users x 3 turns succeeds;
#   - on every turn the client's prompt-token count equals the server's usage.prompt_tokens;
#   - the prefix-cache token hit rate read from vLLM's /metrics is above 0.
#
# The first run installs vLLM (about 3 GB of downloads, 5.5 GB of disk) through
# scripts/real-vllm/setup_and_serve.sh; later runs reuse the install and a running server.
# Not part of the test suite because of that download.
#
#   bash scripts/check-real-vllm.sh            # install if needed, serve, check
#   STOP_SERVER=1 bash scripts/check-real-vllm.sh   # also stop the server afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

export ROOT=${ROOT:-$HOME/.cache/clawperf-real-vllm}
export PORT=${PORT:-8011}
OUT=${OUT:-target/clawperf/real-vllm.json}

bash scripts/real-vllm/setup_and_serve.sh
cargo build --release --quiet --bin clawperf

./target/release/clawperf \
  --endpoint "http://127.0.0.1:$PORT/v1" --model tiny-llama \
  --tokenizer "$ROOT/models/tiny-llama" \
  --num-users 2 --max-turns 3 \
  --system-prefix-tokens 1500 --user-prefix-tokens 500 \
  --input-tokens-per-turn 500 --output-tokens-per-turn 100 \
  --max-context-tokens 8192 \
  --metrics-endpoint "http://127.0.0.1:$PORT/metrics" --backend vllm --metrics-interval 1 \
  --output "$OUT"

python3 - "$OUT" <<'PY'
import json
import sys

result = json.load(open(sys.argv[1]))
failures = []
print(f"{'user':>4} {'turn':>4} {'ok':>5} {'client prompt':>13} {'server prompt':>13} {'output':>6}")
for user in result["users"]:
    for turn in user["turns"]:
        print(f"{user['user_id']:>4} {turn['turn_id']:>4} {str(turn['success']):>5} "
              f"{turn['input_tokens']:>13} {str(turn['server_prompt_tokens']):>13} {str(turn['output_tokens']):>6}")
        if not turn["success"]:
            failures.append(f"user {user['user_id']} turn {turn['turn_id']} failed: {turn['error']}")
        elif turn["input_tokens"] != turn["server_prompt_tokens"]:
            failures.append(f"user {user['user_id']} turn {turn['turn_id']}: client counted "
                            f"{turn['input_tokens']} prompt tokens, server {turn['server_prompt_tokens']}")
turns = sum(len(user["turns"]) for user in result["users"])
if turns != 6:
    failures.append(f"expected 6 turns, got {turns}")
rate = result["summary"]["prefix_cache_token_hit_rate"]
print(f"prefix-cache token hit rate from /metrics: {rate}")
if rate is None or rate <= 0:
    failures.append(f"prefix-cache hit rate is {rate}, expected > 0")
if failures:
    print("FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("OK: all 6 turns succeeded, client and server prompt-token counts agree, hit rate > 0")
PY

if [ "${STOP_SERVER:-0}" = 1 ]; then
  kill "$(cat "$ROOT/vllm_server.pid")"
fi
