#!/usr/bin/env bash
# Chaos run: `parley chaos` against the three-broker cluster of `kafka.sh cluster`.
# Every role is SIGKILLed and restarted under chat load, the busiest broker is killed and
# paused; then no acknowledged message may be missing, reordered or shown twice, and the
# projector's views must equal a rebuild from the log. Exit code 0 only if all hold.
#
#   scripts/chaos.sh [--short|--long] [parley chaos options…]
#
#   --short   40 s of faults (each kind once), 60 s to settle (the CI run)
#   --long    300 s of faults
#   (default) 90 s of faults, 90 s to settle; `parley chaos --help` lists every option,
#             e.g. --report chaos.md, --keep, --plain (bodies not sealed; sealed is the
#             default)
#
# The cluster is started if it is not running (and then stopped at the end). Nothing is
# built: the binary is $PARLEY_BIN, else $CARGO_TARGET_DIR/debug/parley, else
# target/debug/parley (run `cargo build` first).
#
# Environment:
#   PARLEY_BIN                 the parley binary to run
#   PARLEY_KAFKA_CLUSTER_PORT  first client port of the cluster (default 9192)
#   PARLEY_CHAOS_*             defaults of the options (PARLEY_CHAOS_DURATION_S, …)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA="$ROOT/scripts/kafka.sh"

die() { echo "chaos.sh: $*" >&2; exit 1; }
say() { echo "chaos.sh: $*" >&2; }

# Presets go through the environment, so that options given after them still win.
case "${1:-}" in
  --short)
    shift
    export PARLEY_CHAOS_DURATION_S="${PARLEY_CHAOS_DURATION_S:-40}"
    export PARLEY_CHAOS_KILL_EVERY_S="${PARLEY_CHAOS_KILL_EVERY_S:-5}"
    export PARLEY_CHAOS_SETTLE_S="${PARLEY_CHAOS_SETTLE_S:-60}"
    ;;
  --long)
    shift
    export PARLEY_CHAOS_DURATION_S="${PARLEY_CHAOS_DURATION_S:-300}"
    ;;
  -h|--help)
    sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

if [ -n "${PARLEY_BIN:-}" ]; then
  BIN="$PARLEY_BIN"
elif [ -n "${CARGO_TARGET_DIR:-}" ] && [ -x "$CARGO_TARGET_DIR/debug/parley" ]; then
  BIN="$CARGO_TARGET_DIR/debug/parley"
else
  BIN="$ROOT/target/debug/parley"
fi
[ -x "$BIN" ] || die "no parley binary at $BIN: build it (cargo build) or set PARLEY_BIN"
say "running $BIN (set PARLEY_BIN to run another build)"

base="${PARLEY_KAFKA_CLUSTER_PORT:-9192}"
bootstrap="127.0.0.1:$base,127.0.0.1:$((base + 100)),127.0.0.1:$((base + 200))"

running="$("$KAFKA" cluster status 2>/dev/null | grep -c ': running' || true)"
started=0
cleanup() {
  # A broker left paused (SIGSTOP) would hang everything after us.
  local n
  for n in 1 2 3; do "$KAFKA" cluster resume "$n" >/dev/null 2>&1 || true; done
  if [ "$started" = 1 ]; then
    say "stopping the cluster it started"
    "$KAFKA" cluster stop || true
  fi
}
trap cleanup EXIT
if [ "$running" -lt 3 ]; then
  if [ "$running" = 0 ]; then
    started=1
    # A cluster nobody runs is ours to clear: topics of earlier runs would only slow
    # every broker restart (each recovers all of its partitions).
    "$KAFKA" cluster reset >/dev/null 2>&1 || true
  fi
  say "starting the cluster ($running of 3 brokers running)"
  "$KAFKA" cluster start
fi

# Through the environment too: an explicit --bootstrap or --kafka-script still wins.
export PARLEY_CHAOS_BOOTSTRAP="${PARLEY_CHAOS_BOOTSTRAP:-$bootstrap}"
export PARLEY_CHAOS_KAFKA_SCRIPT="${PARLEY_CHAOS_KAFKA_SCRIPT:-$KAFKA}"
rc=0
"$BIN" chaos "$@" || rc=$?
exit "$rc"
