#!/usr/bin/env bash
# A profile-guided build of shardgate: target/pgo/dist/shardgate, the `dist` build optimized
# with a profile of the proxy's own runs.
#
# Builds `dist` instrumented (target/pgo-gen), runs it through pgbench's workloads (the issue's
# one- and three-shard tables of bench/pgbench.sh in every -M mode at 1, 8 and 64 clients, and
# bench/tpcb.sql's transactions of writes), merges the counts the runs wrote, and builds `dist`
# again with them (target/pgo). LLVM then lays out and inlines the hot path by what it measured:
# about a quarter fewer instructions per statement (bench/README.md, "Profile-guided build").
# The profile is of pgbench's statements; a workload far from them gains less, and a build
# trained on the workload it will serve is the one to deploy.
#
# Usage: bench/pgo.sh, then e.g. BIN=target/pgo/dist/shardgate bench/pgbench.sh
# Environment: LLVM_PROFDATA (the llvm-profdata to merge with; by default rustup's llvm-tools
#   if installed, else the newest /usr/lib/llvm-*/bin/llvm-profdata, else the one on PATH).
# Needs what bench/pgbench.sh needs, and an llvm-profdata that reads the raw profiles of the
# LLVM in rustc (`rustc -vV`): `rustup component add llvm-tools`, or Debian's llvm-19
# (apt-get install llvm-19), which reads those of rustc 1.95's LLVM 22; llvm-14 does not.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
raw=$here/target/pgo-raw

profdata=${LLVM_PROFDATA:-}
if [ -z "$profdata" ]; then
  sysroot=$(rustc --print sysroot)
  for p in "$sysroot"/lib/rustlib/*/bin/llvm-profdata \
    $(ls -d /usr/lib/llvm-*/bin/llvm-profdata 2>/dev/null | sort -V -r); do
    [ -x "$p" ] && profdata=$p && break
  done
  [ -n "$profdata" ] || profdata=$(command -v llvm-profdata || true)
fi
[ -n "$profdata" ] || {
  echo "no llvm-profdata: rustup component add llvm-tools, or apt-get install llvm-19"
  exit 1
}
echo "merging with $profdata; $(rustc -vV | grep -i '^LLVM')"

echo "building the instrumented dist build (target/pgo-gen)"
(cd "$here" && CARGO_TARGET_DIR=$here/target/pgo-gen \
  RUSTFLAGS="-Cprofile-generate=$raw" cargo build --profile dist --quiet)
# The build's own scripts and macros, instrumented too, wrote profiles while it ran.
rm -rf "$raw"
mkdir -p "$raw"

gen=$here/target/pgo-gen/dist/shardgate
echo "training: bench/pgbench.sh's tables, then bench/tpcb.sql"
export LLVM_PROFILE_FILE=$raw/shardgate-%p-%m.profraw
BIN=$gen CLIENTS="1 8 64" WORKERS="1 0" "$here/bench/pgbench.sh" 2 1 >"$raw/train-select.log"
BIN=$gen SCALE=1 SCRIPT=$here/bench/tpcb.sql MULTI=0 CLIENTS=8 WORKERS="1 0" \
  "$here/bench/pgbench.sh" 2 1 >"$raw/train-tpcb.log"
unset LLVM_PROFILE_FILE

shopt -s nullglob
runs=("$raw"/*.profraw)
[ ${#runs[@]} -gt 0 ] || { echo "the training runs wrote no profile"; exit 1; }
"$profdata" merge -o "$raw/merged.profdata" "${runs[@]}" || {
  echo "$profdata cannot read these profiles: it needs a version that reads the raw profile"
  echo "format of rustc's LLVM (rustup component add llvm-tools, or apt-get install llvm-19)"
  exit 1
}

# Named by its content: cargo rebuilds when RUSTFLAGS change, not when a file they name does.
# Only the newest is kept.
rm -rf "$here/target/pgo-profiles"
mkdir -p "$here/target/pgo-profiles"
profile=$here/target/pgo-profiles/$(sha256sum "$raw/merged.profdata" | cut -c1-16).profdata
cp "$raw/merged.profdata" "$profile"

echo "building the profile-guided dist build (target/pgo)"
(cd "$here" && CARGO_TARGET_DIR=$here/target/pgo \
  RUSTFLAGS="-Cprofile-use=$profile" cargo build --profile dist --quiet)
echo "built $here/target/pgo/dist/shardgate"
