#!/usr/bin/env bash
# Runs Parley on this machine: every role in one process, serving clients on
# http://127.0.0.1:${PARLEY_HTTP_PORT:-8080} (docs/protocol.md), with dev tokens.
#
# By default on the embedded log, in ./parley-data (no broker; a second run resumes with
# everything; attachments in ./parley-data/attachments). With
# PARLEY_LOG=kafka://127.0.0.1:9092 it starts the Kafka broker (scripts/kafka.sh) and an
# S3-compatible store for attachments (scripts/s3.sh: SeaweedFS), creates the topics and
# runs on Kafka, the production path. Ctrl-C stops Parley; `scripts/kafka.sh stop` and
# `scripts/s3.sh stop` stop the others.
#
# It builds the dev profile (Rust dependencies optimized; RocksDB's C++ and Parley's own
# crates not), which the tests share, so the first run costs one build of RocksDB, not two.
# PARLEY_PROFILE=release builds and runs the release binary (what the benchmarks use;
# a cold release build took 13 minutes on two cores, docs/benchmarks.md, *Building*).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${PARLEY_LOG:-}" == kafka://* ]]; then
  scripts/setup.sh
else
  scripts/setup.sh --build
fi
profile="${PARLEY_PROFILE:-dev}"
case "$profile" in
  dev | release) ;;
  *) echo "run.sh: PARLEY_PROFILE is dev or release, not $profile" >&2; exit 2 ;;
esac
# RocksDB's C++, built once per profile as a few large units (scripts/rocksdb.sh).
eval "$(scripts/rocksdb.sh "$profile")"
case "$profile" in
  dev) cargo build --locked --bin parley; dir=debug ;;
  release) cargo build --release --locked --bin parley; dir=release ;;
esac
parley="${CARGO_TARGET_DIR:-target}/$dir/parley"
if [[ "${PARLEY_LOG:-}" == kafka://* ]]; then
  scripts/kafka.sh start
  "$parley" topics create
  if [ -z "${PARLEY_ATTACHMENTS:-}" ]; then
    scripts/s3.sh start
    eval "$(scripts/s3.sh env)"
    export PARLEY_ATTACHMENTS="s3://$PARLEY_S3_BUCKET"
  fi
fi
exec "$parley" dev --http "127.0.0.1:${PARLEY_HTTP_PORT:-8080}" --dev-auth "$@"
