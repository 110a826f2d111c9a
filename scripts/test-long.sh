#!/usr/bin/env bash
# The long, time-boxed runs, after scripts/test.sh has built and tested everything (CI
# runs both): a short schemathesis run against the REST API (scripts/schemathesis.sh,
# on the single broker, started here unless it is running), then a short chaos run on a
# three-broker cluster (scripts/chaos.sh --short; PARLEY_SKIP_CHAOS=1 skips it). Stops
# what it started, whatever happens. Nothing is built: the binary is $PARLEY_BIN, else
# $CARGO_TARGET_DIR/debug/parley, else target/debug/parley.
set -euo pipefail
cd "$(dirname "$0")/.."

export PARLEY_BIN="${PARLEY_BIN:-${CARGO_TARGET_DIR:-target}/debug/parley}"
if [ ! -x "$PARLEY_BIN" ]; then
  echo "test-long.sh: no parley binary at $PARLEY_BIN: run scripts/test.sh (or cargo build) first" >&2
  exit 1
fi

started=0
stop_kafka() { if [ "$started" = 1 ]; then scripts/kafka.sh stop || true; fi; }
trap stop_kafka EXIT
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start
  started=1
fi

echo "== schemathesis (a short run against the OpenAPI document: no 5xx, no schema violations)" >&2
scripts/schemathesis.sh 10 120
if [ "${PARLEY_SKIP_CHAOS:-0}" != 1 ]; then
  # The single broker is not needed any more: its cores go to the cluster.
  stop_kafka; started=0
  echo "== chaos run (scripts/chaos.sh --short: three brokers, every role killed)" >&2
  # Groups of four take the large-group (broadcast) path here, pairs the member-by-member
  # one: both paths run under faults.
  PARLEY_LARGE_GROUP="${PARLEY_LARGE_GROUP:-4}" scripts/chaos.sh --short
fi
