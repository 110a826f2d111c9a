#!/usr/bin/env bash
# Starts Parley as separate processes for the large-group benchmark, as
# scripts/bench-group.sh does (a projector, one fanout-worker and N gateways with
# --dev-auth, on fresh topics of the broker of `scripts/kafka.sh start`), but leaves
# them running in the background; prints the gateway URLs (comma-separated).
#
#   bench/peer-group/run-parley.sh           # start; prints e.g. http://127.0.0.1:8085,http://127.0.0.1:8086
#   bench/peer-group/run-parley.sh stop      # stop what this script started (by its PID file)
#   bench/peer-group/run-parley.sh status
#
# Environment: PARLEY_BIN (default target/release/parley: `cargo build --release`
# first), PARLEY_LOG (default kafka://127.0.0.1:9092), PARLEY_GATEWAYS (default 2,
# at most 8), PARLEY_GW_PORT (first gateway port, default 8085; the others follow),
# PARLEY_LOG_LEVEL (default warn), PARLEY_RUN_DIR (default
# $PEER_BENCH_OUT/run/parley-group: logs, PIDs, the projector's views).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BASE="${PEER_BENCH_OUT:-$HOME/.cache/parley-peer-bench}"
BIN="${PARLEY_BIN:-$ROOT/target/release/parley}"
LOG="${PARLEY_LOG:-kafka://127.0.0.1:9092}"
N="${PARLEY_GATEWAYS:-2}"
PORT0="${PARLEY_GW_PORT:-8085}"
RUN_DIR="${PARLEY_RUN_DIR:-$BASE/run/parley-group}"
PIDFILE="$RUN_DIR/pids"
URLFILE="$RUN_DIR/gateways"

BINFILE="$RUN_DIR/bin"
alive() { # pid -> true when it is a parley process of ours (the binary it was started with)
  local started="$BIN"
  [[ -f "$BINFILE" ]] && started="$(cat "$BINFILE")"
  # A binary rebuilt since shows as "<path> (deleted)".
  local exe; exe="$(readlink /proc/"$1"/exe 2>/dev/null)"; exe="${exe% (deleted)}"
  kill -0 "$1" 2>/dev/null && [[ "$exe" == "$(readlink -f "$started")" ]]
}
running() {
  [[ -f "$PIDFILE" ]] || return 1
  local p any=1
  for p in $(cat "$PIDFILE"); do alive "$p" && any=0; done
  return $any
}
stop() {
  [[ -f "$PIDFILE" ]] || { echo "no parley started by this script is running"; return 0; }
  local p
  for p in $(cat "$PIDFILE"); do alive "$p" && kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    local left=0
    for p in $(cat "$PIDFILE"); do alive "$p" && left=1; done
    [[ $left == 0 ]] && break
    sleep 0.1
  done
  rm -f "$PIDFILE" "$URLFILE" "$BINFILE" "$RUN_DIR/prefix"
  rm -rf "$RUN_DIR/projector"
  echo "stopped parley (logs in $RUN_DIR)"
}
wait_http() { # url pid
  for _ in $(seq 1 300); do
    curl -fsS -m 2 "$1/healthz" >/dev/null 2>&1 && return 0
    alive "$2" || { echo "run-parley.sh: the process behind $1 exited; see $RUN_DIR/*.log" >&2; stop >&2; exit 1; }
    sleep 0.2
  done
  echo "run-parley.sh: $1 did not come up within 60 s; see $RUN_DIR/*.log" >&2
  stop >&2
  exit 1
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

case "${1:-start}" in
  start)
    [[ -x "$BIN" ]] || { echo "run-parley.sh: no parley binary at $BIN (cargo build --release)" >&2; exit 1; }
    [[ "$N" -ge 1 && "$N" -le 8 ]] || { echo "run-parley.sh: PARLEY_GATEWAYS must be 1 to 8" >&2; exit 1; }
    if running; then
      echo "parley already running (PIDs $(tr '\n' ' ' <"$PIDFILE")), gateways:" >&2
      cat "$URLFILE"
      exit 0
    fi
    for i in $(seq 0 $((N - 1))); do
      if port_busy $((PORT0 + i)); then echo "run-parley.sh: port $((PORT0 + i)) is in use (set PARLEY_GW_PORT)" >&2; exit 1; fi
    done
    mkdir -p "$RUN_DIR"
    rm -rf "$RUN_DIR/projector"
    : >"$PIDFILE"
    echo "$BIN" >"$BINFILE"
    export PARLEY_LOG_LEVEL="${PARLEY_LOG_LEVEL:-warn}"
    PREFIX="pg-$(date +%s)-$$."
    SECRET="peergroup-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    # The projector's API token; the load generator is many users on one address, so
    # the rate limits of the gateways are off.
    export PARLEY_SERVICE_TOKEN="service-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    export PARLEY_RATE_SENDS=0 PARLEY_RATE_TYPING=0 PARLEY_RATE_CREATES=0 PARLEY_RATE_ADDS=0 \
      PARLEY_RATE_CONNECTS=0 PARLEY_RATE_UPGRADES_PER_IP=0 PARLEY_RATE_READS=0 PARLEY_RATE_SETTINGS=0
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    [[ $LOG == kafka://127.0.0.1:9092 ]] && "$ROOT/scripts/kafka.sh" crowded
    "$BIN" topics create --log "$LOG" --topic-prefix "$PREFIX" --partitions 8 --gateway-slots 8 >&2
    pp="$(free_port)"
    nohup "$BIN" projector --log "$LOG" --topic-prefix "$PREFIX" --http "127.0.0.1:$pp" \
      --data-dir "$RUN_DIR/projector" >"$RUN_DIR/projector.log" 2>&1 &
    echo $! >>"$PIDFILE"
    wait_http "http://127.0.0.1:$pp" $!
    nohup "$BIN" fanout --log "$LOG" --topic-prefix "$PREFIX" --projector "http://127.0.0.1:$pp" \
      --http 127.0.0.1:0 >"$RUN_DIR/fanout.log" 2>&1 &
    echo $! >>"$PIDFILE"
    urls=()
    for i in $(seq 0 $((N - 1))); do
      port=$((PORT0 + i))
      # One JWT secret for all gateways (the load generator fetches each user's token
      # from the gateway it connects to anyway).
      PARLEY_JWT_SECRET="$SECRET" nohup "$BIN" gateway --log "$LOG" --topic-prefix "$PREFIX" --gateway-id "$i" \
        --http "127.0.0.1:$port" --projector "http://127.0.0.1:$pp" --dev-auth \
        >"$RUN_DIR/gateway$i.log" 2>&1 &
      echo $! >>"$PIDFILE"
      wait_http "http://127.0.0.1:$port" $!
      urls+=("http://127.0.0.1:$port")
    done
    (IFS=,; echo "${urls[*]}") >"$URLFILE"
    echo "$PREFIX" >"$RUN_DIR/prefix"
    echo "parley: projector :$pp, fanout, ${N} gateway(s) on topics ${PREFIX}* (logs in $RUN_DIR)" >&2
    cat "$URLFILE"
    ;;
  stop) stop ;;
  status)
    if running; then echo "running: PIDs $(tr '\n' ' ' <"$PIDFILE"), gateways $(cat "$URLFILE" 2>/dev/null)"; else echo "not running"; exit 1; fi
    ;;
  *)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
