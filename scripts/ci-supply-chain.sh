#!/usr/bin/env bash
# Supply chain, for .ci/run: cargo-deny's policy (deny.toml), then the guard that the patched
# actix-http is what gets built (scripts/check-actix-http-patch.sh, which also rebuilds
# vendor/actix-http from crates.io + vendor/actix-http.patch in a temporary directory and compares),
# and the guard's self-test. No cargo build: a few seconds once cargo-deny is installed.
#
# SUPPLY_CHAIN_REQUIRE_ADVISORIES=1 makes an unreachable advisory database an error instead of a
# loudly reported skip (see deny.toml's [advisories] for why it is skipped by default).
set -euo pipefail
cd "$(dirname "$0")/.."

# deny.toml is written for this version; a newer cargo-deny may read it differently. Building it
# takes about 3 minutes on 2 cores, once per machine (~/.cargo/bin).
DENY_VERSION=0.20.2
if [[ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny $DENY_VERSION" ]]; then
  echo "-- cargo install --locked cargo-deny@$DENY_VERSION"
  cargo install --locked "cargo-deny@$DENY_VERSION"
fi

# The advisory database is a git clone from GitHub; `fetch db` fails at once where GitHub is out of
# reach, which is the case on this project's machines and CI (no network but package registries).
# Duplicate-version warnings are listed without their inclusion trees (`cargo deny check bans`
# prints them).
fetch_log=$(mktemp)
trap 'rm -f "$fetch_log"' EXIT
if cargo deny --locked fetch db >"$fetch_log" 2>&1; then
  echo "-- cargo deny check (advisories, bans, licenses, sources)"
  cargo deny --locked check --hide-inclusion-graph
else
  echo "!! ADVISORIES NOT CHECKED: the RustSec advisory database could not be fetched:"
  grep -m2 -E 'fatal|ERROR' "$fetch_log" | sed 's/^/!!   /' || true
  echo "!! No registry this machine reaches mirrors it (see deny.toml, [advisories]); run"
  echo "!! 'cargo deny check advisories' where GitHub is reachable."
  if [[ "${SUPPLY_CHAIN_REQUIRE_ADVISORIES:-0}" == 1 ]]; then
    echo "error: SUPPLY_CHAIN_REQUIRE_ADVISORIES=1 and the advisory database is unreachable" >&2
    exit 1
  fi
  echo "-- cargo deny check licenses bans sources"
  cargo deny --locked check --hide-inclusion-graph licenses bans sources
fi

echo "-- the patched actix-http is in effect and reproducible (scripts/check-actix-http-patch.sh)"
bash scripts/check-actix-http-patch.sh
echo "-- the guard fails on broken inputs (scripts/check-actix-http-patch.sh --self-test)"
bash scripts/check-actix-http-patch.sh --self-test
