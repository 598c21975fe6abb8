#!/usr/bin/env bash
# Two builds of shardgate side by side on the same three demo shards: alternated pgbench runs of
# a point SELECT by key, so that a change's cost shows against the run-to-run noise.
# Usage: [AB_OLD_EXTRA=TOML] bench/ab.sh OLD_BINARY NEW_BINARY [seconds per run] [rounds]
#   e.g. git worktree add /tmp/old HEAD~3 && (cd /tmp/old && cargo build --profile dist)
#        cargo build --profile dist &&
#        bench/ab.sh /tmp/old/target/dist/shardgate target/dist/shardgate
set -euo pipefail
old=${1:?old binary}
new=${2:?new binary}
secs=${3:-8}
rounds=${4:-3}
work=$(mktemp -d)
chmod 755 "$work"   # the demo runs PostgreSQL as postgres when run as root
"$new" demo --dir "$work/demo" --port 16800 --shard-port 26800 >"$work/demo.log" 2>&1 &
demo=$!
old_pid=
cleanup() {
  [ -n "$old_pid" ] && kill "$old_pid" 2>/dev/null
  kill -INT "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 120); do
  grep -q "Connect with" "$work/demo.log" && break
  sleep 0.5
done
grep -q "Connect with" "$work/demo.log" || { cat "$work/demo.log"; exit 1; }
sed 's/127.0.0.1:16800/127.0.0.1:16801/' "$work/demo/shards.toml" >"$work/old.toml"
# AB_OLD_EXTRA: config appended for the old side only, to measure a setting's cost with one
# binary, e.g. AB_OLD_EXTRA=$'[[rate_limits]]\nper = "user"\nrate = 1e9\nburst = 1000000'
if [ -n "${AB_OLD_EXTRA:-}" ]; then
  printf '\n%s\n' "$AB_OLD_EXTRA" >>"$work/old.toml"
fi
RUST_LOG=warn "$old" --config "$work/old.toml" >"$work/old.log" 2>&1 &
old_pid=$!
sleep 1
printf '\\set id random(1, 200)\nSELECT name FROM users WHERE id = :id;\n' >"$work/point.sql"
printf '%-9s %-6s %-4s %10s\n' mode round who tps
for mode in prepared simple; do
  for round in $(seq 1 "$rounds"); do
    for who in old new; do
      port=16800
      [ "$who" = old ] && port=16801
      tps=$(pgbench -n -h 127.0.0.1 -p "$port" -U postgres app -M "$mode" -c 8 -j 2 \
        -T "$secs" -f "$work/point.sql" 2>&1 | awk '/^tps/ {print $3}')
      printf '%-9s %-6s %-4s %10.0f\n' "$mode" "$round" "$who" "$tps"
    done
  done
done
