#!/usr/bin/env bash
# Runs all of Parley's checks and tests: installs what is missing and builds the web
# client (scripts/setup.sh), starts the Kafka broker, Redis and the S3 store
# (SeaweedFS, for attachments) unless they are running,
# runs rustfmt, clippy and every test against it, then the web client's browser tests
# (headless Chromium), and stops what it started, whatever happens.
#
# The two time-boxed runs that take minutes whatever the build (a schemathesis run against
# the REST API and a chaos run on a three-broker cluster) are scripts/test-long.sh, which
# CI runs after this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# RocksDB's C++, built once as a few large units (scripts/rocksdb.sh); every cargo command
# below links it.
eval "$(scripts/rocksdb.sh dev)"

started=0
redis_started=0
s3_started=0
stop_kafka() { if [ "$started" = 1 ]; then scripts/kafka.sh stop || true; fi; }
stop_all() {
  stop_kafka
  if [ "$redis_started" = 1 ]; then scripts/redis.sh stop || true; fi
  if [ "$s3_started" = 1 ]; then scripts/s3.sh stop || true; fi
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
if ! scripts/s3.sh status >/dev/null 2>&1; then
  scripts/s3.sh start
  s3_started=1
fi
export PARLEY_TEST_KAFKA="127.0.0.1:${PARLEY_KAFKA_PORT:-9092}"
export PARLEY_TEST_KAFKA_DATA="$(scripts/kafka.sh data-dir)"
export PARLEY_TEST_S3_ENDPOINT="http://127.0.0.1:${PARLEY_S3_PORT:-8333}"
export PARLEY_TEST_REDIS="redis://127.0.0.1:${PARLEY_REDIS_PORT:-6379}/"

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
# Four tests at a time (PARLEY_TEST_THREADS): the end-to-end tests spend most of their
# time waiting on the broker, so two cores run four of them side by side.
threads="${PARLEY_TEST_THREADS:-4}"
echo "== cargo test (Kafka at $PARLEY_TEST_KAFKA, $threads tests at a time)" >&2
cargo test --workspace --locked -- --test-threads="$threads"
echo "== browser tests (the web client in headless Chromium, against parley dev on Kafka)" >&2
PARLEY_BIN="$(realpath "${CARGO_TARGET_DIR:-target}/debug/parley")" npm --prefix gateway/web test --silent
