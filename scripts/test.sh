#!/usr/bin/env bash
# Runs all of Parley's checks and tests: installs what is missing (scripts/setup.sh),
# starts the Kafka broker unless one is running, runs rustfmt, clippy and every test
# against it, and stops the broker if it started it, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

started=0
stop_kafka() { if [ "$started" = 1 ]; then scripts/kafka.sh stop || true; fi; }
trap stop_kafka EXIT
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start
  started=1
fi
export PARLEY_TEST_KAFKA="127.0.0.1:${PARLEY_KAFKA_PORT:-9092}"

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (Kafka at $PARLEY_TEST_KAFKA)" >&2
cargo test --workspace --locked
