#!/usr/bin/env bash
# Past one process's file limit: one center, four endpoint processes and a
# load generator in several processes hold more idle sessions than one
# process may open files for. Before them, one all-in-one myimd holding
# 10,000 sessions gives the baseline the cluster's per-session figures are
# compared with. Every session is authenticated (Noise IK) and answers a
# PING before the servers are measured.
#
# Not part of CI: it takes a few minutes and most of the machine. It needs
# MariaDB and Redis (as the tests do), the mysql client and jq. Every
# process it starts is stopped by its PID at the end, the whole run is
# bounded by MYIM_SCALE_LIMIT seconds, and the database and Redis keys it
# made are dropped.
#
# Usage: scripts/scale-endpoints.sh [OUTDIR]
#
# OUTDIR (default: a new temporary directory) receives report.md, the
# bench reports as JSON and every process's output. Sizes, by environment:
#   MYIM_SCALE_ENDPOINTS     endpoint processes (4)
#   MYIM_SCALE_PER_ENDPOINT  sessions per endpoint (9000; an endpoint may
#                            hold a few dozen fewer than its file limit)
#   MYIM_SCALE_BENCH_PROCS   bench processes (3)
#   MYIM_SCALE_BASELINE      sessions on the all-in-one baseline (10000;
#                            0: no baseline)
#   MYIM_SCALE_SRC_PER_PROC  source addresses per bench process (4; each
#                            has about 28,000 ports, and a storm leaves
#                            every dropped session's port in TIME_WAIT)
#   MYIM_SCALE_STORM         1: after the hold, every session drops and
#                            comes back (myim-bench --storm), while a
#                            bystander session pings (0)
#   MYIM_SCALE_PING_RATE     the bystander's pings per second, window 1 (50)
#   MYIM_SCALE_QUIET_PING    how long the bystander pings while the
#                            sessions are held, before the storm (20s)
#   MYIM_SCALE_DIAL_RATE     sessions per second while ramping, in total
#                            (0: as fast as the dialers go)
#   MYIM_SCALE_HOLD          how long the sessions are held (20s)
#   MYIM_SCALE_LIMIT         seconds the whole run may take (1500)
#   MYIM_SCALE_REDIS         Redis address (127.0.0.1:6379)
#   MYIM_SCALE_MYSQL         DSN of the MariaDB server, without a database
#                            (root@tcp(127.0.0.1:3306)/)
set -euo pipefail
cd "$(dirname "$0")/.."

endpoints=${MYIM_SCALE_ENDPOINTS:-4}
per_endpoint=${MYIM_SCALE_PER_ENDPOINT:-9000}
bench_procs=${MYIM_SCALE_BENCH_PROCS:-3}
baseline_n=${MYIM_SCALE_BASELINE:-10000}
dial_rate=${MYIM_SCALE_DIAL_RATE:-0}
hold=${MYIM_SCALE_HOLD:-20s}
src_per_proc=${MYIM_SCALE_SRC_PER_PROC:-4}
storm=${MYIM_SCALE_STORM:-0}
ping_rate=${MYIM_SCALE_PING_RATE:-50}
quiet_ping=${MYIM_SCALE_QUIET_PING:-20s}
limit=${MYIM_SCALE_LIMIT:-1500}
redis=${MYIM_SCALE_REDIS:-127.0.0.1:6379}
mysql_base=${MYIM_SCALE_MYSQL:-root@tcp(127.0.0.1:3306)/}
out=${1:-$(mktemp -d /tmp/myim-scale.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

for tool in jq mysql go; do
  command -v "$tool" >/dev/null || { echo "scale-endpoints: needs $tool" >&2; exit 2; }
done

stamp=$(date +%s)
secret="scale-$stamp-$RANDOM"
prefix="myimscale$stamp:"
db="myim_scale_$stamp"
total=$((endpoints * per_endpoint))
pids=()

# The MariaDB DSN's parts, for the mysql client: user[:password]@tcp(host:port)/
creds=${mysql_base%%@*}
hostport=${mysql_base#*tcp(}
hostport=${hostport%%)*}
mysql_args=(-u "${creds%%:*}" -h "${hostport%%:*}" -P "${hostport##*:}" --protocol=tcp)
if [[ $creds == *:* ]]; then
  mysql_args+=("-p${creds#*:}")
fi

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if [ -n "${watchdog:-}" ]; then
    kill "$watchdog" 2>/dev/null || true
  fi
  # Stop what this script started, by PID: TERM, a grace period, then KILL.
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 200); do
    local alive=0
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  mysql "${mysql_args[@]}" -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
  if command -v redis-cli >/dev/null; then
    redis-cli -h "${redis%%:*}" -p "${redis##*:}" --scan --pattern "$prefix*" |
      xargs -r -n 500 redis-cli -h "${redis%%:*}" -p "${redis##*:}" DEL >/dev/null 2>&1 || true
  fi
  # The servers' data directories and the binaries; the reports stay.
  rm -rf "$out"/d[0-9]* "$out/bin"
  echo "scale-endpoints: output in $out"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The whole run is bounded: past the limit the script ends itself, and
# its exit stops everything it started.
(
  sleep "$limit" &
  s=$!
  trap 'kill "$s" 2>/dev/null; exit 0' TERM
  wait "$s"
  echo "scale-endpoints: over ${limit}s, stopping" >&2
  kill -TERM $$
) &
watchdog=$!

log() { echo "== $*" | tee -a "$out/report.md"; }

echo "== building myimd and myim-bench"
go build -o "$out/bin/myimd" ./cmd/myimd
go build -o "$out/bin/myim-bench" ./cmd/myim-bench
myimd="$out/bin/myimd"
bench="$out/bin/myim-bench"

# start NAME ARGS... runs myimd in the background, records its PID in
# pids, and waits (at most 30 s) until it has printed its listeners.
start() {
  local name=$1
  shift
  "$myimd" "$@" >"$out/$name.out" 2>"$out/$name.log" &
  local pid=$!
  pids+=("$pid")
  eval "pid_$name=$pid"
  for _ in $(seq 1 300); do
    if grep -q '^ *data' "$out/$name.out"; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "scale-endpoints: $name exited" >&2
      cat "$out/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "scale-endpoints: $name did not start in 30 s" >&2
  exit 1
}

# addr NAME LISTENER prints the address NAME's LISTENER listens on.
addr() { awk -v k="$2" '$1 == k && $2 == "listening" { print $4; exit }' "$out/$1.out"; }

# run_bench NAME ARGS... runs myim-bench with its output in NAME.txt,
# shown as it comes. It runs in the background so that the time limit's
# signal interrupts the wait; the bench stops its own child processes.
run_bench() {
  local name=$1
  shift
: >"$out/$name.txt"
  "$bench" "$@" >"$out/$name.txt" 2>&1 &
  local b=$!
  pids+=("$b")
  tail -n +1 -f --pid="$b" "$out/$name.txt" &
  local t=$!
  pids+=("$t")
  local code=0
  wait "$b" || code=$?
  wait "$t" || true
  if [ "$code" != 0 ]; then
    echo "scale-endpoints: myim-bench ($name) exited with $code" >&2
    exit 1
  fi
}

# bystander NAME DURATION starts one session of its own pinging the center's
# least loaded endpoint at ping_rate with one ping in flight, from an
# address no bench process uses; its PID is in by_pid.
bystander() {
  "$bench" --scenario ping --n 1 --window 1 --rate "$ping_rate" --duration "$2" --prefix "$1" \
    --http-addr "$(addr center http)" --admin-addr "$(addr center admin)" --admin-secret "$secret" \
    --src 127.0.0.254 --quiet --json "$out/$1.json" >"$out/$1.txt" 2>&1 &
  by_pid=$!
  pids+=("$by_pid")
}

# await_line FILE TEXT waits until FILE has a line containing TEXT, or the
# bench (PID bench_pid) has ended.
await_line() {
  until grep -q "$2" "$1" 2>/dev/null; do
    kill -0 "$bench_pid" 2>/dev/null || return 1
    sleep 0.2
  done
}

# run_storm ARGS... runs the cluster bench with --storm and two bystander
# ping runs: one while every session is held (quiet_ping long, within the
# hold) and one from the storm's start until it has settled, when it is
# interrupted and reports.
run_storm() {
  : >"$out/cluster.txt"
  "$bench" "$@" >"$out/cluster.txt" 2>&1 &
  bench_pid=$!
  pids+=("$bench_pid")
  tail -n +1 -f --pid="$bench_pid" "$out/cluster.txt" &
  pids+=("$!")
  if await_line "$out/cluster.txt" "^ramp: "; then
    bystander quiet "$quiet_ping"
  fi
  if await_line "$out/cluster.txt" "^storm: all"; then
    wait "$by_pid" || true
    bystander storm 10m
    await_line "$out/cluster.txt" "^storm: settled" || true
    kill -INT "$by_pid" 2>/dev/null || true
    wait "$by_pid" || true
  fi
  local code=0
  wait "$bench_pid" || code=$?
  if [ "$code" != 0 ]; then
    echo "scale-endpoints: myim-bench (cluster) exited with $code" >&2
    exit 1
  fi
}

# stop PID ends one process and waits for it (at most 20 s).
stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 200); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
}

# The baseline and the center run --pprof so that the bench's --settle can
# have them collect the garbage of provisioning before it reads their base
# RSS (see myim-bench --help). Endpoints close a session after --idle-timeout without a frame. On two
# shared cores the ramp of the whole run can outlast the default two
# minutes before the bench's first keepalive, so the run allows ten.
# The bench dials every session from a few addresses: no per-address handshake budget.
limits=(--max-conns 19800 --idle-timeout 10m --log-level warn --handshake-rate -1)
listen=(--endpoint-addr 127.0.0.1:0 --login-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --center-addr 127.0.0.1:0 --ws-addr 127.0.0.1:0)

{
  echo "# Past one process: $endpoints endpoints, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2/1048576 }' /proc/meminfo), Linux $(uname -r), $(go env GOVERSION)."
  echo "Open files per process: soft $(ulimit -Sn), hard $(ulimit -Hn). Load before the run: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
} >"$out/report.md"

if [ "$baseline_n" -gt 0 ]; then
  log "baseline: one all-in-one myimd, $baseline_n sessions"
  start base --data-dir "$out/d0" --admin-secret "$secret" --pprof "${listen[@]}" "${limits[@]}"
  run_bench baseline --scenario idle --n "$baseline_n" --prefix base --http-addr "$(addr base http)" --admin-addr "$(addr base admin)" \
    --admin-secret "$secret" --dial-rate "$dial_rate" --hold "$hold" --progress 5s --server-pid "$pid_base" --settle \
    --json "$out/baseline.json"
  stop "$pid_base"
else
  echo '{}' >"$out/baseline.json"
fi

log "cluster: one center, $endpoints endpoints, $total sessions from $bench_procs bench processes"
mysql "${mysql_args[@]}" -e "CREATE DATABASE $db"
dsn="${mysql_base%/}/$db"
common=(--redis-addr "$redis" --redis-prefix "$prefix")
"$myimd" cluster init --data-dir "$out/d1" --server-id 1
start center --role center --server-id 1 --data-dir "$out/d1" --join-addr 127.0.0.1:0 --mysql-dsn "$dsn" \
  --admin-secret "$secret" --pprof "${listen[@]}" "${common[@]}" "${limits[@]}"
server_pids=$pid_center
for k in $(seq 1 "$endpoints"); do
  "$myimd" cluster token --data-dir "$out/d1" --role endpoint --node $((k + 2)) >"$out/ep$k.join"
  start "ep$k" --role endpoint --server-id $((k + 2)) --data-dir "$out/d$((k + 2))" --join-file "$out/ep$k.join" \
    --join-url "https://$(addr center join)" --center-link "$(addr center center)" \
    "${listen[@]}" "${common[@]}" "${limits[@]}"
  eval "server_pids=\$server_pids,\$pid_ep$k"
done
# A few addresses per bench process: each address has about 28,000 ports.
last_src=$((1 + src_per_proc * bench_procs))
cluster_args=(--scenario idle --procs "$bench_procs" --n "$total" --spread --min-servers "$endpoints"
  --prefix scale --http-addr "$(addr center http)" --admin-addr "$(addr center admin)" --admin-secret "$secret" --src "127.0.0.2-127.0.0.$last_src"
  --dial-rate "$dial_rate" --hold "$hold" --progress 5s --server-pid "$server_pids" --settle --json "$out/cluster.json")
if [ "$storm" = 1 ]; then
  run_storm "${cluster_args[@]}" --storm
else
  run_bench cluster "${cluster_args[@]}"
fi
# Endpoints first, so that none of them sees its center go away.
for k in $(seq 1 "$endpoints"); do
  eval "stop \$pid_ep$k"
done
stop "$pid_center"

# The report: the cluster's figures per process and as ratios of the
# all-in-one baseline.
for f in quiet storm; do
  [ -s "$out/$f.json" ] || echo '{}' >"$out/$f.json"
done
jq -r --slurpfile b "$out/baseline.json" --slurpfile q "$out/quiet.json" --slurpfile s "$out/storm.json" '
  ($b[0]) as $base | ($q[0]) as $quiet | ($s[0]) as $sping |
  def r(x; y): if (y // 0) > 0 and x != null then ((x / y * 100 | round) / 100 | tostring) + "×" else "-" end;
  def f(x): if x == null then "-" else (x * 100 | round) / 100 end;
  def mib(x): if x == null then "-" else f(x / 1024) end;
  def n(x): if x == null then "-" else x | round end;
  def ms(x): if x == null then "-" else (x / 10 | round) / 100 end;
  "",
  "Sessions held: \(.conns) of \(.conns_wanted) (baseline \(n($base.conns))), errors \(.errors) (baseline \(n($base.errors))); every session answered a PING while all were held.",
  "Ramp: \(.ramp_per_s | round) sessions/s over \(.procs) bench processes, \(.conns / .ramp_per_s | round) s to open them all (baseline \(n($base.ramp_per_s))/s).",
  "Kernel slab per connection, both ends: \(f(.kernel_slab_per_conn_kb)) KiB (baseline \(f($base.kernel_slab_per_conn_kb)) KiB).",
  "",
  "| process | sessions | RSS before → held (MiB) | RSS per session (KiB) | × baseline | ramp CPU per session (µs) | × baseline |",
  "|---|---|---|---|---|---|---|",
  (if $base.conns != null then "| baseline all-in-one (pid \($base.server_pid)) | \($base.conns) | \(mib($base.server_rss_base_kb)) → \(mib($base.server_rss_kb)) | \(f($base.server_rss_per_session_kb)) | 1× | \(n($base.server_ramp_cpu_us_per_session)) | 1× |" else empty end),
  (.servers[] |
    "| \(if (.endpoints // []) | length > 0 then "endpoint " + (.endpoints | join(", ")) else "center (all sessions)" end) (pid \(.pid)) | \(.sessions) | \(mib(.rss_base_kb)) → \(mib(.rss_kb)) | \(f(.rss_per_session_kb)) | \(r(.rss_per_session_kb; $base.server_rss_per_session_kb)) | \(n(.ramp_cpu_us_per_session)) | \(r(.ramp_cpu_us_per_session; $base.server_ramp_cpu_us_per_session)) |"),
  "| all server processes | \(.conns) | \(mib(.server_rss_base_kb)) → \(mib(.server_rss_kb)) | \(f(.server_rss_per_session_kb)) | \(r(.server_rss_per_session_kb; $base.server_rss_per_session_kb)) | \(n(.server_ramp_cpu_us_per_session)) | \(r(.server_ramp_cpu_us_per_session; $base.server_ramp_cpu_us_per_session)) |",
  "",
  (.children[] | "- bench process \(.process): users \(.first)–\(.first + .conns_wanted - 1), \(.conns) sessions, ramp \(.ramp_per_s | round)/s, sources \(.sources), \(.errors) errors"),
  (if .storm != null then (.storm |
    "",
    "Storm: \(.back) of \(.dropped) sessions back in \(f(.seconds)) s (\(n(.sessions_per_s))/s), \(.failed) failed, \(.retries) attempts retried\(if .last_error then "; last error: " + .last_error else "" end).",
    "Server CPU over the storm: \(f(.server_cpu_s)) s, \(n(.server_cpu_us_per_session)) µs per session back; RSS after it \(mib(.server_rss_kb)) MiB.") else empty end),
  (if $sping.latency == null and $quiet.latency != null then
    "Bystander ping (one session, window 1, \($quiet.offered_rate) per second) with the sessions held: p50 \(ms($quiet.latency.p50_us)) ms, p99 \(ms($quiet.latency.p99_us)) ms over \($quiet.latency.count) pings."
  else empty end),
  (if $sping.latency != null then
    "Bystander ping (one session, window 1, \($sping.offered_rate) per second): during the storm p50 \(ms($sping.latency.p50_us)) ms, p99 \(ms($sping.latency.p99_us)) ms, max \(ms($sping.latency.max_us)) ms over \($sping.latency.count) pings, \($sping.errors) errors" +
    (if $quiet.latency != null then "; with the sessions held and quiet p50 \(ms($quiet.latency.p50_us)) ms, p99 \(ms($quiet.latency.p99_us)) ms over \($quiet.latency.count) pings (p99 \(r($sping.latency.p99_us; $quiet.latency.p99_us)) quiet)." else "." end)
  else empty end)
' "$out/cluster.json" | tee -a "$out/report.md"
{
  echo
  echo "Bench tables: baseline.txt, cluster.txt, quiet.txt and storm.txt (bystander pings); JSON alike (in $out)."
} >>"$out/report.md"
