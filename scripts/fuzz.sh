#!/usr/bin/env bash
# Fuzzing (README "Fuzzing"): builds the cargo-fuzz targets of fuzz/ once, then runs each for a
# bounded time; any crash, panic or failed assertion fails the script, and its input is kept in
# fuzz/artifacts/<target>/.
#
#   SNOWGATE_FUZZ_SECONDS     seconds per target (default 30)
#   SNOWGATE_FUZZ_SANITIZER   address (default) or none
#   SNOWGATE_FUZZ_BUILD       release (default: optimised, with debug assertions) or dev
#                             (unoptimised: builds in about a third of the time, runs slower)
#   SNOWGATE_FUZZ_TARGETS     space-separated targets to run (default: all)
#   SNOWGATE_FUZZ_JOBS        targets run at once (default: the number of cores; libFuzzer
#                             uses one core per target)
#
# Each target reads its committed seeds in fuzz/corpus/<target>/ and writes what it finds to
# fuzz/corpus-run/<target>/ (ignored by git), so a run never changes the committed seeds; its
# output goes to fuzz/corpus-run/<target>.log, whose end is printed when the target fails.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${SNOWGATE_FUZZ_SECONDS:-30}"
# AddressSanitizer works on the stable toolchain: its runtime (librustc-stable_rt.asan.a) ships
# in stable's rust-std for x86_64-unknown-linux-gnu, and RUSTC_BOOTSTRAP (below) lets stable take
# -Zsanitizer. It finds little in snowgate itself (unsafe_code is forbidden, so an out-of-bounds
# access is a panic either way) but watches the unsafe code of the parsers below it; `none`
# builds and runs faster, which is what CI's short run uses (.ci/run).
sanitizer="${SNOWGATE_FUZZ_SANITIZER:-address}"
case "${SNOWGATE_FUZZ_BUILD:-release}" in
  release) profile=(--release --debug-assertions) ;;
  dev) profile=(--dev) ;;
  *) echo "SNOWGATE_FUZZ_BUILD must be release or dev" >&2; exit 2 ;;
esac
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz@0.13.2
fi
# cargo-fuzz passes nightly-only flags (-Zsanitizer, sanitizer coverage); RUSTC_BOOTSTRAP lets
# the machine's stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
targets="${SNOWGATE_FUZZ_TARGETS:-$(cargo fuzz list)}"
echo "== cargo fuzz build ${profile[*]} --sanitizer $sanitizer"
cargo fuzz build "${profile[@]}" --sanitizer "$sanitizer"
jobs="${SNOWGATE_FUZZ_JOBS:-$(nproc)}"

# One target's run; its exit status goes to corpus-run/<target>.status.
run_one() {
  local target=$1 status=0
  mkdir -p "corpus-run/$target" "corpus/$target"
  # -timeout: one input taking 10 s counts as a failure (every target reads small inputs).
  cargo fuzz run "${profile[@]}" --sanitizer "$sanitizer" "$target" \
    "corpus-run/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    >"corpus-run/$target.log" 2>&1 || status=$?
  echo "$status" >"corpus-run/$target.status"
}

# Each run stops by itself after $seconds; an interrupted script stops the ones it started.
trap 'kill $(jobs -p) 2>/dev/null || true' INT TERM
mkdir -p corpus-run
for target in $targets; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  echo "== cargo fuzz run $target (${seconds}s)"
  rm -f "corpus-run/$target.status"
  run_one "$target" &
done
wait
failed=()
for target in $targets; do
  status=$(cat "corpus-run/$target.status" 2>/dev/null || echo "no status")
  if [ "$status" = 0 ]; then
    echo "$target: $(grep -E '^Done [0-9]+ runs' "corpus-run/$target.log" | tail -n 1)"
  else
    failed+=("$target")
    echo "== $target failed (exit $status); the end of fuzz/corpus-run/$target.log:" >&2
    tail -n 60 "corpus-run/$target.log" >&2
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found failures in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzzing: every target ran ${seconds}s without a failure"
