# Sourced by the scripts of bench/one-to-one/: starts a fresh `parley dev --dev-auth` on
# 127.0.0.1:8085 with the gateway's rate limits off (a load generator is thousands of
# users on one address), waits until it is ready, and stops it when the script exits.
#
#   NAME=my-script.sh; source "$ROOT/bench/one-to-one/fresh-parley.sh"; fresh_parley kafka|embedded
#
# Needs ROOT (the repository) and NAME (for messages); reads PARLEY_BIN (default
# target/release/parley). Sets BIN, RUN (a temporary directory, removed at exit),
# PARLEY (its pid) and BROKER (the broker's pid on Kafka, else empty). On Kafka the
# topics are fresh (a new PARLEY_TOPIC_PREFIX), and a broker crowded with earlier runs'
# partitions is warned of (`scripts/kafka.sh crowded`).

BIN="${PARLEY_BIN:-$ROOT/target/release/parley}"

fresh_parley() {
  local mode=$1 log
  [[ -x $BIN ]] || { echo "$NAME: no $BIN (cargo build --release)" >&2; exit 1; }
  if curl -fsS -m 2 http://127.0.0.1:8085/healthz >/dev/null 2>&1; then
    echo "$NAME: something already serves 127.0.0.1:8085; stop it first" >&2; exit 1
  fi
  RUN=$(mktemp -d)
  export PARLEY_RATE_SENDS=0 PARLEY_RATE_TYPING=0 PARLEY_RATE_CREATES=0 PARLEY_RATE_ADDS=0 \
         PARLEY_RATE_CONNECTS=0 PARLEY_RATE_UPGRADES_PER_IP=0 PARLEY_RATE_READS=0 PARLEY_RATE_SETTINGS=0
  if [[ $mode == kafka ]]; then
    log=kafka://127.0.0.1:9092; export PARLEY_TOPIC_PREFIX="${NAME%%.*}$(date +%s)."
    BROKER=$(pgrep -f kafka.Kafka | head -1) || { echo "$NAME: no broker (scripts/kafka.sh start)" >&2; exit 1; }
    "$ROOT/scripts/kafka.sh" crowded
  else
    log="embedded://$RUN/log"; BROKER=""
  fi
  RUST_LOG=warn "$BIN" dev --http 127.0.0.1:8085 --dev-auth --data-dir "$RUN/projector" --log "$log" >"$RUN/parley.log" 2>&1 &
  PARLEY=$!
  trap 'kill $PARLEY 2>/dev/null || true; wait $PARLEY 2>/dev/null || true; rm -rf "$RUN"' EXIT
  trap 'echo "$NAME: interrupted" >&2; exit 130' INT
  trap 'echo "$NAME: terminated" >&2; exit 143' TERM
  for _ in $(seq 1 300); do curl -fsS -m 2 http://127.0.0.1:8085/readyz >/dev/null 2>&1 && break; sleep 0.2; done
  if ! kill -0 $PARLEY 2>/dev/null || ! curl -fsS -m 2 http://127.0.0.1:8085/readyz >/dev/null 2>&1; then
    echo "$NAME: parley dev did not become ready; its log:" >&2; tail -20 "$RUN/parley.log" >&2; exit 1
  fi
}
