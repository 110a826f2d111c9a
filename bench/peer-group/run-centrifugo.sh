#!/usr/bin/env bash
# Starts Centrifugo v6 for the large-group benchmark on 127.0.0.1:8000 in the
# background and prints its PID. It reuses the binary that ../shared/peer-bench/build.sh
# builds ($PEER_BENCH_OUT/bin/centrifugo) with a config of its own: the shared one
# only allows user-limited 1:1 channels, while here every subscriber joins one
# ordinary channel "group:bench-<run>" and the publisher publishes over its WebSocket;
# the 1:1 pair alongside (peer-group -direct-rate) uses "direct:<run>", namespace "direct".
#
#   bench/peer-group/run-centrifugo.sh            # write the config, start, print PID
#   bench/peer-group/run-centrifugo.sh config     # only write (and check) the config
#   bench/peer-group/run-centrifugo.sh stop       # stop the instance this script started (by its PID file)
#   bench/peer-group/run-centrifugo.sh status
#
# Knobs (environment):
#   CF_PORT=8000                       port (always on 127.0.0.1)
#   CF_SECRET=peerbench-secret         client.token.hmac_secret_key (peer-group -cf-secret must match)
#   CF_NAMESPACE=group                 channel namespace (peer-group -cf-channel <ns>:<name> must match)
#   CF_HISTORY_SIZE=100 CF_HISTORY_TTL=300s   per-channel history (memory engine)
#   CF_LOG_LEVEL=warn                  Centrifugo log level
#   CF_GOMAXPROCS=                     pin Centrifugo's GOMAXPROCS (default: all cores)
#   CF_RUN_DIR=$PEER_BENCH_OUT/run/centrifugo-group   config, log and PID file
set -euo pipefail
BASE="${PEER_BENCH_OUT:-$HOME/.cache/parley-peer-bench}"
BIN="$BASE/bin/centrifugo"
CF_ADDR=127.0.0.1
CF_PORT="${CF_PORT:-8000}"
CF_SECRET="${CF_SECRET:-peerbench-secret}"
CF_NAMESPACE="${CF_NAMESPACE:-group}"
CF_HISTORY_SIZE="${CF_HISTORY_SIZE:-100}"
CF_HISTORY_TTL="${CF_HISTORY_TTL:-300s}"
CF_LOG_LEVEL="${CF_LOG_LEVEL:-warn}"
RUN_DIR="${CF_RUN_DIR:-$BASE/run/centrifugo-group}"
CONFIG="$RUN_DIR/config.json"
PIDFILE="$RUN_DIR/centrifugo.pid"
LOG="$RUN_DIR/centrifugo.log"

need_bin() {
  [[ -x "$BIN" ]] || { echo "no $BIN: build it with ../shared/peer-bench/build.sh (from the project root)" >&2; exit 1; }
}

write_config() {
  [[ "$CF_NAMESPACE" != direct ]] || { echo "CF_NAMESPACE=direct: that namespace is the 1:1 pair's, pick another" >&2; exit 1; }
  mkdir -p "$RUN_DIR"
  # v6 key names, as in ../shared/peer-bench/run-centrifugo.sh (checked with
  # `checkconfig --strict` below). What differs from the shared 1:1 config:
  # - allow_subscribe_for_client: any authenticated user may join a channel of the
  #   namespace without a subscription token (the group has no member list here);
  # - allow_publish_for_subscriber: a subscriber may publish over its own WebSocket
  #   (the publisher subscribes too; the load generator drops its echo);
  # - no allow_user_limited_channels (no "#user" channels in this workload);
  # - a second namespace "direct", set like the group's, for the 1:1 pair that runs
  #   alongside the group: A and B subscribe to "direct:<run>", A publishes (its echo
  #   is dropped), B reads.
  # - a third namespace "presence" (presence and join/leave on) for peer-group -presence.
  # History with forced recovery, as in the shared config: the closest analogue to a
  # chat a reconnecting client can catch up on. Memory engine: one node, nothing persisted.
  cat >"$CONFIG" <<EOF
{
  "log": { "level": "$CF_LOG_LEVEL" },
  "http_server": { "address": "$CF_ADDR", "port": $CF_PORT },
  "usage_stats": { "disabled": true },
  "health": { "enabled": true },
  "engine": { "type": "memory" },
  "http_api": { "key": "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" },
  "client": {
    "token": { "hmac_secret_key": "$CF_SECRET" }
  },
  "channel": {
    "namespaces": [
      {
        "name": "$CF_NAMESPACE",
        "allow_subscribe_for_client": true,
        "allow_publish_for_subscriber": true,
        "history_size": $CF_HISTORY_SIZE,
        "history_ttl": "$CF_HISTORY_TTL",
        "force_recovery": true
      },
      {
        "name": "presence",
        "allow_subscribe_for_client": true,
        "allow_presence_for_subscriber": true,
        "presence": true,
        "join_leave": true,
        "force_push_join_leave": true
      },
      {
        "name": "direct",
        "allow_subscribe_for_client": true,
        "allow_publish_for_subscriber": true,
        "history_size": $CF_HISTORY_SIZE,
        "history_ttl": "$CF_HISTORY_TTL",
        "force_recovery": true
      }
    ]
  }
}
EOF
  "$BIN" checkconfig --strict --config "$CONFIG" >/dev/null  # --strict: fail on unknown keys
}

running_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null && [[ "$(readlink -f /proc/"$pid"/exe 2>/dev/null)" == "$(readlink -f "$BIN")" ]]; then
    echo "$pid"
    return 0
  fi
  return 1
}

port_busy() { (exec 3<>"/dev/tcp/$CF_ADDR/$CF_PORT") 2>/dev/null; }

case "${1:-start}" in
  config)
    need_bin
    write_config
    echo "$CONFIG"
    ;;
  start)
    need_bin
    if pid="$(running_pid)"; then
      echo "centrifugo (group config) already running (PID $pid), config $CONFIG" >&2
      echo "$pid"
      exit 0
    fi
    if port_busy; then
      echo "something already listens on $CF_ADDR:$CF_PORT (the 1:1 benchmark's Centrifugo? ../shared/peer-bench/run-centrifugo.sh stop), or set CF_PORT" >&2
      exit 1
    fi
    write_config
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    if [[ -n "${CF_GOMAXPROCS:-}" ]]; then export GOMAXPROCS="$CF_GOMAXPROCS"; fi
    nohup "$BIN" --config "$CONFIG" >"$LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$PIDFILE"
    for _ in $(seq 1 100); do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "centrifugo exited; log:" >&2
        cat "$LOG" >&2
        rm -f "$PIDFILE"
        exit 1
      fi
      if curl -fsS -m 2 "http://$CF_ADDR:$CF_PORT/health" >/dev/null 2>&1; then
        echo "centrifugo $("$BIN" version | awk '{print $2}') listening on http://$CF_ADDR:$CF_PORT, namespaces $CF_NAMESPACE and direct (config $CONFIG, log $LOG)" >&2
        echo "$pid"
        exit 0
      fi
      sleep 0.1
    done
    echo "centrifugo (PID $pid) did not answer /health within 10 s; log: $LOG" >&2
    exit 1
    ;;
  stop)
    if pid="$(running_pid)"; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$PIDFILE"
      echo "stopped centrifugo (PID $pid)"
    else
      echo "no centrifugo started by this script is running"
    fi
    ;;
  status)
    if pid="$(running_pid)"; then echo "running: PID $pid, http://$CF_ADDR:$CF_PORT"; else echo "not running"; exit 1; fi
    ;;
  *)
    sed -n '2,21p' "$0"
    exit 2
    ;;
esac
