#!/usr/bin/env bash
# End-to-end with real drivers: `shardgate demo` starts three shards, a second proxy serves
# them with the drivers' table listed, and psycopg 3 drives it (prepared, binary, transactions).
# Usage: tests/e2e/drivers.sh [path/to/shardgate]
set -euo pipefail

bin=${1:-target/release/shardgate}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
chmod 755 "$work"
demo_port=16442
port=16443
shard_port=25443

if ! python3 -c 'import psycopg' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check 'psycopg[binary]>=3.1' 2>&1 | grep -v 'as the .root. user' || true
fi

. "$here/demo.sh"
demo_start
# The drivers run against a proxy serving every client on one thread ([proxy] workers = 1);
# psql.sh and tpcb.sh run against the default, one thread per CPU.
sed -i 's/^listen = .*/&\nworkers = 1/' "$work/shards.toml"
shard_table e2e_items user_id
shard_table e2e_node user_id
shard_table e2e_jdbc user_id
shard_pgbench_tables
proxy_start
for _ in $(seq 1 25); do grep -q "(one worker thread)" "$work/proxy.log" && break; sleep 0.2; done
grep -q "(one worker thread)" "$work/proxy.log" ||
  { cat "$work/proxy.log"; echo "the proxy did not start on one worker thread"; exit 1; }

python3 "$here/psycopg_driver.py" "$port" "$shard_port" $((shard_port + 1)) $((shard_port + 2))

# node-pg, installed from the npm registry into the scratch directory.
if command -v npm >/dev/null; then
  (cd "$work" && npm install --silent --no-audit --no-fund --prefix "$work/node" pg@8 >/dev/null 2>&1) ||
    { echo "npm install pg failed"; exit 1; }
  NODE_PATH="$work/node/node_modules" node "$here/node_pg.js" "$port"
else
  echo "skip node-pg: npm is not installed"
fi

# The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java, which .ci/run installs).
jar=/usr/share/java/postgresql.jar
if command -v javac >/dev/null && [ -f "$jar" ]; then
  java -cp "$jar" "$here/JdbcDriver.java" "$port"
else
  echo "skip JDBC: needs a JDK and $jar (apt-get install default-jdk-headless libpostgresql-jdbc-java)"
fi

# pgbench -i: DDL on every shard, then COPY split by key.
pgbench -h 127.0.0.1 -p "$port" -U postgres -i -s 10 -q app >"$work/pgbench-init.log" 2>&1 ||
  { cat "$work/pgbench-init.log"; echo "pgbench -i through shardgate failed"; exit 1; }
total=0
for p in "$shard_port" $((shard_port + 1)) $((shard_port + 2)); do
  n=$(psql -X -A -t -h 127.0.0.1 -p "$p" -U postgres -d app -c 'SELECT count(*) FROM pgbench_accounts')
  [ "$n" -gt 0 ] || { echo "shard on $p got no pgbench_accounts rows"; exit 1; }
  total=$((total + n))
done
[ "$total" = 1000000 ] || { echo "pgbench_accounts rows: $total, want 1000000"; exit 1; }
echo "ok   pgbench -i -s 10 through shardgate: 1000000 accounts split over 3 shards"
# pgbench -S in each protocol mode: zero failed transactions.
for mode in simple extended prepared; do
  out=$(pgbench -h 127.0.0.1 -p "$port" -U postgres -S -M "$mode" -c 8 -j 2 -t 500 app 2>&1) ||
    { echo "$out"; echo "pgbench -S -M $mode failed"; exit 1; }
  grep -q "number of failed transactions: 0 " <<<"$out" || { echo "$out"; exit 1; }
  echo "ok   pgbench -S -M $mode: 0 failed transactions"
done
echo "drivers end-to-end: all passed"
