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

"$bin" demo --dir "$work/demo" --port "$demo_port" --shard-port "$shard_port" >"$work/demo.log" 2>&1 &
demo=$!
proxy=
cleanup() {
  [ -n "$proxy" ] && kill -INT "$proxy" 2>/dev/null || true
  kill -INT "$demo" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 120); do
  grep -q "Connect with" "$work/demo.log" && break
  kill -0 "$demo" 2>/dev/null || { cat "$work/demo.log"; exit 1; }
  sleep 0.5
done
grep -q "Connect with" "$work/demo.log" || { cat "$work/demo.log"; echo "demo did not come up"; exit 1; }

sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$work/demo/shards.toml" >"$work/shards.toml"
printf '\n[[tables]]\nname = "e2e_items"\nshard_key = "user_id"\n' >>"$work/shards.toml"
"$bin" --config "$work/shards.toml" >"$work/proxy.log" 2>&1 &
proxy=$!
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.2
done

python3 "$here/psycopg_driver.py" "$port" "$shard_port" $((shard_port + 1)) $((shard_port + 2))
