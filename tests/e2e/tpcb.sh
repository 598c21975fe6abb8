#!/usr/bin/env bash
# End-to-end TPC-B over three shards: `shardgate demo` starts three shards, a second proxy serves
# them with the four pgbench tables sharded on their own ids, and pgbench's default TPC-B script
# (each transaction updates an account, a teller and a branch and inserts a history row, each
# placed by its own id: one transaction on up to all three shards) runs against one unsharded
# database and through shardgate, back to back. Then the books must balance: sum(abalance) =
# sum(tbalance) = sum(bbalance) = sum(delta), through the proxy and summed over the shards
# directly; no failed transaction; one history row per processed transaction; no prepared
# transaction left on any shard. Then the chaos phase (tests/e2e/chaos.sh): TPC-B through shardgate
# again while the proxy's backend connections are killed on two shards and the third restarts;
# afterwards no prepared transaction may be left, the proxy must still answer, and the books must
# balance as before, on each shard too (only the history row count is not checked).
# Usage: tests/e2e/tpcb.sh [path/to/shardgate] [seconds per run]
set -euo pipefail

bin=${1:-target/release/shardgate}
secs=${2:-10}
scale=4
work=$(mktemp -d)
chmod 755 "$work"
demo_port=16452
port=16453
shard_port=25453
shards=("$shard_port" $((shard_port + 1)) $((shard_port + 2)))
t0=$(date +%s)

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=demo.sh
. "$here/demo.sh"
demo_start
shard_pgbench_tables
proxy_start

export PGCONNECT_TIMEOUT=10
q() { # q PORT DB SQL: one value
  psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"
}
fail() {
  echo "FAIL $*"
  exit 1
}
# After the TPC-B runs every check runs and prints before the script gives its verdict.
bad=0
mismatch() {
  echo "FAIL $*"
  bad=1
}

# The same data twice: one unsharded database on the first shard's server, and the 3 shards.
q "$shard_port" app 'CREATE DATABASE whole' >/dev/null
pgbench -h 127.0.0.1 -p "$shard_port" -U postgres -i -s "$scale" -q whole >"$work/init-whole.log" 2>&1 ||
  { cat "$work/init-whole.log"; fail "pgbench -i into whole"; }
pgbench -h 127.0.0.1 -p "$port" -U postgres -i -s "$scale" -q app >"$work/init-proxy.log" 2>&1 ||
  { cat "$work/init-proxy.log"; fail "pgbench -i through shardgate"; }
echo "ok   pgbench -i -s $scale: into whole directly and through shardgate ($(($(date +%s) - t0))s so far)"

# TPC-B (the default script), back to back: directly on whole, then through shardgate.
run() { # run NAME PORT DB
  if ! pgbench -h 127.0.0.1 -p "$2" -U postgres -M prepared -c 8 -j 2 -T "$secs" "$3" \
    >"$work/tpcb-$1.log" 2>&1; then
    mismatch "pgbench TPC-B ($1) exited non-zero (a client aborted?)"
  fi
}
run direct "$shard_port" whole
run proxy "$port" app
field() { # field LOG PATTERN: the first number after PATTERN
  sed -n -e "s/^$2 *\([0-9.]*\).*/\1/p" "$work/tpcb-$1.log" | head -n 1
}
for r in direct proxy; do
  grep -q "^number of failed transactions: 0 " "$work/tpcb-$r.log" ||
    mismatch "$r: pgbench reports failed transactions:" \
      "$(grep '^number of failed' "$work/tpcb-$r.log" || echo '(no such line)')"
done
tps_direct=$(field direct 'tps =')
tps_proxy=$(field proxy 'tps =')
processed=$(field proxy 'number of transactions actually processed:')
processed_direct=$(field direct 'number of transactions actually processed:')
if [ -z "$tps_direct" ] || [ -z "$tps_proxy" ] || [ -z "$processed" ] || [ -z "$processed_direct" ]; then
  cat "$work/tpcb-direct.log" "$work/tpcb-proxy.log"
  fail "could not read pgbench's output"
fi
printf 'tps  TPC-B -M prepared -c 8 -j 2 -T %s: direct %.0f (%s txns), shardgate %.0f (%s txns), ratio %.2f\n' \
  "$secs" "$tps_direct" "$processed_direct" "$tps_proxy" "$processed" \
  "$(awk -v g="$tps_proxy" -v d="$tps_direct" 'BEGIN {printf "%.2f", g / d}')"

# The books balance: through the proxy (the gather engine adds the shards' partial sums) ...
sums_of() { # sums_of PORT DB: abalance tbalance bbalance delta history-rows
  local sql v out=()
  for sql in 'SELECT sum(abalance) FROM pgbench_accounts' 'SELECT sum(tbalance) FROM pgbench_tellers' \
    'SELECT sum(bbalance) FROM pgbench_branches' 'SELECT sum(delta) FROM pgbench_history' \
    'SELECT count(*) FROM pgbench_history'; do
    v=$(q "$1" "$2" "$sql") || return 1
    out+=("${v:-0}") # sum() of no rows is NULL
  done
  echo "${out[*]}"
}
balanced() { # balanced WHAT ROWS-WANTED A T B D N
  local what=$1 want=$2
  shift 2
  if [ "$1" != "$2" ] || [ "$2" != "$3" ] || [ "$3" != "$4" ]; then
    mismatch "$what: sum(abalance)=$1 sum(tbalance)=$2 sum(bbalance)=$3 sum(delta)=$4 disagree"
  elif [ "$5" != "$want" ]; then
    mismatch "$what: $5 history rows, but pgbench processed $want transactions"
  else
    echo "ok   $what: sum(abalance) = sum(tbalance) = sum(bbalance) = sum(delta) = $1; $5 history rows"
  fi
}
line=$(sums_of "$port" app) || fail "the sums through shardgate"
read -r -a via_proxy <<<"$line"
balanced "through shardgate" "$processed" "${via_proxy[@]}"

# ... and summed over the shards directly.
over_shards=(0 0 0 0 0)
for p in "${shards[@]}"; do
  line=$(sums_of "$p" app) || fail "the sums on the shard on $p"
  read -r -a one <<<"$line"
  echo "     shard on $p: sum(abalance) sum(tbalance) sum(bbalance) sum(delta) history-rows = ${one[*]}"
  # History rows live with their account (both by aid): each shard balances on its own.
  [ "${one[0]}" = "${one[3]}" ] ||
    mismatch "shard on $p: sum(abalance)=${one[0]} but its history rows' sum(delta)=${one[3]}"
  for i in 0 1 2 3 4; do
    over_shards[i]=$((over_shards[i] + one[i]))
  done
done
balanced "summed over the 3 shards" "$processed" "${over_shards[@]}"
[ "${over_shards[*]}" = "${via_proxy[*]}" ] ||
  mismatch "through shardgate (${via_proxy[*]}) != summed over the shards (${over_shards[*]})"

# The baseline too, so that a mismatch above is known to be shardgate's.
line=$(sums_of "$shard_port" whole) || fail "the sums in whole"
read -r -a baseline <<<"$line"
balanced "whole (direct baseline)" "$processed_direct" "${baseline[@]}"

prepared=()
for p in "${shards[@]}"; do
  prepared+=("$(q "$p" app 'SELECT count(*) FROM pg_prepared_xacts')")
done
if [ "${prepared[*]}" = "0 0 0" ]; then
  echo "ok   no prepared transaction left on any shard"
else
  mismatch "prepared transactions left on the shards (on ${shards[*]}): ${prepared[*]}"
fi
if [ "$bad" != 0 ]; then
  for r in direct proxy; do
    echo "--- pgbench TPC-B, $r:"
    cat "$work/tpcb-$r.log"
  done
  echo "--- shardgate's log (last 50 lines):"
  tail -n 50 "$work/proxy.log"
  fail "the books do not balance (see above)"
fi
echo "ok   clean phase ($(($(date +%s) - t0))s so far)"

# shellcheck source=chaos.sh
. "$here/chaos.sh"
chaos_phase
echo "tpcb end-to-end: all passed in $(($(date +%s) - t0))s"
