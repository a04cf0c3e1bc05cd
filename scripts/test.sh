#!/usr/bin/env bash
# The test command of the README: sets up what the tests need, then runs every test.
# Tests start the real app (and the real binary) on loopback ports against the ServiceNow
# simulator, with real SQLite files in temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets "$@"
