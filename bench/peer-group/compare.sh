#!/usr/bin/env bash
# Builds the large-group load generator into $PEER_BENCH_OUT/peer-group and runs it
# against an already running Parley and Centrifugo; every argument goes to it as is
# (see `compare.sh -h`). The markdown report goes to stdout and, with the JSON of every
# figure, to $PEER_BENCH_OUT/results/group-<time>.{md,json}.
#
#   bench/peer-group/compare.sh                                  # defaults: 2,000 online of 10,000
#   bench/peer-group/compare.sh -online 200 -members 1000 -duration 5s -sat-rates 10,50
#   bench/peer-group/compare.sh -only centrifugo
#
# Parley gateways: -parley URL[,URL…]; without it, the gateways that
# bench/peer-group/run-parley.sh started (if it runs), else http://127.0.0.1:8085.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="${PEER_BENCH_OUT:-$HOME/.cache/parley-peer-bench}"
BIN="$BASE/peer-group"
mkdir -p "$BASE/results"

(cd "$HERE" && go build -o "$BIN" .)

ARGS=("$@")
for a in "$@"; do
  case "$a" in
    -h|-help|--help) exec "$BIN" -h ;;
  esac
done
has_flag() { local f; for f in "${ARGS[@]}"; do [[ "$f" == "-$1" || "$f" == "--$1" || "$f" == -$1=* || "$f" == --$1=* ]] && return 0; done; return 1; }
if ! has_flag parley && [[ -f "$BASE/run/parley-group/gateways" ]] && "$HERE/run-parley.sh" status >/dev/null 2>&1; then
  ARGS=(-parley "$(cat "$BASE/run/parley-group/gateways")" "${ARGS[@]}")
fi
STAMP="$(date +%Y%m%d-%H%M%S)"
MD="$BASE/results/group-$STAMP.md"
JSON="$BASE/results/group-$STAMP.json"
has_flag json || ARGS+=(-json "$JSON")

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "running: $BIN ${ARGS[*]}" >&2
rc=0
"$BIN" "${ARGS[@]}" | tee "$MD" || rc=$?
echo "report: $MD" >&2
exit $rc
