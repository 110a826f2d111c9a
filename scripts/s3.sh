#!/usr/bin/env bash
# Runs an S3-compatible object store for Parley's attachments: SeaweedFS (Apache-2.0),
# built from the Go module proxy at a pinned version, on loopback.
#
#   scripts/s3.sh install   build the `weed` binary once (about 4 minutes, 3 GB of memory)
#   scripts/s3.sh start     install if needed, then serve S3 on 127.0.0.1:${PARLEY_S3_PORT:-8333}
#   scripts/s3.sh stop      stop it
#   scripts/s3.sh status    is it running
#   scripts/s3.sh env       the variables that point Parley (and its tests) at it
#   scripts/s3.sh reset     stop it and delete its data
#
# Its data, log and pid live under ${PARLEY_CACHE:-~/.cache/parley}/s3-<port>. Access key
# and secret come from PARLEY_S3_ACCESS_KEY / PARLEY_S3_SECRET_KEY (defaults below, for a
# loopback-only test store). start and stop are idempotent.
set -euo pipefail

VERSION="${PARLEY_SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
MODULE="github.com/seaweedfs/seaweedfs"
PORT="${PARLEY_S3_PORT:-8333}"
CACHE="${PARLEY_CACHE:-$HOME/.cache/parley}"
BIN_DIR="$CACHE/seaweedfs-$VERSION"
WEED="$BIN_DIR/weed"
DIR="$CACHE/s3-$PORT"
PIDFILE="$DIR/weed.pid"
ACCESS_KEY="${PARLEY_S3_ACCESS_KEY:-parley}"
SECRET_KEY="${PARLEY_S3_SECRET_KEY:-parley-secret-key}"
BUCKET="${PARLEY_S3_BUCKET:-parley-attachments}"

die() { echo "s3.sh: $*" >&2; exit 1; }
say() { echo "s3.sh: $*" >&2; }

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
answering() { curl -s -o /dev/null -m 2 "http://127.0.0.1:$PORT/" 2>/dev/null; }

install() {
  [ -x "$WEED" ] && return 0
  command -v go >/dev/null || die "go not found: install Go (1.24 or later) to build SeaweedFS"
  say "building SeaweedFS $VERSION from the Go module proxy (once; about 4 minutes)"
  local work
  work="$(mktemp -d)"
  # `go install module@version` refuses a module whose go.mod has replace directives:
  # download the module, copy it out of the read-only cache and build it there.
  local src
  src="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$src" ] && [ -d "$src" ] || die "could not download $MODULE@$VERSION"
  cp -r "$src" "$work/seaweedfs"
  chmod -R u+w "$work/seaweedfs"
  mkdir -p "$BIN_DIR"
  (cd "$work/seaweedfs" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
    -o "$WEED.tmp" ./weed) || die "building weed failed"
  mv "$WEED.tmp" "$WEED"
  rm -rf "$work"
  say "built $WEED"
}

case "${1:-}" in
  install)
    install
    ;;
  start)
    if running && answering; then say "already running on 127.0.0.1:$PORT"; exit 0; fi
    install
    mkdir -p "$DIR/data"
    cat >"$DIR/s3.json" <<EOF
{"identities": [{"name": "parley",
  "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
    # `weed mini`: master, volume, filer and S3 gateway in one process. Its other ports
    # are chosen from the S3 port so two stores can run side by side.
    base=$((PORT + 1))
    setsid "$WEED" mini -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -s3.port="$PORT" -s3.config="$DIR/s3.json" \
      -master.port=$((base)) -volume.port=$((base + 1)) -filer.port=$((base + 2)) \
      -webdav.port=$((base + 3)) -admin.port=$((base + 4)) \
      >"$DIR/weed.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 600); do
      if ! running; then die "weed exited; see $DIR/weed.log"; fi
      if answering; then
        # The bucket Parley uses; creating it again is harmless.
        if curl -s -m 5 -o /dev/null -w '%{http_code}' -X PUT \
            --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
            -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
            "http://127.0.0.1:$PORT/$BUCKET" | grep -qE '^(200|409)$'; then
          say "running on 127.0.0.1:$PORT, bucket $BUCKET (log: $DIR/weed.log)"
          exit 0
        fi
      fi
      sleep 0.1
    done
    die "did not answer within 60 s; see $DIR/weed.log"
    ;;
  stop)
    if running; then
      pid="$(cat "$PIDFILE")"
      kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do running || break; sleep 0.1; done
      running && kill -9 -- "-$pid" 2>/dev/null || true
      say "stopped"
    fi
    rm -f "$PIDFILE"
    ;;
  status)
    if running && answering; then echo "s3 (SeaweedFS) on 127.0.0.1:$PORT, pid $(cat "$PIDFILE")"; else echo "s3 not running"; exit 3; fi
    ;;
  env)
    echo "export PARLEY_S3_ENDPOINT=http://127.0.0.1:$PORT"
    echo "export PARLEY_S3_BUCKET=$BUCKET"
    echo "export PARLEY_S3_ACCESS_KEY=$ACCESS_KEY"
    echo "export PARLEY_S3_SECRET_KEY=$SECRET_KEY"
    echo "export PARLEY_S3_REGION=us-east-1"
    ;;
  reset)
    "$0" stop
    rm -rf "$DIR"
    say "data deleted"
    ;;
  *)
    die "usage: scripts/s3.sh install|start|stop|status|env|reset"
    ;;
esac
