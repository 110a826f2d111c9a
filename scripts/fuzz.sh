#!/usr/bin/env bash
# Coverage-guided fuzzing (AFL++ through cargo-afl, on the stable toolchain) of what
# Parley decodes from outside: the client-frame decoder and the Avro single-object
# decoder (fuzz/). Each target runs SECONDS (default 300); the figures come from AFL++'s
# fuzzer_stats, and the run fails if any input crashed a target (crashes are kept in
# $OUT/<target>/default/crashes).
#
#   scripts/fuzz.sh [SECONDS] [TARGET…]      targets: client_frame avro (default both)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-300}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(client_frame avro)
CACHE="$HOME/.cache/parley"
OUT="${PARLEY_FUZZ_OUT:-$CACHE/fuzz-out}"
export CARGO_TARGET_DIR="$CACHE/fuzz-target"
if ! cargo afl --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-afl" >&2
  cargo install cargo-afl --locked
fi
# cargo-afl builds its AFL++ runtime on first use.
cargo afl config --build >/dev/null 2>&1 || true
cd fuzz
cargo run --quiet --release --bin seeds
cargo afl build --release --bins 2>&1 | tail -n 2 >&2
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_QUIET=1
failed=0
for t in "${TARGETS[@]}"; do
  rm -rf "$OUT/$t"
  mkdir -p "$OUT/$t"
  echo "fuzz.sh: $t for ${SECONDS_EACH}s" >&2
  cargo afl fuzz -V "$SECONDS_EACH" -i "seeds/$t" -o "$OUT/$t" "$CARGO_TARGET_DIR/release/$t" \
    >"$OUT/$t.log" 2>&1 || { echo "fuzz.sh: afl-fuzz failed; see $OUT/$t.log" >&2; tail -n 20 "$OUT/$t.log" >&2; exit 1; }
  stats="$OUT/$t/default/fuzzer_stats"
  get() { awk -F' *: *' -v k="$1" '$1==k {print $2}' "$stats"; }
  crashes="$(get saved_crashes)"
  printf '%-13s execs %s (%s/s over %ss), corpus %s, edges %s, crashes %s, hangs %s\n' \
    "$t" "$(get execs_done)" "$(get execs_per_sec)" "$(get run_time)" "$(get corpus_count)" \
    "$(get edges_found)" "$crashes" "$(get saved_hangs)"
  if [ "${crashes:-0}" != 0 ]; then
    failed=1
    echo "fuzz.sh: $t crashed; inputs in $OUT/$t/default/crashes" >&2
  fi
done
exit $failed
