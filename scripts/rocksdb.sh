#!/usr/bin/env bash
# Builds RocksDB's C++ (the sources the librocksdb-sys crate vendors) as a static library,
# once per profile, and prints the environment that makes librocksdb-sys link it instead
# of compiling its own copy:
#
#   eval "$(scripts/rocksdb.sh dev)"       # or: release
#
# librocksdb-sys compiles RocksDB's 329 source files one by one, and each of them parses
# the same large headers again: 15 to 20 minutes at -O0 on two cores. Here the files are
# compiled as a few "unity" translation units (each #includes a share of the sources,
# which RocksDB's own `make unity` supports), one per core: on two cores, 108 s at -O0
# (dev) and 269 s at -O3 (release), where the crate takes 15 and 20 minutes.
# The flags and defines are the crate's own (lz4 on, the rest of the compression
# libraries off, as Cargo.toml's features say); the dev profile compiles at -O0 and the
# release profile at -O3, as the crate does under those profiles.
#
# The library is kept in $CARGO_TARGET_DIR/rocksdb/<version>-<profile>-<flags hash>/ and
# built again only when that name changes. scripts/test.sh and scripts/run.sh use it. A
# plain `cargo build` without this environment still works: librocksdb-sys then compiles
# RocksDB itself (and rebuilds once when the environment changes between the two ways).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "rocksdb: $*" >&2; }
profile="${1:-dev}"
case "$profile" in
  dev) opt=(-O0) took="about 2 minutes" ;;
  release) opt=(-O3) took="about 4.5 minutes" ;;
  *) say "the profile is dev or release, not $profile"; exit 2 ;;
esac

# Where cargo keeps the two crates' sources (cargo metadata downloads them if needed).
host="$(rustc -vV | sed -n 's/^host: //p')"
metadata="$(cargo metadata --locked --format-version 1 --filter-platform "$host")"
source_of() { # CRATE: the directory of its one registry source
  local m
  m="$(grep -o "\"manifest_path\":\"[^\"]*/$1-[0-9][^\"/]*/Cargo.toml\"" <<<"$metadata" | head -n 1)"
  [ -n "$m" ] || { say "cargo metadata names no $1 package"; exit 1; }
  m="${m#\"manifest_path\":\"}"
  dirname "${m%\"}"
}
sys_dir="$(source_of librocksdb-sys)"
lz4_dir="$(source_of lz4-sys)"
version="$(basename "$sys_dir")"
version="${version#librocksdb-sys-}"

cxx="${CXX:-c++}"
flags=("${opt[@]}" -ffunction-sections -fdata-sections -fPIC -m64 -std=c++17 -w
  -I"$sys_dir/rocksdb/include" -I"$sys_dir/rocksdb" -I"$sys_dir"
  -I"$sys_dir/rocksdb/third-party/gtest-1.8.1/fused-src" -I"$lz4_dir/liblz4/lib"
  -DLZ4=1 -DNDEBUG=1 -DOS_LINUX -DROCKSDB_PLATFORM_POSIX -DROCKSDB_LIB_IO_POSIX
  -DROCKSDB_SCHED_GETCPU_PRESENT -DROCKSDB_SUPPORT_THREAD_LOCAL -msse2)
if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
  # The flags above are x86_64 Linux's: elsewhere librocksdb-sys builds RocksDB itself.
  say "written for x86_64 Linux: librocksdb-sys builds RocksDB itself here (15-20 minutes)"
  exit 0
fi
hash="$(printf '%s\n' "$("$cxx" --version | head -n 1)" "${flags[@]}" | sha256sum | cut -c1-12)"
out="$(realpath -m "${CARGO_TARGET_DIR:-target}")/rocksdb/$version-$profile-$hash"

if [ ! -f "$out/librocksdb.a" ]; then
  jobs="$(nproc)"
  chunks="$jobs"
  tmp="$out.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # One unit per core (each more would parse the headers once more); round-robin shares
  # keep them about equal in size. build_version.cc is the
  # crate's pre-generated one, in place of util/build_version.cc.
  mapfile -t sources < <(sed 's/^[[:space:]]*//; s/[[:space:]]*$//' "$sys_dir/rocksdb_lib_sources.txt" \
    | grep -v -e '^$' -e '^util/build_version.cc$' | sed 's|^|rocksdb/|')
  sources+=(build_version.cc)
  for ((c = 0; c < chunks; c++)); do : >"$tmp/unity$c.cc"; done
  for i in "${!sources[@]}"; do
    echo "#include \"${sources[$i]}\"" >>"$tmp/unity$((i % chunks)).cc"
  done
  say "building RocksDB ${version#*+} (librocksdb-sys ${version%%+*}, $profile, ${opt[*]}): ${#sources[@]} files as $chunks units, $jobs at a time ($took on two cores)"
  start=$SECONDS
  if ! printf '%s\n' "$tmp"/unity*.cc | xargs -P "$jobs" -I{} sh -c \
    'cd "$1" && shift && "$@" && echo "rocksdb: compiled $(basename "${0%.cc}")" >&2' \
    {} "$sys_dir" "$cxx" "${flags[@]}" -c {} -o {}.o; then
    say "compiling RocksDB failed (the compiler's messages are above)"
    exit 1
  fi
  ar crs "$tmp/librocksdb.a" "$tmp"/unity*.o
  rm -f "$tmp"/unity*.o
  rm -rf "$out"
  mv "$tmp" "$out"
  say "built $out/librocksdb.a in $((SECONDS - start)) s"
fi

echo "export ROCKSDB_LIB_DIR='$out' ROCKSDB_STATIC=1"
