#!/usr/bin/env bash
# Property-based tests of the REST API from its OpenAPI document (GET /v1/openapi.json)
# with schemathesis: a `parley dev` on fresh topics, a dev token, then every operation
# with generated inputs, valid and invalid. Fails on any 5xx or any answer that does not
# match the document's schemas. Needs the Kafka broker (scripts/kafka.sh start).
#
#   scripts/schemathesis.sh [MAX_EXAMPLES] [MAX_SECONDS]
#       default 20 examples per operation and no time limit; CI runs 10 within 120 s
#   PARLEY_ST_CHECKS=all scripts/schemathesis.sh …   every schemathesis check, not only
#       the two above (status codes and content types as documented, among others)
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES="${1:-20}"
MAX_TIME="${2:-}"
CACHE="$HOME/.cache/parley"
VENV="$CACHE/st-venv"
ST_VERSION=4.32.5
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  echo "schemathesis.sh: installing schemathesis $ST_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$ST_VERSION"
fi
BIN="${PARLEY_BIN:-${CARGO_TARGET_DIR:-target}/debug/parley}"
if [ ! -x "$BIN" ]; then
  eval "$(scripts/rocksdb.sh dev)"
  cargo build --locked --bin parley
fi
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
DIR="$(mktemp -d)"
export PARLEY_TOPIC_PREFIX="st-$(date +%s)-$$." PARLEY_LOG="kafka://127.0.0.1:${PARLEY_KAFKA_PORT:-9092}"
export PARLEY_LOG_LEVEL=warn
"$BIN" dev --http "127.0.0.1:$PORT" --dev-auth --data-dir "$DIR/projector" >"$DIR/parley.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 1 120); do
  curl -fsS "127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { echo "schemathesis.sh: parley dev exited:" >&2; cat "$DIR/parley.log" >&2; exit 1; }
  sleep 0.5
done
TOKEN="$(curl -fsS -XPOST "127.0.0.1:$PORT/v1/dev/token" -H 'content-type: application/json' \
  -d '{"user_id":"schemathesis"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
# Real identifiers, so that the routes with path parameters reach their logic too: half
# of the generated cases take one of these (a group, a direct chat, a member, a device),
# the others a generated value (mostly 400/404).
api() { curl -fsS -X"$1" "127.0.0.1:$PORT$2" -H "Authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d "$3"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
GROUP="$(api POST /v1/conversations '{"type":"group","title":"st","members":["st-peer","st-other"]}' | field conversation_id)"
DIRECT="$(api POST /v1/conversations '{"type":"direct","members":["st-peer"]}' | field conversation_id)"
DEVICE="$(api POST /v1/devices '{"platform":"webhook","url":"http://127.0.0.1:9/st","device_id":"st-device"}' | field device_id)"
cat >"$DIR/schemathesis.toml" <<TOML
[dictionaries.conversations]
values = ["$GROUP", "$DIRECT"]
[dictionaries.users]
values = ["st-peer", "st-other", "schemathesis"]
[dictionaries.devices]
values = ["$DEVICE"]
[parameters]
"path.id" = { dictionary = "conversations", probability = 0.5 }
"path.user_id" = { dictionary = "users", probability = 0.5 }
"path.device_id" = { dictionary = "devices", probability = 0.5 }
"query.conversation_id" = { dictionary = "conversations", probability = 0.5 }
TOML
echo "schemathesis.sh: $EXAMPLES examples per operation against 127.0.0.1:$PORT (group $GROUP, direct $DIRECT, device $DEVICE)" >&2
status=0
# From the scratch directory: schemathesis keeps a cache where it runs, and reads the
# schemathesis.toml above from there.
(cd "$DIR" && "$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/v1/openapi.json" \
  -H "Authorization: Bearer $TOKEN" \
  --checks "${PARLEY_ST_CHECKS:-not_a_server_error,response_schema_conformance}" \
  --max-examples "$EXAMPLES" ${MAX_TIME:+--max-time "$MAX_TIME"} --seed 1 --workers 1 --request-timeout 60 \
  --phases examples,coverage,fuzzing --no-color --generation-database none \
  --suppress-health-check all) || status=$?
if [ "$status" != 0 ]; then
  echo "schemathesis.sh: failures (gateway log: last lines)" >&2
  tail -20 "$DIR/parley.log" >&2
fi
exit $status
