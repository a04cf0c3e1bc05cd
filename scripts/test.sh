#!/usr/bin/env bash
# The test command of the README: sets up what the tests need, then runs every test.
# Tests start the real app (and the real binary) on loopback ports against the ServiceNow
# simulator, with real SQLite files in temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."
# The plugin-shim tests (crates/snowgate/tests/api/shim.rs) run the Jenkins shared library under Groovy.
if ! command -v groovy >/dev/null 2>&1; then
  sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends groovy
fi
# Debian's groovy script wants JAVA_HOME (or /usr/lib/jvm/default-java, absent on JDK-only machines).
if [ -z "${JAVA_HOME:-}" ]; then
  for jdk in /usr/lib/jvm/java-17-* /usr/lib/jvm/java-21-* /usr/lib/jvm/java-11-* /usr/lib/jvm/*; do
    if [ -x "$jdk/bin/java" ]; then export JAVA_HOME="$jdk"; break; fi
  done
fi
# The status page is tested in a real headless browser (crates/snowgate/tests/api/ui.rs): Debian's chromium.
if [ ! -x /usr/bin/chromium ]; then
  sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
# The PostgreSQL store and replica tests start throwaway clusters with Debian's server binaries.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
fi
# The TLS-to-PostgreSQL test (crates/snowgate/tests/api/store_faults.rs) makes its certificates with openssl.
if ! command -v openssl >/dev/null 2>&1; then
  sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl
fi
cargo test --locked --all-targets "$@"
# The same API tests once more on PostgreSQL (each test gets its own throwaway cluster); the
# store contract and the two-replica tests ran on PostgreSQL in the pass above already.
if [ "$#" -eq 0 ]; then
  SNOWGATE_TEST_STORE=postgres cargo test --locked --test api -- \
    gates:: callbacks:: operator:: registration:: reliability:: jenkins:: change:: passthrough:: operations:: \
    freezes:: supersede:: evidence:: conflicts:: ui_charts::
fi
