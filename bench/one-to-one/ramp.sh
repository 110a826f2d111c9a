#!/usr/bin/env bash
# The highest passing 1:1 rate of Parley and Centrifugo in one run: ../shared/peer-bench/
# compare.sh's ramp (500 pairs by default; a step passes with nothing lost and a p99
# under 100 ms) against a fresh `parley dev --dev-auth` on 127.0.0.1:8085 (rate limits
# off; on Kafka with fresh topics) and the running Centrifugo, one step of each in turn.
#
#   bench/one-to-one/ramp.sh embedded                     # steps 4k,6k,8k,12k,16k
#   bench/one-to-one/ramp.sh kafka 2k,4k,6k,8k,12k 500    # log, steps, pairs
#
# Needs Centrifugo (../shared/peer-bench/run-centrifugo.sh; CF_ENGINE=redis for its Redis
# engine) and, on Kafka, the broker (scripts/kafka.sh start); $PARLEY_BIN (default
# target/release/parley). Prints compare.sh's report from the steps' rows on: the "Max
# throughput" table with the ratio, and where compare.sh keeps its results.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
[[ $# -ge 1 && $# -le 3 && ( $1 == kafka || $1 == embedded ) ]] || { sed -n 2,13p "$0" >&2; exit 2; }
MODE=$1 STEPS=${2:-4k,6k,8k,12k,16k} PAIRS=${3:-500}
COMPARE="$ROOT/../shared/peer-bench/compare.sh"
[[ -x $COMPARE ]] || { echo "ramp.sh: no $COMPARE" >&2; exit 1; }
pgrep -x centrifugo >/dev/null || { echo "ramp.sh: Centrifugo is not running (../shared/peer-bench/run-centrifugo.sh)" >&2; exit 1; }
NAME=ramp.sh; source "$ROOT/bench/one-to-one/fresh-parley.sh"
fresh_parley "$MODE"
echo "ramp.sh: parley dev ($MODE, $BIN) pid $PARLEY; steps $STEPS, $PAIRS pairs" >&2
# compare.sh signals its whole process group when it ends: it runs in a session of its own.
setsid -w "$COMPARE" --ramp "$STEPS" --pairs "$PAIRS" --warmup 5s --duration 15s --grace 5s >"$RUN/report" 2>&1 || true
grep -q "^### Max throughput" "$RUN/report" || { echo "ramp.sh: compare.sh gave no result; its output:" >&2; tail -20 "$RUN/report" >&2; exit 1; }
sed -n '/^| system |/,$p' "$RUN/report"
