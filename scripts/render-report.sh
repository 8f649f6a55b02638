#!/usr/bin/env bash
# Runs a 4-user benchmark against the embedded mock server, writes its HTML report with
# `clawperf report` and renders the page to a PNG with headless Chromium, to check that the
# report looks right in a browser.
#
# Usage: scripts/render-report.sh [OUT_DIR] [extra clawperf options...]
# OUT_DIR defaults to target/clawperf/report; the PNG is OUT_DIR/report.png.
# Traffic goes only to the mock server that clawperf starts on 127.0.0.1. Chromium runs with
# its background networking off, so it fetches nothing (the report has no external resources).
# Chromium's own messages (D-Bus is missing in containers) go to OUT_DIR/chromium.log.
set -euo pipefail

cd "$(dirname "$0")/.."
out_dir=${1:-target/clawperf/report}
shift || true
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)

if [ ! -x /usr/bin/chromium ]; then
    echo "Chromium not found at /usr/bin/chromium: installing Debian's chromium package" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

cargo build --release --bin clawperf
clawperf="${CARGO_TARGET_DIR:-target}/release/clawperf"

"$clawperf" --endpoint mock --model mock --num-users 4 --max-turns 5 \
    --output-tokens-per-turn 200 --metrics-interval 1 --seed 1 --quiet \
    --output "$out_dir/mock-4u.json" "$@"
"$clawperf" report "$out_dir/mock-4u.json"

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# The window is tall enough for the verdict, all six charts and the summary tables.
/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars --window-size=1600,2400 \
    --screenshot="$out_dir/report.png" "file://$out_dir/mock-4u-report.html" \
    2>"$out_dir/chromium.log" || {
    cat "$out_dir/chromium.log" >&2
    exit 1
}

echo "Screenshot written to $out_dir/report.png"
