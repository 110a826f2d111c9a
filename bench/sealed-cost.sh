#!/usr/bin/env bash
# The cost of sealed bodies (PARLEY_KEK), at the peer bench's 1k step: one run of
# `../shared/peer-bench/compare.sh --only parley --pairs 500 --rates 1k` against a
# fresh `parley dev` on the broker, with sealing off or on, and the CPU (user + system)
# its process and the broker's used meanwhile, read from /proc. `cf` measures
# Centrifugo (already running: ../shared/peer-bench/run-centrifugo.sh) the same way.
#
#   scripts/kafka.sh start
#   bench/sealed-cost.sh all     # off, on and cf in turn (Centrifugo started and stopped
#                                # here), ROUNDS times (default 2): one run of all three
#   bench/sealed-cost.sh off     # or one of them: on, cf
#
# PARLEY_BIN: the binary (default: target/release/parley under CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: bench/sealed-cost.sh all|off|on|cf}
if [[ $mode == all ]]; then
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); parley $(git rev-parse --short HEAD)"
  for round in $(seq 1 "${ROUNDS:-2}"); do
    echo "== round $round"
    "$0" off
    "$0" on
    ../shared/peer-bench/run-centrifugo.sh >/dev/null
    sleep 2
    "$0" cf
    ../shared/peer-bench/run-centrifugo.sh stop >/dev/null
  done
  exit 0
fi
bin=${PARLEY_BIN:-${CARGO_TARGET_DIR:-target}/release/parley}
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
broker=$(pgrep -f 'kafka.Kafka' | head -1) || { echo "no broker: scripts/kafka.sh start" >&2; exit 1; }
run=$(mktemp -d)
if [[ $mode == cf ]]; then
  pids=$(pgrep -x centrifugo | head -1) || { echo "no centrifugo running" >&2; exit 1; }
  only=centrifugo
else
  export PARLEY_RATE_SENDS=0 PARLEY_RATE_TYPING=0 PARLEY_RATE_CREATES=0 PARLEY_RATE_ADDS=0 \
         PARLEY_RATE_CONNECTS=0 PARLEY_RATE_UPGRADES_PER_IP=0 PARLEY_RATE_READS=0 PARLEY_RATE_SETTINGS=0
  if [[ $mode == on ]]; then export PARLEY_KEK=bench-key-encryption-key-0123456789abcdef; fi
  PARLEY_TOPIC_PREFIX="sealed$(date +%s)." RUST_LOG=warn "$bin" dev --http 127.0.0.1:8085 --dev-auth \
    --data-dir "$run/projector" --log kafka://127.0.0.1:9092 >"$run/parley.log" 2>&1 &
  parley=$!
  trap 'kill $parley 2>/dev/null; wait $parley 2>/dev/null || true' EXIT
  for _ in $(seq 1 300); do curl -fsS -m 2 http://127.0.0.1:8085/readyz >/dev/null 2>&1 && break; sleep 0.2; done
  sleep 3
  pids="$parley $broker"
  only=parley
fi
declare -A before
for p in $pids; do before[$p]=$(ticks "$p"); done
start=$(date +%s.%N)
../shared/peer-bench/compare.sh --only "$only" --pairs 500 --rates 1k --warmup 10s --duration 30s \
  >"$run/compare.txt" 2>&1
end=$(date +%s.%N)
total=0
for p in $pids; do total=$((total + $(ticks "$p") - ${before[$p]})); done
echo "$mode: cpu $(echo "scale=2; $total/100" | bc) s over $(echo "$end - $start" | bc) s (40,000 messages: 10 s warm-up + 30 s at 1,000/s)"
grep -E '^\| *(system|parley|centrifugo) ' "$run/compare.txt"
