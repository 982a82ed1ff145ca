#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer); the targets live in fuzz/, see docs/src/security/fuzzing.md.
#   scripts/fuzz.sh --smoke              each target for a few seconds (scripts/test.sh runs this)
#   scripts/fuzz.sh [SECONDS] [TARGET…]  longer runs (default 60 s each, every target)
# Every run first replays fuzz/regressions/TARGET (inputs that once failed) and then fuzzes
# from fuzz/seeds/TARGET plus the kept corpus fuzz/corpus/TARGET (not committed). It prints
# executions and coverage (libFuzzer's `cov:` edges and `ft:` features) per target.
#
# No nightly toolchain is needed: the stable one is run with RUSTC_BOOTSTRAP=1 (for the -Z
# flags cargo-fuzz passes). AddressSanitizer is used when the toolchain ships its runtime.
# The run is skipped, loudly, only when cargo-fuzz cannot be had; a target that fails to
# build or finds a failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

smoke=0
secs=60
if [ "${1:-}" = "--smoke" ]; then smoke=1; secs=${FUZZ_SMOKE_SECONDS:-4}; shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then secs=$1; shift; fi

banner() { printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!!! %s\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz from crates.io"
  if ! cargo install --quiet --locked cargo-fuzz; then
    banner "FUZZING SKIPPED: cargo-fuzz is not installed and could not be installed"
    exit 0
  fi
fi

# cargo-fuzz builds into fuzz/target (its own workspace); never into the main target dir.
unset CARGO_TARGET_DIR
# An instrumented release build of the whole dependency tree is long (tens of minutes on two
# busy cores): a fresh clone (CI) links fuzz/target to a cache outside the clone, so only
# Portcullis itself is rebuilt when the machine has built the targets before.
FUZZ_CACHE=${PORTCULLIS_FUZZ_CACHE:-/var/tmp/portcullis-fuzz-target}
if [ ! -e fuzz/target ] && mkdir -p "$FUZZ_CACHE" 2>/dev/null; then
  ln -s "$FUZZ_CACHE" fuzz/target
  echo "fuzz/target -> $FUZZ_CACHE (build cache kept between runs)"
fi
export RUSTC_BOOTSTRAP=1
host=$(rustc -vV | sed -n 's/^host: //p')
sysroot=$(rustc --print sysroot)
if ls "$sysroot/lib/rustlib/$host/lib/"librustc-*_rt.asan.a >/dev/null 2>&1; then
  san=(--sanitizer address)
else
  banner "AddressSanitizer runtime missing from the toolchain: fuzzing without a sanitizer"
  san=(--sanitizer none)
fi

mapfile -t all < <(cargo fuzz list --fuzz-dir fuzz)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

echo "== cargo fuzz build (${san[*]}) ${targets[*]}"
if [ $# -eq 0 ]; then
  # Every target in one cargo run: the library is built once and the targets link in parallel.
  cargo fuzz build --fuzz-dir fuzz "${san[@]}"
else
  for t in "${targets[@]}"; do
    cargo fuzz build --fuzz-dir fuzz "${san[@]}" "$t"
  done
fi
bin_dir="$ROOT/fuzz/target/$host/release"

summary=()
failed=0
for t in "${targets[@]}"; do
  if [ -d "fuzz/regressions/$t" ] && ls "fuzz/regressions/$t"/* >/dev/null 2>&1; then
    echo "== $t: replaying fuzz/regressions/$t"
    if ! "$bin_dir/$t" -runs=1 "fuzz/regressions/$t"/* 2>&1 | tail -3; then
      banner "FUZZ REGRESSION FAILED: $t"; failed=1; continue
    fi
  fi
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  log=$(mktemp)
  echo "== $t: fuzzing for ${secs}s"
  if ! "$bin_dir/$t" "fuzz/corpus/$t" "${seeds[@]}" -max_total_time="$secs" -timeout=20 \
      -rss_limit_mb=3072 -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log"
    banner "FUZZ TARGET FAILED: $t (the input is in fuzz/artifacts/$t/; see docs/src/security/fuzzing.md)"
    failed=1
  fi
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  summary+=("$(printf '%-18s %8ss %12s %8s %8s %12s' "$t" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
  rm -f "$log"
done

printf '\n%-18s %9s %12s %8s %8s %12s\n' target time executions cov ft corpus
printf '%s\n' "${summary[@]}"
if [ "$failed" != 0 ]; then
  banner "FUZZING FOUND FAILURES"
  exit 1
fi
[ "$smoke" = 1 ] && echo "fuzz smoke run passed"
exit 0
