#!/usr/bin/env bash
# Instructions per transaction in shardgate and in PgBouncer, counted by valgrind's callgrind.
#
# tps on a shared machine moves by ±10 % from run to run; an instruction count does not. Both
# proxies run under callgrind in front of the same PostgreSQL; for each -M mode, after a warm-up,
# the counters are zeroed, 8 pgbench -S clients run TXNS transactions each, and the count is
# dumped. The figure is the proxy's user-space instructions (system calls not included) per
# transaction, the connections' startup included (8 per run, a few percent of the total).
# shardgate runs with one worker thread, as PgBouncer has.
#
# Usage: bench/instructions.sh [transactions per client]
# Environment: BIN (default target/dist/shardgate, Cargo.toml's `dist` profile, built or rebuilt
#   first), MODES ("simple extended prepared"), SCALE (1), PROFILES (a directory to keep each
#   run's callgrind dump in, for callgrind_annotate), HOP (1 = also count a plain tokio byte-copy
#   hop, examples/hop.rs: the floor of what a tokio proxy costs), SCRIPT (a pgbench script to run
#   instead of -S, e.g. bench/pipelined.sql).
# Needs what bench/pgbench.sh needs, and valgrind (Debian: apt-get install valgrind).
set -euo pipefail

txns=${1:-2000}
modes=${MODES:-simple extended prepared}
scale=${SCALE:-1}
pool=16
script=${SCRIPT:-}
workers= # setup.sh starts no shardgate: this script starts its own, under callgrind
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$here/target/dist/shardgate}
pg_port=${PG_PORT:-25630}
bouncer_port=$((pg_port + 1))
proxy_port=$((pg_port + 2))
multi_port=$((pg_port + 3))
cg_bouncer_port=$((pg_port + 4))
hop_port=$((pg_port + 5))
command -v callgrind_control >/dev/null || { echo "valgrind not found (apt-get install valgrind)"; exit 1; }

# shellcheck source=bench/setup.sh
. "$here/bench/setup.sh"

# shardgate and a second PgBouncer, each under callgrind.
{
  printf '[proxy]\nlisten = "127.0.0.1:%s"\npool_size = %s\nworkers = 1\n' "$proxy_port" "$pool"
  printf '[[shards]]\nname = "s0"\nurl = "postgres://postgres@127.0.0.1:%s/bench"\n' "$pg_port"
  tables
} >"$work/cg.toml"
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/sg.%p" "$bin" \
  --config "$work/cg.toml" >"$work/sg-cg.log" 2>&1 &
sg_pid=$!
pids+=("$sg_pid")
sed -e "s/^listen_port = .*/listen_port = $cg_bouncer_port/" -e "s|bouncer\.|bouncer-cg.|" \
  "$work/bouncer.ini" >"$work/bouncer-cg.ini"
# Not daemonized: valgrind follows the process it started.
"${as_pg[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/pb.%p" \
  pgbouncer "$work/bouncer-cg.ini" >"$work/pb-cg.log" 2>&1 &
pids+=("$!")
# Valgrind starts a program some 50 times slower than it runs natively.
wait_port "$proxy_port" 600
wait_port "$cg_bouncer_port" 600
if [ "${HOP:-0}" = 1 ]; then
  (cd "$here" && cargo build --profile dist --quiet --example hop)
  valgrind --tool=callgrind --callgrind-out-file="$work/hop.%p" "$here/target/dist/examples/hop" \
    "127.0.0.1:$hop_port" "127.0.0.1:$pg_port" >"$work/hop-cg.log" 2>&1 &
  hop_pid=$!
  pids+=("$hop_pid")
  wait_port "$hop_port" 600
fi

# count PORT PID OWNER PREFIX MODE: instructions per transaction of one run.
count() {
  local port=$1 pid=$2 owner=$3 prefix=$4 mode=$5 before run=(pgbench -n -h 127.0.0.1 -U postgres "${workload[@]}")
  local ctl=(callgrind_control)
  [ "$owner" = postgres ] && ctl=("${as_pg[@]}" callgrind_control)
  "${run[@]}" -p "$port" -M "$mode" -c 8 -j 2 -t 200 bench >/dev/null
  "${ctl[@]}" -z "$pid" >/dev/null 2>&1
  "${run[@]}" -p "$port" -M "$mode" -c 8 -j 2 -t "$txns" bench >"$work/run.out" 2>&1 ||
    { cat "$work/run.out"; exit 1; }
  before=$(compgen -G "$work/$prefix.$pid.*" | wc -l)
  "${ctl[@]}" -d "$pid" >/dev/null 2>&1
  for _ in $(seq 1 50); do
    [ "$(compgen -G "$work/$prefix.$pid.*" | wc -l)" -gt "$before" ] && break
    sleep 0.2
  done
  # The newest dump; its "summary:" line is the total since the counters were zeroed.
  # shellcheck disable=SC2012  # dump names are numbered, ls -t orders them
  local dump
  dump=$(ls -t "$work/$prefix.$pid".* | head -1)
  [ -n "${PROFILES:-}" ] && mkdir -p "$PROFILES" && cp "$dump" "$PROFILES/$prefix-$mode.callgrind"
  awk -v n="$((8 * txns))" '/^summary:/ {printf "%d", $2 / n}' "$dump"
}

# PgBouncer's pid: the valgrind process's (under root, `runuser` is its parent).
pb_pid=$(pgrep -f "^[^ ]*valgrind[^ ]* --tool=callgrind --callgrind-out-file=$work/pb" | head -1)
pids+=("$pb_pid")
echo "machine: $(nproc) cores; $(pgbouncer --version | head -1); $(valgrind --version)"
echo "8 clients x $txns transactions of pgbench ${script:--S} per mode; instructions per transaction"
printf '%-9s | %9s | %9s | %5s' mode shardgate pgbouncer ratio
[ "${HOP:-0}" = 1 ] && printf ' | %9s' hop
echo
for mode in $modes; do
  sg=$(count "$proxy_port" "$sg_pid" "$(id -un)" sg "$mode")
  pb=$(count "$cg_bouncer_port" "$pb_pid" postgres pb "$mode")
  awk -v m="$mode" -v s="$sg" -v p="$pb" 'BEGIN {printf "%-9s | %9d | %9d | %5.2f", m, s, p, s / p}'
  [ "${HOP:-0}" = 1 ] && printf ' | %9d' "$(count "$hop_port" "$hop_pid" "$(id -un)" hop "$mode")"
  echo
done
