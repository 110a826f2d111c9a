#!/usr/bin/env bash
# The 1:1 workload of ../shared/peer-bench/compare.sh against Parley and Centrifugo, one
# after the other in one run, with what compare.sh does not report: each system's CPU
# during the measured window (Parley's process, plus the broker's on Kafka), CPU per
# delivered message, and their ratios.
#
#   bench/one-to-one/cpu-compare.sh kafka 1000 500      # log, msgs/s, pairs
#   bench/one-to-one/cpu-compare.sh embedded 4000 500
#
# It starts a fresh `parley dev --dev-auth` on 127.0.0.1:8085 (rate limits off; on Kafka
# with fresh topics) from $PARLEY_BIN (default target/release/parley), warms it with a
# short step, measures, then stops it. Centrifugo must already run
# (../shared/peer-bench/run-centrifugo.sh); on Kafka, so must the broker
# (scripts/kafka.sh start). Steps: warm-up 10 s, 20 s measured, CPU sampled over 15 s
# inside the measured window from /proc/PID/stat.
#
# Against Centrifugo's Redis engine (started with CF_ENGINE=redis), run this with
# CF_ENGINE=redis too: the Redis server's CPU then counts as Centrifugo's, as the
# broker's counts as Parley's (its own row, and in the total).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
[[ $# -eq 3 && ( $1 == kafka || $1 == embedded ) ]] || { sed -n 2,19p "$0" >&2; exit 2; }
MODE=$1 RATE=$2 PAIRS=$3
COMPARE="$ROOT/../shared/peer-bench/compare.sh"
[[ -x $COMPARE ]] || { echo "cpu-compare.sh: no $COMPARE" >&2; exit 1; }
CF=$(pgrep -x centrifugo | head -1) || { echo "cpu-compare.sh: Centrifugo is not running" >&2; exit 1; }
REDIS=""
if [[ ${CF_ENGINE:-memory} == redis ]]; then
  REDIS=$(pgrep -x redis-server | head -1) || { echo "cpu-compare.sh: CF_ENGINE=redis but no redis-server runs" >&2; exit 1; }
fi
TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# share PIDS...: CPU of the pids over 15 s, as a share of one core (summed)
share() {
  local p a=0 b=0
  for p in "$@"; do a=$((a + $(ticks "$p"))); done
  sleep 15
  for p in "$@"; do b=$((b + $(ticks "$p"))); done
  echo "scale=1; 100 * ($b - $a) / $TCK / 15" | bc
}
NAME=cpu-compare.sh; source "$ROOT/bench/one-to-one/fresh-parley.sh"
fresh_parley "$MODE"
echo "parley dev ($MODE, $BIN) pid $PARLEY${BROKER:+, broker pid $BROKER}; centrifugo pid $CF${REDIS:+, its redis pid $REDIS}; $(nproc) cores; $PAIRS pairs at $RATE msgs/s" >&2
# compare.sh signals its whole process group when it ends: each runs in a session of its own.
setsid -w "$COMPARE" --only parley --pairs "$PAIRS" --rates 1k --duration 5s --warmup 3s >/dev/null 2>&1 || true
( sleep 16; share $PARLEY >"$RUN/cpu-parley" ) &
SAMPLER=$!
SAMPLERS=$SAMPLER
if [[ -n $BROKER ]]; then ( sleep 16; share "$BROKER" >"$RUN/cpu-broker" ) & SAMPLERS="$SAMPLERS $!"; fi
ROW_P=$(setsid -w "$COMPARE" --only parley --pairs "$PAIRS" --rates "$RATE" --duration 20s 2>&1 | grep -E "^\| parley") || true
wait $SAMPLERS
( sleep 13; share "$CF" >"$RUN/cpu-cf" ) &
SAMPLER=$!
if [[ -n $REDIS ]]; then ( sleep 13; share "$REDIS" >"$RUN/cpu-redis" ) & SAMPLER="$SAMPLER $!"; fi
ROW_C=$(setsid -w "$COMPARE" --only centrifugo --pairs "$PAIRS" --rates "$RATE" --duration 20s 2>&1 | grep -E "^\| centrifugo") || true
wait $SAMPLER
P=$(cat "$RUN/cpu-parley"); C=$(cat "$RUN/cpu-cf")
if [[ -n $REDIS ]]; then R=$(cat "$RUN/cpu-redis"); CO=$C; C=$(echo "$CO + $R" | bc); fi
if [[ -n $BROKER ]]; then B=$(cat "$RUN/cpu-broker"); PO=$P; P=$(echo "$PO + $B" | bc); fi
echo "| system | pairs | rate/s | sched | sent | acked | recv | lost | err | dup | p50 | p90 | p99 | p99.9 | max | p99 from write | ack p99 | gen lag p99 | delivered/s | pass |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
echo "$ROW_P"; echo "$ROW_C"
echo
echo "| CPU ($MODE, $RATE msgs/s) | share of one core | per delivered message |"
echo "|---|---:|---:|"
if [[ -n $BROKER ]]; then
  echo "| parley (its process) | $PO% | $(echo "scale=3; $PO * 10 / $RATE" | bc) ms |"
  echo "| broker | $B% | $(echo "scale=3; $B * 10 / $RATE" | bc) ms |"
fi
echo "| parley${BROKER:+ + broker} | $P% | $(echo "scale=3; $P * 10 / $RATE" | bc) ms |"
if [[ -n $REDIS ]]; then
  echo "| centrifugo (its process) | $CO% | $(echo "scale=3; $CO * 10 / $RATE" | bc) ms |"
  echo "| its redis | $R% | $(echo "scale=3; $R * 10 / $RATE" | bc) ms |"
fi
echo "| centrifugo${REDIS:+ + redis} | $C% | $(echo "scale=3; $C * 10 / $RATE" | bc) ms |"
echo "| parley ÷ centrifugo | ×$(echo "scale=2; $P / $C" | bc) | |"
