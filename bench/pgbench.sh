#!/usr/bin/env bash
# shardgate beside PgBouncer and direct PostgreSQL, measured in one run on one machine.
#
# Starts its own PostgreSQL (initdb into a temp dir), PgBouncer in session mode in front of it, and
# shardgate with one shard (the same database). For each -M mode and client count it runs
# pgbench -S (a point SELECT by primary key) against all three, alternating the order every round,
# and prints tps and p50/p99 latency with the ratios shardgate/PgBouncer and shardgate/direct.
# Then a second table: three shards (three databases on the same server, loaded through the proxy)
# against one unsharded database, for the statements the proxy must scatter and gather: a count
# and an ORDER BY ... LIMIT over a key range, and five keys by IN (...).
#
# Usage: bench/pgbench.sh [seconds per run] [rounds]
# Environment: BIN (default target/dist/shardgate, Cargo.toml's `dist` profile, built or rebuilt
#   first), CLIENTS ("1 8 64"), MODES ("simple extended prepared"), SCALE (10), POOL (server
#   connections per shard and PgBouncer's pool, 64), ONE (1 = the one-shard table, 0 = skip it),
#   MULTI (1 = also the three-shard tables, 0 = skip them), WORKERS (shardgate's [proxy] workers,
#   one shardgate column each in the one-shard table: "1 0" = one thread, as PgBouncer has, and
#   one per CPU; "1-text" = one thread with auto_prepare off),
#   HOP (1 = also a plain tokio byte-copy hop, examples/hop.rs: the floor of a tokio proxy),
#   MULTI_WORKERS (the three-shard proxy's, 0), MULTI_QUERIES (the three-shard tables: "count top
#   multiget"), MULTI_MODES ("simple prepared"), MULTI_CLIENTS ("8 64"), SCRIPT (a pgbench
#   script the one-shard table runs instead of -S, e.g. bench/pipelined.sql; tps then counts
#   its transactions, not statements), RATE (transactions per second each run offers, pgbench
#   -R: latency at a load every target can carry, measured from each transaction's scheduled
#   start, so it includes any wait for the one before; tps then only shows the rate was met).
# Needs initdb/pg_ctl (PostgreSQL server), pgbench, psql and pgbouncer (Debian: apt-get install
# pgbouncer). Run as root, PostgreSQL and PgBouncer run as the `postgres` user.
set -euo pipefail

secs=${1:-10}
rounds=${2:-3}
clients=${CLIENTS:-1 8 64}
modes=${MODES:-simple extended prepared}
scale=${SCALE:-10}
pool=${POOL:-64}
workers=${WORKERS:-1 0}
multi_workers=${MULTI_WORKERS:-0}
hop=${HOP:-0}
multi=${MULTI:-1}
one=${ONE:-1}
script=${SCRIPT:-}
rate=${RATE:-}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$here/target/dist/shardgate}
pg_port=${PG_PORT:-25610}
bouncer_port=$((pg_port + 1))
proxy_port=$((pg_port + 2))
multi_port=$((pg_port + 3))

# shellcheck source=bench/setup.sh
. "$here/bench/setup.sh"

# CPU time (user + system, in clock ticks) a process has used so far; 0 for none.
ticks() {
  [ -n "$1" ] || { echo 0; return; }
  awk '{print $14 + $15}' "/proc/$1/stat"
}

# One pgbench run: prints "tps cpu all", cpu being the middle process's CPU µs per transaction
# (0 for none) and all the whole machine's (pgbench, the middle process and PostgreSQL: on a
# machine they share, tps goes as its inverse), and leaves each transaction's latency (µs) in
# $work/lat.
run() { # run PORT PID MODE CLIENTS SCRIPT-ARGS...
  local port=$1 pid=$2 mode=$3 c=$4
  shift 4
  local j=$((c < 2 ? c : 2)) t0 t1 a0 a1
  t0=$(ticks "$pid")
  read -r a0 _ < <(machine_ticks)
  rm -rf "$work/log" && mkdir "$work/log"
  (cd "$work/log" && pgbench -n -h 127.0.0.1 -p "$port" -U postgres -M "$mode" -c "$c" -j "$j" \
    -T "$secs" -l ${rate:+-R "$rate"} "$@" bench >"$work/run.out" 2>&1) || { cat "$work/run.out"; return 1; }
  grep -q '^number of failed transactions: 0 ' "$work/run.out" || { cat "$work/run.out"; return 1; }
  t1=$(ticks "$pid")
  read -r a1 _ < <(machine_ticks)
  compgen -G "$work/log/pgbench_log.*" >/dev/null || { echo "pgbench wrote no latency log"; return 1; }
  cat "$work"/log/pgbench_log.* | awk '{print $3}' >"$work/lat"
  awk -v t="$((t1 - t0))" -v a="$((a1 - a0))" -v hz="$(getconf CLK_TCK)" '
    /^number of transactions actually processed/ {n = $6}
    /^tps/ {tps = $3}
    END {printf "%s %.1f %.1f\n", tps, (n > 0 ? t * 1e6 / hz / n : 0), (n > 0 ? a * 1e6 / hz / n : 0)}' "$work/run.out"
}

# percentile FILE P: the P-th percentile of the numbers in FILE, in ms.
percentile() {
  sort -n "$1" | awk -v p="$2" '{v[NR]=$1} END {i=int(NR*p/100); if (i<1) i=1; printf "%.3f", v[i]/1000}'
}

# table TITLE TARGETS SCRIPT-ARGS...: the alternated runs and their summary, one row per mode and
# client count. TARGETS is "name:port:pid ..." in the order direct, pooler, then one or more
# shardgates; pid is the process between pgbench and PostgreSQL whose CPU per transaction is
# shown (none for direct).
table() {
  local title=$1 targets=$2
  shift 2
  local tg names=() t n port pid v k r most=1
  read -r -a tg <<<"$targets"
  for t in "${tg[@]}"; do names+=("${t%%:*}"); done
  # Warm-up: every pool opens the connections the largest client count needs before any run
  # is measured (PgBouncer's and shardgate's alike).
  for c in $clients; do [ "$c" -gt "$most" ] && most=$c; done
  for t in "${tg[@]}"; do
    IFS=: read -r n port pid <<<"$t"
    pgbench -n -h 127.0.0.1 -p "$port" -U postgres -c "$most" -j 2 -T 2 "${warm[@]}" "$@" bench >/dev/null 2>&1 ||
      { echo "warm-up against $n failed"; exit 1; }
  done
  echo
  [ -n "$rate" ] && echo "$title, offered $rate transactions per second (pgbench -R; latency from each scheduled start)"
  echo "$title: $secs s per run, $rounds rounds alternated; tps is the mean over rounds,"
  echo "p50/p99 over all their transactions (ms), cpu the middle process's CPU µs per transaction,"
  echo "all the whole machine's; a ratio is of the means, with the lowest and highest of the rounds'"
  echo "own ratios"
  printf '%-8s %3s' mode c
  printf ' | %-28s' "${names[0]} tps  p50/p99   all"
  for n in "${names[@]:1}"; do printf ' | %-34s' "$n tps  p50/p99   cpu   all"; done
  for n in "${names[@]:2}"; do printf ' | %-17s  %s' "$n/${names[1]}" "$n/${names[0]}"; done
  echo
  for mode in $modes; do
    for c in $clients; do
      declare -A tps=() cpu=() all=() each=()
      for n in "${names[@]}"; do
        tps[$n]=0 cpu[$n]=0 all[$n]=0
        : >"$work/lat-$n"
      done
      for r in $(seq 1 "$rounds"); do
        # Rotate who goes first, so that no target always runs on a warmer machine.
        for k in $(seq 0 $((${#tg[@]} - 1))); do
          t=${tg[$(((k + r) % ${#tg[@]}))]}
          IFS=: read -r n port pid <<<"$t"
          run "$port" "$pid" "$mode" "$c" "$@" >"$work/v" || { cat "$work/v"; exit 1; }
          read -r -a v <"$work/v"
          tps[$n]=$(awk -v a="${tps[$n]}" -v b="${v[0]}" -v r="$rounds" 'BEGIN {print a + b / r}')
          each[$n,$r]=${v[0]}
          cpu[$n]=$(awk -v a="${cpu[$n]}" -v b="${v[1]}" -v r="$rounds" 'BEGIN {print a + b / r}')
          all[$n]=$(awk -v a="${all[$n]}" -v b="${v[2]}" -v r="$rounds" 'BEGIN {print a + b / r}')
          cat "$work/lat" >>"$work/lat-$n"
        done
      done
      printf '%-8s %3s' "$mode" "$c"
      for n in "${names[@]}"; do
        printf ' | %7.0f  %6s/%-6s' "${tps[$n]}" "$(percentile "$work/lat-$n" 50)" \
          "$(percentile "$work/lat-$n" 99)"
        [ "$n" = "${names[0]}" ] || printf '  %4.1f' "${cpu[$n]}"
        printf '  %4.1f' "${all[$n]}"
      done
      for n in "${names[@]:2}"; do
        # Each round's ratios: how far one round's figure can stray on this machine.
        local pairs=
        for r in $(seq 1 "$rounds"); do
          pairs+=" ${each[$n,$r]}:${each[${names[1]},$r]}:${each[${names[0]},$r]}"
        done
        awk -v s="${tps[$n]}" -v b="${tps[${names[1]}]}" -v d="${tps[${names[0]}]}" \
          -v pairs="$pairs" '
          BEGIN {
            lb = ld = 1e9; hb = hd = 0
            n = split(pairs, p, " ")
            for (i = 1; i <= n; i++) {
              split(p[i], x, ":")
              rb = x[1] / x[2]; rd = x[1] / x[3]
              if (rb < lb) lb = rb; if (rb > hb) hb = rb
              if (rd < ld) ld = rd; if (rd > hd) hd = rd
            }
            printf " | %.2f (%.2f-%.2f)  %.2f (%.2f-%.2f)", s / b, lb, hb, s / d, ld, hd
          }'
      done
      echo
      unset tps cpu all each
    done
  done
}

echo "machine: $(nproc) cores, $(uname -r); $(pgbouncer --version | head -1); $("$pgbin/postgres" --version)"
# The warm-up runs in pgbench's default -M simple, unless a script may need the extended
# protocol (for a pipeline).
warm=()
[ -z "$script" ] || warm=(-M extended)
echo "shardgate: $bin, pool_size $pool, workers $workers (shardgate-N: one per CPU; three shards: $multi_workers); PgBouncer: session mode, default_pool_size $pool; pgbench ${script:--S}, scale $scale"
bouncer_pid=$(cat "$work/bouncer.pid")
[ "$one" = 1 ] && table "pgbench ${script:--S}, one shard" \
  "direct:$pg_port: pgbouncer:$bouncer_port:$bouncer_pid$sg_targets" "${workload[@]}"

[ "$multi" = 1 ] || exit 0

# Three shards: three databases on the same server, loaded through the proxy, so the multi-shard
# statements pay for the scatter and the gather (on one machine: three backends per statement).
for s in 0 1 2; do q -d postgres -c "CREATE DATABASE shard$s"; done
{
  printf '[proxy]\nlisten = "127.0.0.1:%s"\npool_size = %s\nworkers = %s\n' "$multi_port" "$pool" "$multi_workers"
  for s in 0 1 2; do
    printf '[[shards]]\nname = "s%s"\nurl = "postgres://postgres@127.0.0.1:%s/shard%s"\n' "$s" "$pg_port" "$s"
  done
  tables
} >"$work/three.toml"
RUST_LOG=warn "${own_session[@]}" "$bin" --config "$work/three.toml" >"$work/three.log" 2>&1 &
three_pid=$!
pids+=("$three_pid")
wait_port "$multi_port"
echo "loading pgbench -i -s $scale through shardgate into three shards" >&2
pgbench -i -s "$scale" -q -h 127.0.0.1 -p "$multi_port" -U postgres bench >"$work/init3.log" 2>&1 ||
  { cat "$work/init3.log"; exit 1; }
# No pgbench_* table is key-routable by an aid range: both statements go to every shard.
cat >"$work/count.sql" <<EOF
\\set a random(1, 100000 * $scale - 1000)
SELECT count(*) FROM pgbench_accounts WHERE aid BETWEEN :a AND :a + 999;
EOF
cat >"$work/top.sql" <<EOF
\\set a random(1, 100000 * $scale - 1000)
SELECT aid, abalance FROM pgbench_accounts WHERE aid BETWEEN :a AND :a + 999 ORDER BY abalance DESC, aid LIMIT 10;
EOF
# A multi-get: five random keys, most often on two or three shards.
cat >"$work/multiget.sql" <<EOF
\\set k1 random(1, 100000 * $scale)
\\set k2 random(1, 100000 * $scale)
\\set k3 random(1, 100000 * $scale)
\\set k4 random(1, 100000 * $scale)
\\set k5 random(1, 100000 * $scale)
SELECT aid, abalance FROM pgbench_accounts WHERE aid IN (:k1, :k2, :k3, :k4, :k5);
EOF
modes=${MULTI_MODES:-simple prepared}
clients=${MULTI_CLIENTS:-8 64}
for query in ${MULTI_QUERIES:-count top multiget}; do
  case $query in
    count) title="keyless count over 1000 keys, three shards" ;;
    top) title="ORDER BY ... LIMIT 10 over 1000 keys, three shards" ;;
    multiget) title="five keys by IN (...), three shards" ;;
    *) echo "MULTI_QUERIES: unknown query $query"; exit 1 ;;
  esac
  table "$title" "direct:$pg_port: pgbouncer:$bouncer_port:$bouncer_pid shardgate:$multi_port:$three_pid" \
    -f "$work/$query.sql"
done
