#!/usr/bin/env bash
# Rebuilds vendor/actix-http from the crates.io release of actix-http and snowgate's patch
# (vendor/actix-http.patch; why the patch exists: vendor/README.md).
#
#   bash scripts/vendor-actix-http.sh              rebuild vendor/actix-http in place
#   bash scripts/vendor-actix-http.sh --check [DIR] rebuild into a temporary directory and fail
#                                                  unless DIR (default vendor/actix-http) is
#                                                  exactly upstream + strip + patch
#   bash scripts/vendor-actix-http.sh --make-patch  write vendor/actix-http.patch from the
#                                                  current vendor/actix-http (after editing it)
#
# Steps: take the .crate (cargo's registry cache if it has it, else a download into
# target/supply-chain/), verify its sha256, unpack, strip what the build does not use (tests,
# benches, examples and their test data, the crate's own Cargo.lock, Cargo.toml.orig and
# CHANGES.md; the [[test]]/[[bench]]/[[example]] targets and dev-dependencies out of
# Cargo.toml, whose auto* switches are already false in the published manifest), then apply
# vendor/actix-http.patch, which holds only the source changes.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=actix-http
VERSION=3.20.0
# The crates.io index's `cksum` for actix-http 3.20.0 (the checksum Cargo.lock would record for
# the registry package; the lock has none here because [patch.crates-io] makes it a path package).
SHA256=d20a22850ea7fecad12c5f8cd97d246c3af1f04ef400033977c2f13425c45816
URL="https://static.crates.io/crates/$NAME/$NAME-$VERSION.crate"
VENDOR_DIR=vendor/$NAME
PATCH=vendor/$NAME.patch
CACHE_DIR="${CARGO_TARGET_DIR:-target}/supply-chain"

mode=rebuild
target_dir=$VENDOR_DIR
case "${1:-}" in
  "") ;;
  --check) mode=check; target_dir=${2:-$VENDOR_DIR} ;;
  --make-patch) mode=make-patch ;;
  *) echo "usage: $0 [--check [DIR] | --make-patch]" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch_crate() {
  local cached="" f
  for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$NAME-$VERSION.crate"; do
    if [[ -f "$f" ]]; then cached=$f; break; fi
  done
  if [[ -z "$cached" ]]; then
    cached="$CACHE_DIR/$NAME-$VERSION.crate"
    if [[ ! -f "$cached" ]]; then
      mkdir -p "$CACHE_DIR"
      curl -sSfL --retry 3 -o "$cached.part" "$URL"
      mv "$cached.part" "$cached"
    fi
  fi
  local got
  got=$(sha256sum "$cached" | cut -d' ' -f1)
  if [[ "$got" != "$SHA256" ]]; then
    echo "error: $cached has sha256 $got, expected $SHA256 (delete it to download again)" >&2
    exit 1
  fi
  # Should Cargo.lock ever record the registry package (the patch not in effect, which
  # scripts/check-actix-http-patch.sh reports), its checksum must be this one too.
  local locked
  locked=$(awk -v v="\"$VERSION\"" '
    /^\[\[package\]\]$/ { n = ver = "" } /^name = / { n = $3 } /^version = / { ver = $3 }
    /^checksum = / && n == "\"actix-http\"" && ver == v { gsub(/"/, "", $3); print $3 }
  ' Cargo.lock)
  if [[ -n "$locked" && "$locked" != "$SHA256" ]]; then
    echo "error: Cargo.lock's checksum for $NAME $VERSION is $locked, this script pins $SHA256" >&2
    exit 1
  fi
  cp "$cached" "$work/$NAME-$VERSION.crate"
}

# Unpacks the .crate into $1 and strips it to what `cargo build` uses.
unpack_and_strip() {
  local dest=$1
  mkdir -p "$work/unpack"
  # --touch: files get the time of unpacking, not the release's, so that cargo, which compares
  # source mtimes with its last build, rebuilds after a change of version.
  tar --touch -xzf "$work/$NAME-$VERSION.crate" -C "$work/unpack"
  mv "$work/unpack/$NAME-$VERSION" "$dest"
  rm -rf "$dest"/{tests,benches,examples} "$dest"/{Cargo.lock,Cargo.toml.orig,CHANGES.md}
  # Drop whole TOML sections: every [[test]], [[bench]], [[example]] and [dev-dependencies.*]
  # table, up to the next table header; then squeeze the blank lines left between sections.
  awk '
    /^\[/ { skip = ($0 ~ /^\[\[(test|bench|example)\]\]$/ || $0 ~ /^\[dev-dependencies[].]/) }
    !skip { print }
  ' "$dest/Cargo.toml" | cat -s >"$dest/Cargo.toml.new"
  mv "$dest/Cargo.toml.new" "$dest/Cargo.toml"
}

fetch_crate

if [[ $mode == make-patch ]]; then
  unpack_and_strip "$work/a"
  cp -a "$VENDOR_DIR" "$work/b"
  # diff exits 1 when the trees differ, which is the point here.
  (cd "$work" && { diff -ruN a b || [[ $? -eq 1 ]]; }) |
    sed -E 's/^((---|\+\+\+) [^\t]*)\t.*$/\1/' >"$PATCH"
  echo "wrote $PATCH ($(grep -c '^+++ ' "$PATCH") files)"
  exit 0
fi

unpack_and_strip "$work/tree"
(cd "$work/tree" && patch -p1 --quiet --forward --no-backup-if-mismatch) <"$PATCH"

if [[ $mode == check ]]; then
  if ! diff -r "$work/tree" "$target_dir" >"$work/diff"; then
    echo "error: $target_dir is not crates.io $NAME $VERSION + strip + $PATCH:" >&2
    head -n 60 "$work/diff" >&2
    echo "(rebuild it with: bash scripts/vendor-actix-http.sh)" >&2
    exit 1
  fi
  echo "ok: $target_dir is crates.io $NAME $VERSION (sha256 $SHA256) + strip + $PATCH"
  exit 0
fi

rm -rf "$VENDOR_DIR"
mv "$work/tree" "$VENDOR_DIR"
echo "rebuilt $VENDOR_DIR from crates.io $NAME $VERSION (sha256 $SHA256) + $PATCH"
