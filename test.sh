#!/usr/bin/env bash
# The test command: installs what the tests need (tools/test-deps.sh, idempotent), then runs every test of
# the workspace. Arguments go to cargo-nextest (e.g. `./test.sh -p freezer-dr-core`).
#
#   ./test.sh [NEXTEST ARGS...]
set -euo pipefail

cd "$(dirname "$0")"
bash tools/test-deps.sh
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test.sh: installing cargo-nextest (cargo install --locked cargo-nextest)" >&2
    cargo install --locked cargo-nextest
fi
exec cargo nextest run --workspace "$@"
