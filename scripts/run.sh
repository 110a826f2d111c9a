#!/usr/bin/env bash
# Runs Parley on this machine: the Kafka broker, the topics, and every role in one
# process, serving clients on http://127.0.0.1:${PARLEY_HTTP_PORT:-8080} (docs/protocol.md).
# Ctrl-C stops Parley; `scripts/kafka.sh stop` stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/kafka.sh start
cargo build --release --locked --bin parley
target/release/parley topics create
exec target/release/parley dev --http "127.0.0.1:${PARLEY_HTTP_PORT:-8080}" --dev-auth "$@"
