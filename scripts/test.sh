#!/usr/bin/env bash
# The test command of the README: sets up what the tests need, then runs every test.
# Tests start the real app (and the real binary) on loopback ports against the ServiceNow
# simulator, with real SQLite files in temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."
# Install Debian package $1 when the check that follows it (a command) fails.
need() {
  local package="$1"; shift
  if ! "$@" >/dev/null 2>&1; then
    local sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package"
  fi
}
# The plugin-shim tests (crates/snowgate/tests/api/shim.rs) run the Jenkins shared library under Groovy.
need groovy command -v groovy
# Debian's groovy script wants JAVA_HOME (or /usr/lib/jvm/default-java, absent on JDK-only machines).
if [ -z "${JAVA_HOME:-}" ]; then
  for jdk in /usr/lib/jvm/java-17-* /usr/lib/jvm/java-21-* /usr/lib/jvm/java-11-* /usr/lib/jvm/*; do
    if [ -x "$jdk/bin/java" ]; then export JAVA_HOME="$jdk"; break; fi
  done
fi
# The status page is tested in a real headless browser (crates/snowgate/tests/api/ui.rs): Debian's chromium.
need chromium test -x /usr/bin/chromium
# The PostgreSQL store and replica tests start throwaway clusters with Debian's server binaries.
need postgresql sh -c 'ls /usr/lib/postgresql/*/bin/initdb'
# The TLS-to-PostgreSQL test (crates/snowgate/tests/api/store_faults.rs) makes its certificates with openssl.
need openssl command -v openssl
# The demo test (crates/snowgate/tests/api/demo.rs) runs the walkthrough's curl lines.
need curl command -v curl
# The alert rules' test (crates/snowgate/tests/api/dashboards.rs) runs promtool, from Debian's prometheus.
need prometheus command -v promtool
cargo test --locked --all-targets "$@"
# The same API tests once more on PostgreSQL (each test gets its own throwaway cluster); the
# store contract and the two-replica tests ran on PostgreSQL in the pass above already.
if [ "$#" -eq 0 ]; then
  SNOWGATE_TEST_STORE=postgres cargo test --locked --test api -- \
    gates:: callbacks:: operator:: registration:: reliability:: jenkins:: change:: passthrough:: operations:: \
    freezes:: supersede:: evidence:: conflicts:: ui_charts::
fi
