#!/usr/bin/env bash
# Fails unless snowgate builds with its patched actix-http (vendor/README.md), i.e. unless
#   1. the lock file resolves actix-http exactly once, at 3.20.0, from the path (no `source`,
#      no `checksum`), with no unused patch entry for it;
#   2. cargo itself resolves it to vendor/actix-http (`cargo pkgid --locked`), so the
#      manifest's [patch.crates-io] agrees with the lock file;
#   3. vendor/actix-http is exactly crates.io actix-http 3.20.0 + strip + vendor/actix-http.patch
#      (scripts/vendor-actix-http.sh --check).
# A silent fallback to the registry crate would bring back 8 KiB buffers per connection, and the
# build would not notice: it compiles with either.
#
#   bash scripts/check-actix-http-patch.sh                    all three checks on this checkout
#   bash scripts/check-actix-http-patch.sh --lockfile FILE    check 1 alone, on FILE
#   bash scripts/check-actix-http-patch.sh --self-test        shows that broken inputs fail
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=3.20.0

# Check 1 on lock file $1; prints what is wrong and returns 1.
check_lockfile() {
  local lock=$1 problems
  problems=$(awk -v want="$VERSION" '
    function flush() {
      if (name == "\"actix-http\"") {
        n++
        if (version != "\"" want "\"") print "actix-http " version " in the lock file, not " want
        if (source != "") print "actix-http " version " comes from " source ", not vendor/actix-http"
        if (checksum) print "actix-http " version " has a registry checksum"
      }
      if (unused && name == "\"actix-http\"") print "[[patch.unused]] actix-http " version ": the path patch does not apply"
    }
    /^\[\[package\]\]$/ { flush(); name = version = source = ""; checksum = 0; unused = 0; next }
    /^\[\[patch\.unused\]\]$/ { flush(); name = version = source = ""; checksum = 0; unused = 1; next }
    /^\[/ { flush(); name = version = source = ""; checksum = 0; unused = 0; next }
    /^name = / { name = $3 }
    /^version = / { version = $3 }
    /^source = / { source = $3 }
    /^checksum = / { checksum = 1 }
    END {
      flush()
      if (n != 1) print "actix-http appears " n + 0 " times as a [[package]] in the lock file, not once"
    }
  ' "$lock")
  if [[ -n "$problems" ]]; then
    echo "error: $lock: the actix-http patch is not in effect:" >&2
    sed 's/^/  /' <<<"$problems" >&2
    return 1
  fi
}

# Check 2: what cargo resolves from Cargo.toml and Cargo.lock together (`--locked`: an error if
# the manifest's [patch.crates-io] and the lock file disagree; two actix-http make it ambiguous).
check_resolution() {
  local id
  if ! id=$(cargo pkgid --locked actix-http); then
    echo "error: cargo cannot resolve actix-http to one package (see above)" >&2
    return 1
  fi
  if [[ ! "$id" =~ ^path\+file://.*/vendor/actix-http#$VERSION$ ]]; then
    echo "error: cargo resolves actix-http to $id, not vendor/actix-http" >&2
    return 1
  fi
}

expect_failure() {
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    echo "self-test FAILED: passed although $what" >&2
    exit 1
  fi
  echo "  fails as it should when $what"
}

self_test() {
  t=$(mktemp -d)
  trap 'rm -rf "$t"' EXIT
  check_lockfile Cargo.lock
  echo "  passes on the committed Cargo.lock"

  # The actix-http block taken from the registry, as cargo writes it when the patch is dropped.
  awk '
    /^name = "actix-http"$/ { print; hit = 1; next }
    hit && /^version = / { print; print "source = \"registry+https://github.com/rust-lang/crates.io-index\""
      print "checksum = \"d20a22850ea7fecad12c5f8cd97d246c3af1f04ef400033977c2f13425c45816\""; hit = 0; next }
    { print }
  ' Cargo.lock >"$t/registry.lock"
  expect_failure "the lock file takes actix-http from the registry" check_lockfile "$t/registry.lock"

  # Patch and registry side by side, as when the vendored version no longer matches what
  # actix-web asks for: cargo keeps the path crate as [[patch.unused]].
  cp "$t/registry.lock" "$t/unused.lock"
  printf '\n[[patch.unused]]\nname = "actix-http"\nversion = "%s"\n' "$VERSION" >>"$t/unused.lock"
  expect_failure "the lock file lists the patch as unused" check_lockfile "$t/unused.lock"

  sed 's/^version = "3\.20\.0"$/version = "3.20.1"/' Cargo.lock >"$t/version.lock"
  expect_failure "the lock file has another actix-http version" check_lockfile "$t/version.lock"

  # The vendored tree with one patched line reverted, and with an extra file.
  cp -a vendor/actix-http "$t/reverted"
  sed -i 's/headers: HeaderMap::new(),/headers: HeaderMap::with_capacity(16),/' "$t/reverted/src/requests/head.rs"
  expect_failure "a patched line is reverted in the vendored tree" \
    bash scripts/vendor-actix-http.sh --check "$t/reverted"
  cp -a vendor/actix-http "$t/extra"
  echo '// stray' >"$t/extra/src/stray.rs"
  expect_failure "the vendored tree has a file upstream + patch has not" \
    bash scripts/vendor-actix-http.sh --check "$t/extra"
  echo "self-test passed"
}

case "${1:-}" in
  "")
    check_lockfile Cargo.lock
    check_resolution
    bash scripts/vendor-actix-http.sh --check
    echo "ok: Cargo.lock and cargo resolve actix-http $VERSION to vendor/actix-http"
    ;;
  --lockfile) check_lockfile "${2:?--lockfile needs a file}" && echo "ok: $2" ;;
  --self-test) self_test ;;
  *) echo "usage: $0 [--lockfile FILE | --self-test]" >&2; exit 2 ;;
esac
