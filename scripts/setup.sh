#!/usr/bin/env bash
# Installs what building and testing Parley needs and a fresh machine may lack.
# Idempotent: it installs only what is missing, and says what it does.
#   - Debian packages: a C/C++ toolchain, cmake, libclang (RocksDB's bindings), zlib,
#     Node.js and npm (the web client's build), Java 17 and Maven (the Kafka broker),
#     redis-server (the presence store's tests), python3, pip and venv, and Chromium
#     (the web client's browser tests)
#   - Python: fastavro (the second Avro implementation of the interop tests);
#     scripts/schemathesis.sh installs schemathesis into a venv of its own
#   - the Kafka broker jars, into ~/.cache/parley (scripts/kafka.sh fetch)
#   - the S3-compatible store of the attachment tests, SeaweedFS, built from the Go
#     module proxy once (scripts/s3.sh install: about 4 minutes; needs Go 1.24+)
#
#   scripts/setup.sh --build   only what building Parley needs (the toolchain, zlib,
#                              Node.js and npm): enough for `parley dev` on its embedded log
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*" >&2; }

build_only=0
[ "${1:-}" = "--build" ] && build_only=1
packages=(build-essential cmake pkg-config libclang-dev clang zlib1g-dev nodejs npm)
[ "$build_only" = 1 ] || packages+=(openjdk-17-jre-headless maven redis-server python3 python3-pip python3-venv chromium)
have() { # PACKAGE: installed from Debian, or an equivalent tool found on PATH
  dpkg -s "$1" >/dev/null 2>&1 && return 0
  case "$1" in
    openjdk-17-jre-headless) command -v java >/dev/null && java -version 2>&1 | grep -qE '"(1[7-9]|2[0-9])' ;;
    maven) command -v mvn >/dev/null ;;
    nodejs) command -v node >/dev/null ;;
    npm) command -v npm >/dev/null ;;
    chromium) command -v chromium >/dev/null ;;
    redis-server) command -v redis-server >/dev/null ;;
    python3) command -v python3 >/dev/null ;;
    python3-pip) python3 -m pip --version >/dev/null 2>&1 ;;
    python3-venv) python3 -c 'import ensurepip, venv' >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}
missing=()
for p in "${packages[@]}"; do
  have "$p" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    say "missing Debian packages: ${missing[*]} (install them as root)"; exit 1
  fi
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  say "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The interop tests' outside readers of the Avro contract: fastavro, and Apache Avro's
# reference library.
for module in fastavro avro; do
  if [ "$build_only" = 0 ] && ! python3 -c "import $module" 2>/dev/null; then
    say "installing $module"
    python3 -m pip install --quiet --disable-pip-version-check "$module" 2>/dev/null \
      || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$module"
  fi
done

command -v cargo >/dev/null || { say "cargo not found: install Rust (rustup)"; exit 1; }

# rust-toolchain.toml pins a version. Where rustup cannot download it but the installed
# stable toolchain is that version, link it under the pinned name.
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if command -v rustup >/dev/null && [ -n "$channel" ] && ! rustup toolchain list | grep -q "^$channel"; then
  if rustc +stable --version 2>/dev/null | grep -q "^rustc $channel "; then
    say "linking the installed stable toolchain as $channel"
    rustup toolchain link "$channel" "$(rustc +stable --print sysroot)"
  fi
fi

[ "$build_only" = 1 ] || scripts/kafka.sh fetch
[ "$build_only" = 1 ] || scripts/s3.sh install
scripts/web.sh
say "ready"
