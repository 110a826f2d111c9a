#!/usr/bin/env bash
# What the broker alone costs a message, beside Centrifugo's whole 1:1 path, in one run.
#
#   bench/one-to-one/kafka-floor.sh [RUNS] [RATE]     # default 3 runs at 1000 msgs/s
#   FOLLOWERS=1 bench/one-to-one/kafka-floor.sh …     # readers per append (default 2)
#
# Each run alternates:
# - `parley bench append --followers 2`: RATE appends/s for 20 s to a fresh topic with
#   acks=all, each read back by two followers (as the fanout-worker and the projector
#   read every message), with no other Parley code on the way: append→ack and
#   append→read latency, the broker's CPU per append and the client's own (its producer
#   and followers: what librdkafka costs the process that appends and reads; the
#   followers read in bulk, as those two do, under PARLEY_BULK_FETCH_BYTES);
# - Centrifugo's 1:1 workload at the same rate (500 pairs, 20 s) through
#   ../shared/peer-bench/compare.sh: send→receive latency and its CPU per message.
# Then it prints, per run, the floor's p99s and CPU beside Centrifugo's, with ratios.
# Parley on Kafka cannot deliver a message before the router has read it back: if the
# latency ratios exceed a target, no code of Parley's above the broker meets it on this
# machine. The CPU columns are not such a floor: at 4,000/s `parley dev`'s broker spent
# less per message than this one's. The appends share produce requests as a gateway's
# do, but the followers, which do nothing with what they read, ask the broker about twice
# as often per message as a busy router or projector (kafka-requests.sh counts them;
# docs/benchmarks.md, "what the broker is asked"). They compare settings (readers, bulk)
# with each other.
#
# Needs: the broker (scripts/kafka.sh start), Centrifugo
# (../shared/peer-bench/run-centrifugo.sh), $PARLEY_BIN (default target/release/parley).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
RUNS=${1:-3} RATE=${2:-1000} FOLLOWERS=${FOLLOWERS:-2}
BIN="${PARLEY_BIN:-$ROOT/target/release/parley}"
COMPARE="$ROOT/../shared/peer-bench/compare.sh"
[[ -x $BIN ]] || { echo "kafka-floor.sh: no $BIN (cargo build --release)" >&2; exit 1; }
[[ -x $COMPARE ]] || { echo "kafka-floor.sh: no $COMPARE" >&2; exit 1; }
CF=$(pgrep -x centrifugo | head -1) || { echo "kafka-floor.sh: Centrifugo is not running (../shared/peer-bench/run-centrifugo.sh)" >&2; exit 1; }
BROKER=$(pgrep -f kafka.Kafka | head -1) || { echo "kafka-floor.sh: no broker (scripts/kafka.sh start)" >&2; exit 1; }
scripts/kafka.sh crowded   # every run makes fresh topics: warns of thousands held
TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "broker pid $BROKER, centrifugo pid $CF; $(nproc) cores; $RUNS runs at $RATE msgs/s, $FOLLOWERS followers" >&2
ROWS=()
for i in $(seq 1 "$RUNS"); do
  echo "run $i: the broker alone (parley bench append --followers $FOLLOWERS)…" >&2
  "$BIN" bench append --log kafka://127.0.0.1:9092 --topic-prefix "floor$(date +%s)." \
    --records 2000 --rate "$RATE" --seconds 20 --followers "$FOLLOWERS" --cpu-pid "$BROKER" \
    >"$OUT/append" 2>&1 || { cat "$OUT/append" >&2; exit 1; }
  ACK=$(grep -oP '^latency at .* p99=\K[0-9.]+' "$OUT/append")
  READ=$(grep -oP 'append→read .* p99=\K[0-9.]+' "$OUT/append" | sort -g | tail -1)
  BCPU=$(grep -oP ', \K[0-9.]+(?= ms per append)' "$OUT/append")
  OWN=$(grep -oP 'this client .*: \K[0-9.]+(?= ms per append)' "$OUT/append")
  echo "run $i: Centrifugo, 500 pairs…" >&2
  # Centrifugo's CPU over 15 s inside its measured window, as cpu-compare.sh takes it.
  ( sleep 13; a=$(ticks "$CF"); sleep 15; b=$(ticks "$CF"); echo "$a $b" >"$OUT/cf-cpu" ) &
  SAMPLER=$!
  ROW=$(setsid -w "$COMPARE" --only centrifugo --pairs 500 --rates "$RATE" --duration 20s 2>&1 | grep -E '^\| centrifugo') || true
  wait $SAMPLER
  [[ -n $ROW ]] || { echo "kafka-floor.sh: no row from Centrifugo's run" >&2; exit 1; }
  CP99=$(echo "$ROW" | awk -F'|' '{gsub(/ /,"",$14); print $14}')   # the p99 column
  read -r a b <"$OUT/cf-cpu"
  CCPU=$(echo "scale=3; ($b - $a) * 1000 / $TCK / 15 / $RATE" | bc)
  ROWS+=("| $i | $ACK | $READ | $CP99 | ×$(echo "scale=1; $ACK / $CP99" | bc) | ×$(echo "scale=1; $READ / $CP99" | bc) | $BCPU | $OWN | $CCPU | ×$(echo "scale=1; $BCPU / $CCPU" | bc) | ×$(echo "scale=1; ($BCPU + $OWN) / $CCPU" | bc) |")
done
echo "| run | broker append→ack p99 (ms) | append→read p99, slower follower | Centrifugo send→receive p99 | ack ÷ Centrifugo | read ÷ Centrifugo | broker CPU per append (ms) | the client's | Centrifugo CPU per message | broker ÷ Centrifugo | broker + client ÷ Centrifugo |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
