#!/usr/bin/env bash
# A projector replica SIGKILLed under 1:1 traffic: projectors as 2 shards x 2 replicas,
# one fanout-worker and one gateway (on 127.0.0.1:8085, --dev-auth), all finding the
# projectors in the directory topic, on fresh topics of the broker of
# `scripts/kafka.sh start`; then ../shared/peer-bench/compare.sh (Parley only) runs
# 500 pairs at 500 msgs/s for 30 s, and 10 s into the measurement the replica each
# shard's callers use (the lowest URL) is SIGKILLed. Prints the result row.
#
#   scripts/bench-failover.sh          # with the kill
#   scripts/bench-failover.sh --no-kill
#
# Environment: PARLEY_BIN (default $CARGO_TARGET_DIR/release/parley, else
# target/release/parley: build it with `cargo build --release` first).
set -euo pipefail
cd "$(dirname "$0")/.."
KILL=1
[[ "${1:-}" == --no-kill ]] && KILL=0
BIN="${PARLEY_BIN:-${CARGO_TARGET_DIR:-target}/release/parley}"
[[ -x "$BIN" ]] || { echo "bench-failover.sh: no parley binary at $BIN (cargo build --release, or set PARLEY_BIN)" >&2; exit 1; }
curl -sf 127.0.0.1:8085/healthz >/dev/null 2>&1 && { echo "bench-failover.sh: something already listens on 127.0.0.1:8085" >&2; exit 1; }
export PARLEY_TOPIC_PREFIX="fo$(date +%s)." PARLEY_LOG=kafka://127.0.0.1:9092 PARLEY_LOG_LEVEL=warn
export PARLEY_SERVICE_TOKEN="failover-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export PARLEY_RATE_SENDS=0 PARLEY_RATE_CONNECTS=0 PARLEY_RATE_UPGRADES_PER_IP=0 PARLEY_RATE_READS=0
DIR="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
"$BIN" topics create >/dev/null
for s in 0 1; do for r in 0 1; do
  port=$((8090 + 2 * s + r))
  "$BIN" projector --http "127.0.0.1:$port" --shard "$s/2" --data-dir "$DIR/p$s$r" >"$DIR/p$s$r.log" 2>&1 &
  pids+=($!)
done; done
sleep 3
"$BIN" fanout --worker-id failover >"$DIR/fanout.log" 2>&1 & pids+=($!)
"$BIN" gateway --http 127.0.0.1:8085 --dev-auth >"$DIR/gateway.log" 2>&1 & pids+=($!)
for _ in $(seq 1 60); do curl -sf 127.0.0.1:8085/healthz >/dev/null && break; sleep 1; done
OUT="$DIR/compare.log"
timeout 600 ../shared/peer-bench/compare.sh --only parley --pairs 500 --rates 500 \
  --warmup 5s --duration 30s --grace 5s >"$OUT" 2>&1 &
bench=$!
for _ in $(seq 1 300); do grep -q "warm-up" "$OUT" && break; sleep 1; done
sleep 15   # the 5 s warm-up, then 10 s of the measurement
if [[ "$KILL" == 1 ]]; then
  kill -9 "${pids[0]}" "${pids[2]}"
  echo "$(date +%T) SIGKILLed the replicas on :8090 (shard 0) and :8092 (shard 1)" >&2
fi
wait "$bench" || true
grep -E '^\| (system|parley)' "$OUT" | head -2
echo "logs: $DIR" >&2
