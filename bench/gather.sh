#!/usr/bin/env bash
# What a multi-shard query costs: pgbench custom scripts (keyless aggregates, ORDER BY ... LIMIT,
# GROUP BY over a key range) against one unsharded database and through shardgate over 3 shards
# holding the same pgbench data (scale 10), measured back to back in one run.
# Usage: bench/gather.sh [path/to/shardgate] [seconds per run]
#   (default: target/dist/shardgate, Cargo.toml's `dist` profile, built or rebuilt first)
set -euo pipefail

bin=${1:-}
if [ -z "$bin" ]; then
  (cd "$(dirname "$0")/.." && cargo build --profile dist --quiet)
  bin=$(cd "$(dirname "$0")/.." && pwd)/target/dist/shardgate
fi
secs=${2:-8}
work=$(mktemp -d)
chmod 755 "$work"
demo_port=16542
port=16543
shard_port=25543

. "$(cd "$(dirname "$0")/.." && pwd)/tests/e2e/demo.sh"
demo_start
shard_pgbench_tables
proxy_start

# The same data twice: one unsharded database on the first shard's server, and the 3 shards.
psql -X -q -h 127.0.0.1 -p "$shard_port" -U postgres -d app -c 'CREATE DATABASE whole' >/dev/null
pgbench -h 127.0.0.1 -p "$shard_port" -U postgres -i -s 10 -q whole >/dev/null 2>&1
pgbench -h 127.0.0.1 -p "$port" -U postgres -i -s 10 -q app >/dev/null 2>&1

cat >"$work/agg.sql" <<'SQL'
\set a random(1, 990000)
SELECT count(*), sum(abalance), avg(abalance), max(bid) FROM pgbench_accounts WHERE aid BETWEEN :a AND :a + 1000;
SQL
cat >"$work/top.sql" <<'SQL'
\set a random(1, 990000)
SELECT aid, abalance FROM pgbench_accounts WHERE aid BETWEEN :a AND :a + 1000 ORDER BY abalance DESC, aid LIMIT 10;
SQL
cat >"$work/group.sql" <<'SQL'
\set a random(1, 900000)
SELECT bid, count(*), avg(abalance) FROM pgbench_accounts WHERE aid BETWEEN :a AND :a + 20000 GROUP BY bid HAVING count(*) > 10 ORDER BY bid;
SQL
cat >"$work/point.sql" <<'SQL'
\set a random(1, 1000000)
SELECT abalance FROM pgbench_accounts WHERE aid = :a;
SQL

tps() { # tps PORT DB SCRIPT MODE
  pgbench -h 127.0.0.1 -p "$1" -U postgres -n -f "$3" -M "$4" -c 4 -j 2 -T "$secs" "$2" 2>&1 |
    awk '/^tps/ {printf "%.0f", $3} /failed transactions: [1-9]/ {print "FAILED"; exit 1}'
}
printf '| query (4 clients, -M MODE) | one database tps | shardgate, 3 shards tps | ratio |\n|---|---|---|---|\n'
for mode in simple extended; do
  for s in point agg top group; do
    d=$(tps "$shard_port" whole "$work/$s.sql" "$mode")
    g=$(tps "$port" app "$work/$s.sql" "$mode")
    printf '| %s, -M %s | %s | %s | %s |\n' "$s" "$mode" "$d" "$g" "$(awk "BEGIN {printf \"%.2f\", $g / $d}")"
  done
done
