# shellcheck shell=bash disable=SC2154  # the variables below are set by the sourcing script
# Shared by the end-to-end scripts and bench/gather.sh (sourced, not run): `shardgate demo`'s
# three shards, and a second proxy serving them with the tables a script lists.
# Needs $bin, $work, $demo_port, $port and $shard_port set; sets $demo and $proxy.

demo=
proxy=
demo_cleanup() {
  if [ -n "$proxy" ]; then kill -INT "$proxy" 2>/dev/null || true; fi
  if [ -n "$demo" ]; then kill -INT "$demo" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}

# Starts the demo's shards and waits until they serve; the demo's own config is copied to
# $work/shards.toml with the proxy's port, ready for `shard_table` lines.
demo_start() {
  trap demo_cleanup EXIT
  "$bin" demo --dir "$work/demo" --port "$demo_port" --shard-port "$shard_port" >"$work/demo.log" 2>&1 &
  demo=$!
  for _ in $(seq 1 120); do
    grep -q "Connect with" "$work/demo.log" && break
    kill -0 "$demo" 2>/dev/null || { cat "$work/demo.log"; exit 1; }
    sleep 0.5
  done
  grep -q "Connect with" "$work/demo.log" || { cat "$work/demo.log"; echo "demo did not come up"; exit 1; }
  sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$work/demo/shards.toml" >"$work/shards.toml"
}

# shard_table NAME KEY: lists a table sharded by KEY in the second proxy's config.
shard_table() {
  printf '\n[[tables]]\nname = "%s"\nshard_key = "%s"\n' "$1" "$2" >>"$work/shards.toml"
}

# The four pgbench tables, each sharded on its own id.
shard_pgbench_tables() {
  shard_table pgbench_accounts aid
  shard_table pgbench_tellers tid
  shard_table pgbench_branches bid
  shard_table pgbench_history aid
}

# Starts the second proxy on $work/shards.toml and waits for its port.
proxy_start() {
  "$bin" --config "$work/shards.toml" >"$work/proxy.log" 2>&1 &
  proxy=$!
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
  done
}
