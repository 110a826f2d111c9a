#!/usr/bin/env bash
# `parley bench group` against separate processes: the projector, one fanout-worker and
# two gateways that `bench/peer-group/run-parley.sh` starts on fresh topics of the broker
# of `scripts/kafka.sh start`; stopped at the end. Options go to `parley bench group`
# (see its --help), e.g.
#
#   scripts/bench-group.sh --members 10000 --online 2000 --rate 5 --seconds 20
#
# Environment: PARLEY_BIN (default target/release/parley; build it first with
# `cargo build --release`), PARLEY_LOG (default kafka://127.0.0.1:9092),
# PARLEY_GW_PORT (first gateway port, default 8185).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PARLEY_BIN="${PARLEY_BIN:-$ROOT/target/release/parley}"
[ -x "$PARLEY_BIN" ] || { echo "bench-group.sh: no parley binary at $PARLEY_BIN (cargo build --release)" >&2; exit 1; }
export PARLEY_RUN_DIR="$(mktemp -d /tmp/parley-bench-group.XXXXXX)"
export PARLEY_GW_PORT="${PARLEY_GW_PORT:-8185}"
RUN="$ROOT/bench/peer-group/run-parley.sh"
cleanup() {
  # CPU time each role used, for the record.
  if [ -f "$PARLEY_RUN_DIR/pids" ]; then
    ps -o pid,cputime,rss,args -p "$(paste -sd, "$PARLEY_RUN_DIR/pids")" 2>/dev/null | cut -c1-120 >&2 || true
  fi
  "$RUN" stop >&2 || true
}
trap cleanup EXIT

urls="$("$RUN" start)"
gateways=()
for u in ${urls//,/ }; do gateways+=(--gateway "$u"); done
"$PARLEY_BIN" bench group --log "${PARLEY_LOG:-kafka://127.0.0.1:9092}" \
  --topic-prefix "$(cat "$PARLEY_RUN_DIR/prefix")" "${gateways[@]}" "$@"
