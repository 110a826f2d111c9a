#!/usr/bin/env bash
# `parley bench group` against separate processes: the projector, one fanout-worker and
# two gateways on fresh topics of the broker of `scripts/kafka.sh start`; stops them at
# the end. Options go to `parley bench group` (see its --help), e.g.
#
#   scripts/bench-group.sh --members 10000 --online 2000 --rate 5 --seconds 20
#
# Environment: PARLEY_BIN (default target/release/parley; build it first with
# `cargo build --release`), PARLEY_LOG (default kafka://127.0.0.1:9092).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${PARLEY_BIN:-$ROOT/target/release/parley}"
[ -x "$BIN" ] || { echo "bench-group.sh: no parley binary at $BIN (cargo build --release)" >&2; exit 1; }
LOG="${PARLEY_LOG:-kafka://127.0.0.1:9092}"
PREFIX="bg-$(date +%s)-$$."
WORK="$(mktemp -d /tmp/parley-bench-group.XXXXXX)"
SECRET="bench-$$"
pids=()
cleanup() {
  # CPU time each role used, for the record.
  ps -o pid,cputime,rss,args -p "$(IFS=,; echo "${pids[*]}")" 2>/dev/null | cut -c1-120 >&2 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK/projector"
  echo "bench-group.sh: logs in $WORK" >&2
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 1 300); do
    curl -fsS "$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "bench-group.sh: $1 did not come up" >&2
  exit 1
}

export PARLEY_LOG_LEVEL="${PARLEY_LOG_LEVEL:-warn}"
"$BIN" topics create --log "$LOG" --topic-prefix "$PREFIX" --partitions 8 --gateway-slots 8 >&2
pp="$(free_port)"; g0="$(free_port)"; g1="$(free_port)"
"$BIN" projector --log "$LOG" --topic-prefix "$PREFIX" --http "127.0.0.1:$pp" \
  --data-dir "$WORK/projector" 2>"$WORK/projector.log" & pids+=($!)
wait_http "http://127.0.0.1:$pp"
"$BIN" fanout --log "$LOG" --topic-prefix "$PREFIX" --projector "http://127.0.0.1:$pp" \
  2>"$WORK/fanout.log" & pids+=($!)
for i in 0 1; do
  port=$g0; [ "$i" = 1 ] && port=$g1
  "$BIN" gateway --log "$LOG" --topic-prefix "$PREFIX" --gateway-id "$i" \
    --http "127.0.0.1:$port" --projector "http://127.0.0.1:$pp" --dev-auth \
    --jwt-secret "$SECRET" 2>"$WORK/gateway$i.log" & pids+=($!)
done
wait_http "http://127.0.0.1:$g0"
wait_http "http://127.0.0.1:$g1"
"$BIN" bench group --log "$LOG" --topic-prefix "$PREFIX" \
  --gateway "http://127.0.0.1:$g0" --gateway "http://127.0.0.1:$g1" "$@"
