# Sourced by the benchmark scripts: starts PostgreSQL (initdb into a temp dir, pgbench -i),
# PgBouncer in session mode in front of it, and one shardgate with one shard per WORKERS value,
# and stops them all on exit.
# Reads: here, bin, pg_port, bouncer_port, proxy_port, multi_port, pool, workers, scale, hop,
#   script.
# Sets: pgbin, work, as_pg, pids, sg_targets ("name:port:pid ..."), workload (pgbench's arguments
#   for the runs: -S, or script); defines q, tables, wait_port, machine_ticks.
# shellcheck shell=bash disable=SC2034,SC2154  # the variables set and read here are the callers'
pgbin=
# shellcheck disable=SC2012  # the directory names are version numbers
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  [ -x "$d/initdb" ] && pgbin=$d && break
done
if [ -z "$pgbin" ]; then
  command -v initdb >/dev/null || { echo "initdb not found (the PostgreSQL server)"; exit 1; }
  pgbin=$(dirname "$(command -v initdb)")
fi
command -v pgbouncer >/dev/null || { echo "pgbouncer not found (apt-get install pgbouncer)"; exit 1; }
# The default binary is the deployable build (Cargo.toml's `dist` profile), rebuilt if the
# sources changed since, so that a run never measures a stale one; a BIN given is used as it is.
if [ -z "${BIN:-}" ]; then
  (cd "$here" && cargo build --profile dist --quiet)
fi
[ -x "$bin" ] || { echo "no shardgate binary at $bin"; exit 1; }

work=$(mktemp -d)
chmod 755 "$work"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  as_pg=(runuser -u postgres --)
  chown postgres "$work"
fi
pids=()
cleanup() {
  set +e # every step runs even if one fails (a server already gone)
  for p in "${pids[@]+"${pids[@]}"}"; do kill -INT "$p" 2>/dev/null || true; done
  [ -f "$work/bouncer.pid" ] && kill "$(cat "$work/bouncer.pid")" 2>/dev/null
  [ -d "$work/pg" ] && "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The workload the scripts measure: -S, or `script` by an absolute path (pgbench may run in
# another directory), with -s because pgbench knows a custom script's :scale only from it.
workload=(-S)
if [ -n "${script:-}" ]; then
  workload=(-f "$(cd "$(dirname "$script")" && pwd)/$(basename "$script")" -s "$scale")
fi

# PostgreSQL: room for every client of every target at once, nothing written to disk that a
# read-only benchmark does not need.
"${as_pg[@]}" "$pgbin/initdb" -D "$work/pg" -U postgres -A trust >"$work/initdb.log" 2>&1 ||
  { cat "$work/initdb.log"; exit 1; }
cat >>"$work/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$work'
# direct clients, PgBouncer's pool, and the one-shard and three-shard proxies' pools at once
max_connections = $((pool * 8 + 100))
shared_buffers = 256MB
fsync = off
synchronous_commit = off
# Writes over several shards (pgbench -i through the proxy) commit in two phases.
max_prepared_transactions = 100
EOF
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }
q -d postgres -c 'CREATE DATABASE bench'
echo "loading pgbench -i -s $scale" >&2
pgbench -i -s "$scale" -q -h 127.0.0.1 -p "$pg_port" -U postgres bench >"$work/init.log" 2>&1 ||
  { cat "$work/init.log"; exit 1; }

# PgBouncer, session mode: the pooler that parses nothing.
cat >"$work/bouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $work/users.txt
pool_mode = session
default_pool_size = $pool
max_client_conn = $((pool * 2 + 10))
logfile = $work/bouncer.log
pidfile = $work/bouncer.pid
EOF
echo '"postgres" ""' >"$work/users.txt"
"${as_pg[@]}" pgbouncer -d "$work/bouncer.ini"

# Each proxy in a session of its own (setsid), as PgBouncer is once it daemonizes and as a service
# manager starts one. With the kernel's autogroups (sched_autogroup_enabled), CPU is shared fairly
# between sessions first: a proxy left in this script's session would share one group's share
# with pgbench's threads, and be preempted more often than PgBouncer in its own group.
own_session=()
if command -v setsid >/dev/null; then
  own_session=(setsid)
fi

# shardgate with one shard: the same database, the pgbench tables sharded on their ids.
tables() {
  printf '[[tables]]\nname = "pgbench_accounts"\nshard_key = "aid"\n'
  printf '[[tables]]\nname = "pgbench_branches"\nshard_key = "bid"\n'
  printf '[[tables]]\nname = "pgbench_tellers"\nshard_key = "tid"\n'
  printf '[[tables]]\nname = "pgbench_history"\nshard_key = "aid"\n'
}
# One proxy per WORKERS value, on proxy_port and then the ports above multi_port; each a
# "name:port:pid" target of the one-shard table. A value ending in "-text" runs that many
# workers with `auto_prepare = false` (simple-protocol statements sent as text).
sg_targets=
port=$proxy_port
for spec in $workers; do
  w=${spec%-text}
  auto=true
  [ "$spec" = "$w" ] || auto=false
  {
    printf '[proxy]\nlisten = "127.0.0.1:%s"\npool_size = %s\nworkers = %s\nauto_prepare = %s\n' \
      "$port" "$pool" "$w" "$auto"
    printf '[[shards]]\nname = "s0"\nurl = "postgres://postgres@127.0.0.1:%s/bench"\n' "$pg_port"
    tables
  } >"$work/one-$spec.toml"
  RUST_LOG=warn "${own_session[@]}" "$bin" --config "$work/one-$spec.toml" \
    >"$work/one-$spec.log" 2>&1 &
  pids+=("$!")
  name=shardgate-$w
  [ "$w" = 0 ] && name=shardgate-N
  [ "$auto" = true ] || name+=-text
  sg_targets+=" $name:$port:$!"
  port=$((port == proxy_port ? multi_port + 1 : port + 1))
done

# hop=1: a plain tokio byte-copy hop (examples/hop.rs) in front of the same database, the floor
# of what any tokio proxy costs; a target like the shardgates, named "hop".
if [ "${hop:-0}" = 1 ]; then
  (cd "$here" && cargo build --profile dist --quiet --example hop)
  "${own_session[@]}" "$here/target/dist/examples/hop" "127.0.0.1:$port" "127.0.0.1:$pg_port" \
    >"$work/hop.log" 2>&1 &
  pids+=("$!")
  sg_targets+=" hop:$port:$!"
fi

# machine_ticks: "busy idle", the CPU time of all cores so far in clock ticks. Busy is every
# process and the kernel, with what a hypervisor stole (the machine was not ours then either);
# idle includes iowait.
machine_ticks() {
  awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat
}

# wait_port PORT [TENTHS]: waits up to TENTHS tenths of a second (100) for PORT to listen.
wait_port() {
  for _ in $(seq 1 "${2:-100}"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1"
  cat "$work"/*.log
  exit 1
}
wait_port "$bouncer_port"
for t in $sg_targets; do
  IFS=: read -r _ port _ <<<"$t"
  wait_port "$port"
done

