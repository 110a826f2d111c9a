#!/usr/bin/env bash
# Runs all of Parley's checks and tests: installs what is missing and builds the web
# client (scripts/setup.sh), starts the Kafka broker and Redis unless they are running,
# runs rustfmt, clippy and every test against it, the web client's browser tests
# (headless Chromium), a short schemathesis run against the REST API
# (scripts/schemathesis.sh), then a short chaos run on a three-broker cluster
# (scripts/chaos.sh --short; PARLEY_SKIP_CHAOS=1 skips it), and stops what it started,
# whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

started=0
redis_started=0
stop_kafka() { if [ "$started" = 1 ]; then scripts/kafka.sh stop || true; fi; }
stop_all() {
  stop_kafka
  if [ "$redis_started" = 1 ]; then scripts/redis.sh stop || true; fi
}
trap stop_all EXIT
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start
  started=1
fi
if ! scripts/redis.sh status >/dev/null 2>&1; then
  scripts/redis.sh start
  redis_started=1
fi
export PARLEY_TEST_KAFKA="127.0.0.1:${PARLEY_KAFKA_PORT:-9092}"
export PARLEY_TEST_REDIS="redis://127.0.0.1:${PARLEY_REDIS_PORT:-6379}/"

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (Kafka at $PARLEY_TEST_KAFKA)" >&2
cargo test --workspace --locked
echo "== browser tests (the web client in headless Chromium, against parley dev on Kafka)" >&2
PARLEY_BIN="$(realpath "${CARGO_TARGET_DIR:-target}/debug/parley")" npm --prefix gateway/web test --silent
echo "== schemathesis (a short run against the OpenAPI document: no 5xx, no schema violations)" >&2
PARLEY_BIN="${CARGO_TARGET_DIR:-target}/debug/parley" scripts/schemathesis.sh 10 120
if [ "${PARLEY_SKIP_CHAOS:-0}" != 1 ]; then
  # The single broker is not needed any more: its cores go to the cluster.
  stop_kafka; started=0
  echo "== chaos run (scripts/chaos.sh --short: three brokers, every role killed)" >&2
  # Groups of four take the large-group (broadcast) path here, pairs the member-by-member
  # one: both paths run under faults.
  PARLEY_LARGE_GROUP="${PARLEY_LARGE_GROUP:-4}" scripts/chaos.sh --short
fi
