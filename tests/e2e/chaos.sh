# shellcheck shell=bash
# The chaos phase of tests/e2e/tpcb.sh (sourced, not run): TPC-B through shardgate while the
# proxy's backend connections are killed again and again on two shards and the third shard
# restarts; afterwards no prepared transaction may stay behind, the proxy must still answer and
# the books must still balance, through the proxy, over the shards and on each shard.
# Uses tpcb.sh's $work, $port, $shards, q, fail, mismatch, sums_of and balanced.
# shellcheck disable=SC2154 # the variables above are tpcb.sh's

chaos_secs=18    # traffic, from the chaos phase's start
kill_from=1      # the kills on the first two shards, in seconds from the start
kill_until=9
kill_every=0.7
restart_at=11    # the third shard's restart, well after the kills so that both show on their own
prepared_wait=30 # how long the in-doubt transactions may take to be resolved

now_ms() { date +%s%3N; }
in_secs() { # in_secs MS: "12.3"
  printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100))
}
sleep_until() { # sleep_until MS
  local left=$(($1 - $(now_ms)))
  if [ "$left" -gt 0 ]; then sleep "$(in_secs "$left")"; fi
}

# pgbench 15 aborts a client at the first error that is not a serialization failure or a
# deadlock, and a run ends once all its clients have: short runs back to back keep the traffic
# going through every kill and the restart. A run's exit status is kept next to its log. -n: by
# default every run would first truncate pgbench_history, and with it what the books are checked
# against.
chaos_traffic() { # chaos_traffic UNTIL-MS
  local n=0 rc
  while [ "$(now_ms)" -lt "$1" ]; do
    n=$((n + 1))
    rc=0
    pgbench -h 127.0.0.1 -p "$port" -U postgres -n -M prepared -c 8 -j 2 -T 2 app \
      >"$work/chaos-$n.log" 2>&1 || rc=$?
    echo "$rc" >"$work/chaos-$n.rc"
    # A run refused at once (say, while the shard restarts) would otherwise spin.
    if [ "$rc" != 0 ]; then sleep 0.2; fi
  done
}

# Every session on the shard's app database but our own: only the proxies connect there. Not by
# application_name: a backend connection starts as application_name=shardgate, but while it
# serves a client it carries the client's own (replayed with the client's settings, 'pgbench'
# here), so the name would spare exactly the busy connections. The demo's own proxy has a few
# idle connections there too; they go in the first round.
kill_sql="SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
  WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
chaos_kill() { # chaos_kill PORT FROM-MS UNTIL-MS: one line per round, how many were killed
  sleep_until "$2"
  while [ "$(now_ms)" -lt "$3" ]; do
    q "$1" app "$kill_sql" 2>>"$work/kills-$1.err" || echo "error"
    sleep "$kill_every"
  done
}

# As the postgres OS user when root, as shardgate's own clusters run (PostgreSQL refuses root).
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    (cd / && LC_ALL=C runuser -u postgres -- "$@")
  else
    LC_ALL=C "$@"
  fi
}

# pg_ctl restart starts the server again with the options of postmaster.opts, as the demo started
# it; the log goes where the demo's goes. The data directory is the one whose server has PORT.
chaos_restart() { # chaos_restart PORT
  local dir opts
  opts=$(grep -l -F "\"-p\" \"$1\"" "$work"/demo/*/postmaster.opts 2>/dev/null | head -n 1) || true
  [ -n "$opts" ] || { echo "no data directory under $work/demo runs a server on port $1"; return 1; }
  dir=$(dirname "$opts")
  # The first word of postmaster.opts is the server binary; pg_ctl lives next to it.
  as_postgres "$(dirname "$(cut -d ' ' -f 1 "$opts")")/pg_ctl" -D "$dir" -l "$dir/log" \
    -w -t 60 -m fast restart
}

chaos_phase() {
  local c0 traffic k0 k1 restart_ms restart_took restart_rc=0 runs=0 nonzero=0 processed=0
  local failed=0 aborted=0 no_summary=0 killed=0 per_shard=() rounds=0 kill_errors=0 f v i line
  echo "--- chaos: TPC-B -M prepared -c 8 -j 2 through shardgate for ${chaos_secs}s in runs of 2s;" \
    "backends killed on ${shards[0]} and ${shards[1]} every ${kill_every}s from +${kill_from}s to" \
    "+${kill_until}s; ${shards[2]} restarted at +${restart_at}s"
  c0=$(now_ms)
  chaos_traffic $((c0 + chaos_secs * 1000)) &
  traffic=$!
  chaos_kill "${shards[0]}" $((c0 + kill_from * 1000)) $((c0 + kill_until * 1000)) >"$work/kills-0.log" &
  k0=$!
  chaos_kill "${shards[1]}" $((c0 + kill_from * 1000)) $((c0 + kill_until * 1000)) >"$work/kills-1.log" &
  k1=$!
  sleep_until $((c0 + restart_at * 1000))
  restart_ms=$(now_ms)
  chaos_restart "${shards[2]}" >"$work/restart.log" 2>&1 || restart_rc=$?
  restart_took=$(($(now_ms) - restart_ms))
  wait "$k0" "$k1" "$traffic"

  # What happened, from the runs' logs.
  for f in "$work"/chaos-*.rc; do
    runs=$((runs + 1))
    [ "$(cat "$f")" = 0 ] || nonzero=$((nonzero + 1))
    line=$(sed -n -e 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "${f%.rc}.log")
    if [ -n "$line" ]; then processed=$((processed + line)); else no_summary=$((no_summary + 1)); fi
    line=$(sed -n -e 's/^number of failed transactions: \([0-9]*\).*/\1/p' "${f%.rc}.log")
    failed=$((failed + ${line:-0}))
    aborted=$((aborted + $(grep -c 'aborted in command' "${f%.rc}.log" || true)))
  done
  for i in 0 1; do
    per_shard[i]=0
    while read -r v; do
      rounds=$((rounds + 1))
      case $v in
        '' | *[!0-9]*) kill_errors=$((kill_errors + 1)) ;;
        *) per_shard[i]=$((per_shard[i] + v)) ;;
      esac
    done <"$work/kills-$i.log"
    killed=$((killed + per_shard[i]))
  done
  echo "     $runs pgbench runs ($nonzero exited non-zero, $no_summary without a summary):" \
    "$processed transactions processed, $failed failed, $aborted clients aborted"
  echo "     $killed backends killed in $rounds rounds (${per_shard[0]} on ${shards[0]}," \
    "${per_shard[1]} on ${shards[1]}; $kill_errors rounds could not run)"
  line=$(cat "$work"/chaos-*.log |
    sed -n -e 's/^pgbench: error: client [0-9]* script [0-9]* aborted in command [0-9]* query [0-9]*: //p' |
    sort | uniq -c | sort -rn | head -n 5)
  echo "     the errors that aborted clients, most frequent first:${line:+$'\n'}${line:- none}"
  if [ "$restart_rc" = 0 ]; then
    echo "     shard on ${shards[2]} restarted at +$(in_secs $((restart_ms - c0)))s" \
      "(pg_ctl restart -m fast took $(in_secs "$restart_took")s)"
  else
    cat "$work/restart.log"
    mismatch "restarting the shard on ${shards[2]} failed (exit $restart_rc; its output is above)"
  fi
  [ "$processed" -gt 0 ] || mismatch "no transaction went through shardgate during the chaos"
  [ "$killed" -gt 0 ] || mismatch "no backend connection was killed: the chaos did not happen"

  # The proxy is still of use: a fresh client gets an answer.
  v=$(q "$port" app 'SELECT 1' 2>&1) || true
  if [ "$v" = 1 ]; then
    echo "ok   shardgate still answers a simple query after the chaos"
  else
    mismatch "shardgate does not answer SELECT 1 after the chaos: $v"
  fi

  # In-doubt transactions are the proxy's recovery task's to resolve, in the background: give it
  # time, and only then compare the sums (a prepared transaction's changes are not visible yet).
  local t0_prepared prepared=() p
  t0_prepared=$(now_ms)
  while :; do
    prepared=()
    for p in "${shards[@]}"; do
      prepared+=("$(q "$p" app 'SELECT count(*) FROM pg_prepared_xacts' 2>/dev/null || echo '?')")
    done
    if [ "${prepared[*]}" = "0 0 0" ] || [ $(($(now_ms) - t0_prepared)) -ge $((prepared_wait * 1000)) ]; then
      break
    fi
    sleep 0.5
  done
  if [ "${prepared[*]}" = "0 0 0" ]; then
    echo "ok   no prepared transaction left on any shard" \
      "($(in_secs $(($(now_ms) - t0_prepared)))s after the traffic ended)"
  else
    mismatch "prepared transactions still on the shards (on ${shards[*]}) ${prepared_wait}s" \
      "after the traffic ended: ${prepared[*]}"
    for p in "${shards[@]}"; do
      q "$p" app 'SELECT gid, prepared FROM pg_prepared_xacts ORDER BY prepared' 2>&1 | head -n 5 |
        sed -e "s/^/     on $p: /"
    done
  fi

  # The books, as after the clean phase, but the history rows cannot be checked against what
  # pgbench counted: a commit whose answer was lost may have happened or not. The row count is
  # passed as its own expectation.
  local via=() over=(0 0 0 0 0) one
  if line=$(sums_of "$port" app 2>&1); then
    read -r -a via <<<"$line"
    balanced "after the chaos, through shardgate" "${via[4]}" "${via[@]}"
  else
    mismatch "after the chaos, the sums through shardgate failed: $line"
  fi
  for p in "${shards[@]}"; do
    line=$(sums_of "$p" app) || fail "after the chaos, the sums on the shard on $p"
    read -r -a one <<<"$line"
    echo "     shard on $p: sum(abalance) sum(tbalance) sum(bbalance) sum(delta) history-rows = ${one[*]}"
    [ "${one[0]}" = "${one[3]}" ] ||
      mismatch "after the chaos, shard on $p: sum(abalance)=${one[0]} but its history rows'" \
        "sum(delta)=${one[3]}"
    for i in 0 1 2 3 4; do
      over[i]=$((over[i] + one[i]))
    done
  done
  balanced "after the chaos, summed over the 3 shards" "${over[4]}" "${over[@]}"
  if [ ${#via[@]} -gt 0 ] && [ "${over[*]}" != "${via[*]}" ]; then
    mismatch "after the chaos, through shardgate (${via[*]}) != summed over the shards (${over[*]})"
  fi

  if [ "$bad" != 0 ]; then
    echo "--- shardgate's log (last 50 lines):"
    tail -n 50 "$work/proxy.log"
    echo "--- the restarted shard's pg_ctl:"
    cat "$work/restart.log"
    fail "the chaos phase (see above; sums that disagree across tables mean that a transaction" \
      "took effect on some of its shards only)"
  fi
}
