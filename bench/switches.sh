#!/usr/bin/env bash
# Where each proxy's CPU goes per transaction: user and system time, and how often its threads
# stop running, by their own choice (voluntary: waiting for events) or because the scheduler
# gave the CPU to another task (involuntary: preempted, typically by a PostgreSQL backend or
# pgbench thread that the proxy's write has just woken).
#
# Starts what bench/pgbench.sh starts (PostgreSQL, PgBouncer in session mode, one shardgate per
# WORKERS value, and with HOP=1 the byte-copy hop), then alternates pgbench -S runs against the
# proxies and prints, per run, tps and the proxy's figures per transaction, read from
# /proc/PID/stat and /proc/PID/task/*/status (all threads), and the share of the machine's CPU
# time left idle during the run (/proc/stat): where pgbench, the backends and the proxy keep each
# other waiting, the cores idle even though the run is a closed loop.
#
# Usage: bench/switches.sh [seconds per run] [rounds]
# Environment: MODE (prepared), CLIENTS (8), WORKERS ("1"), HOP (0), SCALE (10), POOL (64), BIN.
set -euo pipefail

secs=${1:-8}
rounds=${2:-3}
mode=${MODE:-prepared}
c=${CLIENTS:-8}
workers=${WORKERS:-1}
hop=${HOP:-0}
scale=${SCALE:-10}
pool=${POOL:-64}
script=
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$here/target/dist/shardgate}
pg_port=${PG_PORT:-25650}
bouncer_port=$((pg_port + 1))
proxy_port=$((pg_port + 2))
multi_port=$((pg_port + 3))

# shellcheck source=bench/setup.sh
. "$here/bench/setup.sh"

# switches PID: "voluntary involuntary" context switches of all the process's threads so far.
switches() {
  cat "/proc/$1"/task/*/status |
    awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2} END {print v, n}'
}

targets="pgbouncer:$bouncer_port:$(cat "$work/bouncer.pid")$sg_targets"
read -r -a tg <<<"$targets"
for t in "${tg[@]}"; do
  IFS=: read -r _ port _ <<<"$t"
  pgbench -n -h 127.0.0.1 -p "$port" -U postgres -c "$c" -j 2 -T 2 -S bench >/dev/null
done
echo "machine: $(nproc) cores, $(uname -r); pgbench -S -M $mode, $c clients, $secs s per run"
printf '%-12s %8s | %s\n' target tps \
  "per transaction: user µs, system µs, voluntary and involuntary switches | machine idle"
j=$((c < 2 ? c : 2))
hz=$(getconf CLK_TCK)
for r in $(seq 1 "$rounds"); do
  for k in $(seq 0 $((${#tg[@]} - 1))); do
    IFS=: read -r name port pid <<<"${tg[$(((k + r) % ${#tg[@]}))]}"
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    read -r v0 n0 < <(switches "$pid")
    read -r b0 i0 < <(machine_ticks)
    pgbench -n -h 127.0.0.1 -p "$port" -U postgres -M "$mode" -c "$c" -j "$j" -T "$secs" -S bench \
      >"$work/run.out" 2>&1 || { cat "$work/run.out"; exit 1; }
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    read -r v1 n1 < <(switches "$pid")
    read -r b1 i1 < <(machine_ticks)
    awk -v nm="$name" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v v=$((v1 - v0)) -v i=$((n1 - n0)) \
      -v hz="$hz" -v busy=$((b1 - b0)) -v idle=$((i1 - i0)) '
      /^number of transactions actually processed/ {n = $6}
      /^tps/ {tps = $3}
      END {
        printf "%-12s %8.0f | %5.2f  %5.2f  %5.3f  %5.3f | %4.1f %%\n", nm, tps, u * 1e6 / hz / n,
          s * 1e6 / hz / n, v / n, i / n, 100 * idle / (busy + idle)
      }' "$work/run.out"
  done
done
