#!/usr/bin/env bash
# End-to-end with psql, as a new user would: `shardgate demo`, then psql against the proxy.
# Usage: tests/e2e/psql.sh [path/to/shardgate]   (default: target/release/shardgate)
set -euo pipefail

bin=${1:-target/release/shardgate}
work=$(mktemp -d)
port=16432
shard_port=25433   # away from the demo's default 5433, which a developer may have running
log="$work/demo.log"
chmod 755 "$work"

"$bin" demo --dir "$work/demo" --port "$port" --shard-port "$shard_port" >"$log" 2>&1 &
demo=$!
cleanup() {
  kill -INT "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 1 120); do
  grep -q "Connect with" "$log" && break
  kill -0 "$demo" 2>/dev/null || { cat "$log"; echo "demo exited early"; exit 1; }
  sleep 0.5
done
grep -q "Connect with" "$log" || { cat "$log"; echo "demo did not come up"; exit 1; }

export PGCONNECT_TIMEOUT=10
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d app -c "$1"; }
fails() { # fails SQLSTATE SQL: the statement must fail with that SQLSTATE
  local out
  if out=$(PGOPTIONS='' psql -X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
      -h 127.0.0.1 -p "$port" -U postgres -d app -c "\\set VERBOSITY verbose" -c "$2" 2>&1); then
    echo "expected $1 from: $2"; exit 1
  fi
  grep -q "$1" <<<"$out" || { echo "expected $1 from: $2, got: $out"; exit 1; }
}
check() { # check EXPECTED ACTUAL WHAT
  [ "$1" = "$2" ] || { echo "FAIL $3: expected '$1', got '$2'"; exit 1; }
  echo "ok   $3"
}

check "200" "$(q 'SELECT id FROM users' | wc -l | tr -d ' ')" "keyless SELECT gathers all 200 sample users"
check "ada8" "$(q 'SELECT name FROM users WHERE id = 8')" "point SELECT by key"
check "ada8" "$(q "SELECT name FROM users WHERE id = '8'")" "key as a string literal"
check "3" "$(q 'SELECT count(*) FROM orders WHERE user_id = 8')" "aggregate on one shard"
check "UPDATE 1" "$(psql -X -h 127.0.0.1 -p "$port" -U postgres -d app -c "UPDATE users SET email = 'x@y' WHERE id = 9")" "UPDATE by key"
check "INSERT 0 3" "$(psql -X -h 127.0.0.1 -p "$port" -U postgres -d app -c "INSERT INTO users (id, name) VALUES (1001, 'a'), (1002, 'b'), (1003, 'c')")" "multi-row INSERT answers one tag"
check "DELETE 3" "$(psql -X -h 127.0.0.1 -p "$port" -U postgres -d app -c "DELETE FROM users WHERE id > 1000")" "keyless DELETE adds up the shards"
check "1" "$(q 'SELECT 1')" "SELECT 1"
q '\dt' | grep -q '|users|table|' && echo "ok   \\dt lists the tables"
q '\d users' >/dev/null && echo "ok   \\d users"
check "5" "$(q 'SELECT code FROM countries' | wc -l | tr -d ' ')" "reference table read from one shard"
check "200" "$(q 'SELECT count(*) FROM users')" "keyless count(*) added up over the shards"
check "200|199|198" "$(q 'SELECT id FROM users ORDER BY id DESC LIMIT 3' | paste -sd'|')" "ORDER BY ... LIMIT merged across shards"
fails 0A000 "SELECT rank() OVER (ORDER BY id) FROM users"
echo "ok   window function across shards refused with 0A000"
fails 42P01 "INSERT INTO nowhere VALUES (1)"
echo "ok   unlisted table refused with 42P01"
fails 23505 "INSERT INTO users (id, name) VALUES (1, 'dup')"
echo "ok   PostgreSQL's own error passes through"

# Each shard holds only its own part: the three parts add up to the whole.
total=0
for p in $shard_port $((shard_port + 1)) $((shard_port + 2)); do
  n=$(psql -X -A -t -h 127.0.0.1 -p "$p" -U postgres -d app -c 'SELECT count(*) FROM users')
  [ "$n" -gt 0 ] || { echo "shard on $p holds no users"; exit 1; }
  total=$((total + n))
done
check "200" "$total" "the shards' parts add up to the whole, none empty"

# The admin console, as an operator would use it.
admin() { psql -X -q -A -t -F '|' -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d shardgate -c "$1"; }
for _ in $(seq 1 50); do q 'SELECT name FROM users WHERE id = 8' >/dev/null; done
check "3" "$(admin 'SHOW SHARDS' | wc -l | tr -d ' ')" "SHOW SHARDS lists the three shards"
check "users|8" "$(admin 'SHOW HOTSPOTS 1' | cut -d'|' -f1,2)" "SHOW HOTSPOTS names the key just queried 50 times"
home=$(admin "SHOW ROUTE SELECT * FROM users WHERE id = 8" | cut -d'|' -f2)
check "$home" "$(admin 'SHOW HOTSPOTS 1' | cut -d'|' -f3)" "the hot key's shard is the one SHOW ROUTE names"
if out=$(admin 'SHOW NONSENSE' 2>&1); then echo "FAIL SHOW NONSENSE succeeded: $out"; exit 1; fi
echo "ok   unknown console command refused: ${out%%$'\n'*}"
top_out=$("$bin" top --port "$port" --frames 1)
grep -q "^users  *8 " <<<"$top_out" || { echo "FAIL shardgate top: $top_out"; exit 1; }
echo "ok   shardgate top shows the hot key"
echo "psql end-to-end: all passed"
