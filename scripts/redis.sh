#!/usr/bin/env bash
# Runs a Redis server (Debian's redis-server) for Parley's presence store, on loopback.
#
#   scripts/redis.sh start     start it on 127.0.0.1:${PARLEY_REDIS_PORT:-6379}
#   scripts/redis.sh stop      stop it
#   scripts/redis.sh status    is it running
#
# State (pid, log; no persistence: presence is rebuilt by heartbeats) lives under
# ${PARLEY_CACHE:-~/.cache/parley}/redis. start and stop are idempotent.
set -euo pipefail

PORT="${PARLEY_REDIS_PORT:-6379}"
CACHE="${PARLEY_CACHE:-$HOME/.cache/parley}"
DIR="$CACHE/redis-$PORT"
PIDFILE="$DIR/redis.pid"

die() { echo "redis.sh: $*" >&2; exit 1; }
say() { echo "redis.sh: $*" >&2; }

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-}" in
  start)
    if running; then say "already running on 127.0.0.1:$PORT"; exit 0; fi
    command -v redis-server >/dev/null || die "redis-server not found: apt-get install redis-server (scripts/setup.sh does)"
    mkdir -p "$DIR"
    redis-server --bind 127.0.0.1 --port "$PORT" --daemonize yes --pidfile "$PIDFILE" \
      --logfile "$DIR/redis.log" --dir "$DIR" --save "" --appendonly no >/dev/null
    for _ in $(seq 1 50); do
      if redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; then
        say "running on 127.0.0.1:$PORT (log: $DIR/redis.log)"; exit 0
      fi
      sleep 0.1
    done
    die "did not answer within 5 s; see $DIR/redis.log"
    ;;
  stop)
    if running; then
      kill "$(cat "$PIDFILE")" 2>/dev/null || true
      for _ in $(seq 1 50); do running || break; sleep 0.1; done
      running && kill -9 "$(cat "$PIDFILE")" 2>/dev/null || true
      say "stopped"
    fi
    rm -f "$PIDFILE"
    ;;
  status)
    if running; then echo "redis on 127.0.0.1:$PORT, pid $(cat "$PIDFILE")"; else echo "redis not running"; exit 3; fi
    ;;
  *)
    die "usage: scripts/redis.sh start|stop|status"
    ;;
esac
