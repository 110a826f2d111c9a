#!/usr/bin/env bash
# Runs Parley on this machine: every role in one process, serving clients on
# http://127.0.0.1:${PARLEY_HTTP_PORT:-8080} (docs/protocol.md), with dev tokens.
#
# By default on the embedded log, in ./parley-data (no broker; a second run resumes with
# everything). With PARLEY_LOG=kafka://127.0.0.1:9092 it starts the Kafka broker
# (scripts/kafka.sh), creates the topics and runs on Kafka, the production path.
# Ctrl-C stops Parley; `scripts/kafka.sh stop` stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${PARLEY_LOG:-}" == kafka://* ]]; then
  scripts/setup.sh
else
  scripts/setup.sh --build
fi
cargo build --release --locked --bin parley
if [[ "${PARLEY_LOG:-}" == kafka://* ]]; then
  scripts/kafka.sh start
  target/release/parley topics create
fi
exec target/release/parley dev --http "127.0.0.1:${PARLEY_HTTP_PORT:-8080}" --dev-auth "$@"
