#!/usr/bin/env bash
# The inventory on etcd (three members) against the embedded redb store, in one run:
#   1. DORA/s: perfdhcp against one provisioner on redb, then one provisioner on a three-member
#      etcd cluster, same rates for both: bench/dhcp.sh's, 5 s trials, and 250-1000/s below them
#      (etcd saturates far below redb);
#   2. boot storm: `lab storm --machines N --uki-size 1MiB` (one provisioner on redb) and the same
#      with `--ha` (two provisioners on three etcd members, no kills; the lab starts them);
# then one table with both stores side by side and the ratios (etcd / redb).
#
#   sudo bench/ha.sh                              # ~5-10 min: 9 rates x 5 s, 1,000 machines
#   RATES="2000 4000" DURATION=3 MACHINES=200 sudo bench/ha.sh   # quick look
#
# DORA part: three namespaces with random names on one bridge (198.18.0.0/15, nothing connected
# to the host): the server's (bridge, 198.18.0.1), perfdhcp's (198.18.0.2, a relay: giaddr set,
# -R 50000 simulated clients) and etcd's (members m0..m2 on 198.18.0.11-13, ports 2379/2380,
# data dirs in this script's temp dir). Servers and etcd are started fresh for every trial (empty
# store), by PID; the provisioner is pinned to CPU 0 and perfdhcp to CPU 1 as in bench/dhcp.sh;
# etcd runs on ETCD_CPUS (default 0: the server and its store share one core, the load generator
# keeps the other). achieved = ACKs / duration; drop = 1 - ACKs / DISCOVERs; a rate is sustained
# below 1 % drop, and the highest such achieved rate is the store's figure. cpu/1k = CPU-seconds
# (utime + stime, /proc/PID/stat) during the trial per 1,000 ACKs perfdhcp received: the
# provisioner's, and etcd's (the three members summed). ack ms = perfdhcp's mean REQUEST -> ACK
# delay. From etcd's /metrics (members summed, per 1,000 ACKs): Range and Txn RPCs served, WAL
# fsyncs, and the mean WAL fsync time. Above the sustained rate the per-1k figures also count
# work for ACKs that came too late for perfdhcp: read them at sustained rates only.
#
# Storm part: the lab reports wall time, per-phase p50/p99 and the provisioners' CPU during the
# storm (`--json`, parsed with python3). etcd's CPU is not in the lab's report: this script
# samples its members (children of the lab process named etcd) every 0.1 s over the whole lab
# run, start, import of the N machines, storm and the checks after it; the provisioners' CPU is
# sampled the same way for a like-for-like "whole run" column.
#
# Environment: RATES, DURATION (s), MACHINES, ETCD_CPUS, STORM_ARGS (extra `lab storm` arguments
# for both storm runs), SKIP_DORA=1 / SKIP_STORM=1, LOGS=DIR (keep the last trial's server and etcd
# logs and the storms' reports there).
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-"250 500 1000 2000 4000 6000 8000 9000 10000"}
DURATION=${DURATION:-5}
MACHINES=${MACHINES:-1000}
ETCD_CPUS=${ETCD_CPUS:-0}
STORM_ARGS=${STORM_ARGS:-}
[ "$(id -u)" -eq 0 ] || { echo "bench/ha.sh: run as root" >&2; exit 1; }
scripts/install-test-deps
cargo build --release -q -p provisioner -p lab
BIN=$PWD/target/release/provisioner
LAB=$PWD/target/release/lab
export PROVISIONER_BIN=$BIN

SUF=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
S=hbs-$SUF; C=hbc-$SUF; E=hbe-$SUF
W=$(mktemp -d /tmp/ha-bench.XXXXXX)
ETCD_IPS=(198.18.0.11 198.18.0.12 198.18.0.13)
EPS=$(printf 'http://%s:2379,' "${ETCD_IPS[@]}"); EPS=${EPS%,}
SRV_PID=""; ETCD_PIDS=(); LAB_PID=""

# Ends only what this script started, by PID; the lab tears down its own namespaces on SIGTERM.
cleanup() {
  [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null
  for p in "${ETCD_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  if [ -n "$LAB_PID" ] && kill -0 "$LAB_PID" 2>/dev/null; then
    kill -TERM "$LAB_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$LAB_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  ip netns del "$S" 2>/dev/null; ip netns del "$C" 2>/dev/null; ip netns del "$E" 2>/dev/null
  if [ -n "${LOGS:-}" ]; then mkdir -p "$LOGS"; cp "$W"/*.log "$W"/*.err "$W"/*.json "$LOGS"/ 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One bridge in the server's namespace; perfdhcp's and etcd's namespaces hang off it by veth.
ip netns add "$S"; ip netns add "$C"; ip netns add "$E"
for n in "$S" "$C" "$E"; do ip -n "$n" link set lo up; done
ip -n "$S" link add hb type bridge
ip -n "$S" addr add 198.18.0.1/15 dev hb; ip -n "$S" link set hb up
ip -n "$S" link add vsc type veth peer name vc netns "$C"
ip -n "$S" link add vse type veth peer name ve netns "$E"
for v in vsc vse; do ip -n "$S" link set "$v" master hb; ip -n "$S" link set "$v" up; done
ip -n "$C" addr add 198.18.0.2/15 dev vc; ip -n "$C" link set vc up
for ip in "${ETCD_IPS[@]}"; do ip -n "$E" addr add "$ip/15" dev ve; done
ip -n "$E" link set ve up

cat > "$W/server.toml" <<TOML
[dhcp]
mode = "full"
server_ip = "198.18.0.1"
[[dhcp.subnet]]
network = "198.18.0.0/15"
range = "198.18.1.0-198.19.255.254"
router = "198.18.0.1"
lease_time = "1h"
TOML

# Three members, fresh data dirs; returns once every one logged "ready to serve client requests"
# (which in etcd 3.4 follows the member publishing itself through raft, i.e. a leader exists).
start_etcd() {
  local cluster i
  cluster=$(for i in 0 1 2; do printf 'm%s=http://%s:2380,' "$i" "${ETCD_IPS[$i]}"; done); cluster=${cluster%,}
  ETCD_PIDS=()
  for i in 0 1 2; do
    rm -rf "$W/etcd-m$i"
    ip netns exec "$E" taskset -c "$ETCD_CPUS" etcd --name "m$i" --data-dir "$W/etcd-m$i" \
      --listen-client-urls "http://${ETCD_IPS[$i]}:2379" --advertise-client-urls "http://${ETCD_IPS[$i]}:2379" \
      --listen-peer-urls "http://${ETCD_IPS[$i]}:2380" --initial-advertise-peer-urls "http://${ETCD_IPS[$i]}:2380" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "hb-$SUF" \
      --max-txn-ops 100000 --max-request-bytes 33554432 >/dev/null 2>"$W/etcd-m$i.log" &
    ETCD_PIDS+=($!)
  done
  for _ in $(seq 300); do
    local ready=0
    for i in 0 1 2; do grep -q "ready to serve client requests" "$W/etcd-m$i.log" && ready=$((ready + 1)); done
    [ "$ready" -eq 3 ] && return 0
    sleep 0.1
  done
  echo "etcd did not start" >&2; tail -n 20 "$W"/etcd-m*.log >&2; exit 1
}
stop_etcd() {
  for p in "${ETCD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  ETCD_PIDS=()
}

start_server() {
  rm -rf "$W/data"
  local store=()
  [ "$1" = etcd ] && store=(--etcd-endpoints "$EPS")
  ip netns exec "$S" taskset -c 0 "$BIN" serve --config "$W/server.toml" --listen 127.0.0.1:0 --no-tftp \
    --data-dir "$W/data" "${store[@]}" >/dev/null 2>"$W/server-$1.log" &
  SRV_PID=$!
  for _ in $(seq 100); do ip netns exec "$S" ss -uln | grep -q ':67 ' && return 0; sleep 0.1; done
  echo "provisioner ($1) did not start" >&2; tail -n 20 "$W/server-$1.log" >&2; exit 1
}
stop_server() { kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; SRV_PID=""; }

# CPU-seconds (utime + stime from /proc/PID/stat) of the given processes, summed.
cpu_seconds() {
  local p
  for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null || true; done |
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); s += $12 + $13 } END { printf "%.2f\n", s / hz }'
}

# From every member's /metrics, summed: "range_rpcs txn_rpcs wal_fsyncs wal_fsync_seconds".
etcd_metrics() {
  local ip
  for ip in "${ETCD_IPS[@]}"; do ip netns exec "$E" curl -s --max-time 5 "http://$ip:2379/metrics" || true; done |
    awk '/^grpc_server_handled_total/ && /grpc_method="Range"/ { r += $2 }
         /^grpc_server_handled_total/ && /grpc_method="Txn"/ { t += $2 }
         /^etcd_disk_wal_fsync_duration_seconds_count/ { fc += $2 }
         /^etcd_disk_wal_fsync_duration_seconds_sum/ { fs += $2 }
         END { printf "%d %d %d %.6f\n", r, t, fc, fs }'
}

# trial STORE RATE -> "achieved drop% cpu/1k ack_ms etcd_cpu/1k range/1k txn/1k fsyncs/1k fsync_ms"
# (the etcd columns are "-" for redb).
trial() {
  local out cpu0 cpu1 e0="" e1="" m0="0 0 0 0" m1="0 0 0 0"
  [ "$1" = etcd ] && start_etcd
  start_server "$1"
  cpu0=$(cpu_seconds "$SRV_PID")
  if [ "$1" = etcd ]; then e0=$(cpu_seconds "${ETCD_PIDS[@]}"); m0=$(etcd_metrics); fi
  out=$(ip netns exec "$C" taskset -c 1 timeout $((DURATION + 30)) perfdhcp -4 -l 198.18.0.2 -r "$2" -R 50000 -p "$DURATION" 198.18.0.1 2>&1 || true)
  cpu1=$(cpu_seconds "$SRV_PID")
  if [ "$1" = etcd ]; then e1=$(cpu_seconds "${ETCD_PIDS[@]}"); m1=$(etcd_metrics); fi
  stop_server
  [ "$1" = etcd ] && stop_etcd
  echo "$out" | awk -v d="$DURATION" -v cpu="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" \
      -v store="$1" -v e0="$e0" -v e1="$e1" -v m0="$m0" -v m1="$m1" '
    /sent packets:/ { n++; sent[n] = $3 } /received packets:/ { recv[n] = $3 } /avg delay:/ { delay[n] = $3 }
    END { if (n < 2 || sent[1] == 0 || recv[2] == 0) { print "0 100 - - - - - - -"; exit }
          k = recv[2] / 1000
          printf "%.0f %.3f %.3f %.2f", recv[2] / d, 100 * (1 - recv[2] / sent[1]), cpu / k, delay[2]
          if (store != "etcd") { print " - - - - -"; exit }
          split(m0, a, " "); split(m1, b, " ")
          f = b[3] - a[3]
          printf " %.3f %.0f %.1f %.1f %.2f\n", (e1 - e0) / k, (b[1] - a[1]) / k, (b[2] - a[2]) / k, f / k,
                 (f > 0 ? 1000 * (b[4] - a[4]) / f : 0) }'
}

dora_part() {
  printf '%-6s | %9s %7s %7s %7s | %9s %7s %7s %8s %7s\n' rate redb/s drop% cpu/1k ack_ms etcd/s drop% cpu/1k etcd/1k ack_ms
  printf '%-6s | %9s %7s %7s %7s | %9s %7s %7s %8s %7s\n' "" "" "" "" "" "" "" "prov." "members" ""
  local rate ra rd rc rl ea ed ec el ecc rg tx fy fm best_r=0 best_e=0 cpu_r=- cpu_e=- cpu_ee=-
  : > "$W/etcd-detail.txt"
  for rate in $RATES; do
    # Not in a subshell: the trap must know the PIDs a trial started.
    trial redb "$rate" > "$W/trial"; read -r ra rd rc rl _ _ _ _ _ < "$W/trial"
    trial etcd "$rate" > "$W/trial"; read -r ea ed ec el ecc rg tx fy fm < "$W/trial"
    printf '%-6s | %9s %7s %7s %7s | %9s %7s %7s %8s %7s\n' "$rate" "$ra" "$rd" "$rc" "$rl" "$ea" "$ed" "$ec" "$ecc" "$el"
    printf '%-6s %10s %8s %11s %9s\n' "$rate" "$rg" "$tx" "$fy" "$fm" >> "$W/etcd-detail.txt"
    # Sustained: the highest achieved rate among trials below 1 % drop.
    if awk -v d="$rd" -v a="$ra" -v b="$best_r" 'BEGIN { exit !(d < 1 && a > b) }'; then best_r=$ra; cpu_r=$rc; fi
    if awk -v d="$ed" -v a="$ea" -v b="$best_e" 'BEGIN { exit !(d < 1 && a > b) }'; then best_e=$ea; cpu_e=$ec; cpu_ee=$ecc; fi
  done
  echo
  echo "etcd per 1,000 DORAs (members summed):"
  printf '%-6s %10s %8s %11s %9s\n' rate Range Txn WAL-fsyncs fsync_ms
  cat "$W/etcd-detail.txt"
  echo "$best_r $cpu_r $best_e $cpu_e $cpu_ee" > "$W/dora-summary"
}

# Runs `lab storm` (extra arguments: $2...) with --json into $W/$1.json, sampling the CPU of
# its provisioner and etcd children every 0.1 s; writes "provisioners_cpu etcd_cpu" (whole run)
# to $W/$1.cpu.
storm_run() {
  local name=$1 rc=0 p comm v
  shift
  declare -A last=() kind=()
  # shellcheck disable=SC2086
  "$LAB" storm --machines "$MACHINES" --uki-size 1MiB --work "$W/storm-$name" --json "$@" $STORM_ARGS \
    > "$W/$name.json" 2> "$W/$name.err" &
  LAB_PID=$!
  # Children are looked up once a second (pgrep); readings use builtins only, so a loaded
  # machine does not stretch the 0.1 s interval.
  local hz st f kids="" n=0
  hz=$(getconf CLK_TCK)
  while kill -0 "$LAB_PID" 2>/dev/null; do
    [ $((n++ % 10)) -eq 0 ] && kids=$(pgrep -P "$LAB_PID" || true)
    for p in $kids; do
      read -r comm 2>/dev/null < "/proc/$p/comm" || continue
      case $comm in provisioner|etcd) ;; *) continue ;; esac
      read -r st 2>/dev/null < "/proc/$p/stat" || continue
      read -r -a f <<< "${st##*) }"
      # utime + stime in ticks; a process that has just gone keeps its last reading.
      v=$((f[11] + f[12]))
      [ "$v" -ge "${last[$p]:-0}" ] && { kind[$p]=$comm; last[$p]=$v; }
    done
    sleep 0.1
  done
  wait "$LAB_PID" || rc=$?
  LAB_PID=""
  [ "$rc" -eq 0 ] || { echo "lab storm ($name) exited $rc:" >&2; tail -n 5 "$W/$name.err" >&2; }
  local prov=0 etcd=0
  for p in "${!kind[@]}"; do
    if [ "${kind[$p]}" = etcd ]; then etcd=$((etcd + last[$p])); else prov=$((prov + last[$p])); fi
  done
  awk -v p="$prov" -v e="$etcd" -v hz="$hz" 'BEGIN { printf "%.2f %.2f\n", p / hz, e / hz }' > "$W/$name.cpu"
}

echo "bench/ha.sh: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; rates $RATES, ${DURATION} s trials, storm $MACHINES x 1 MiB"
if [ "${SKIP_DORA:-0}" != 1 ]; then
  echo "== DORA/s: one provisioner on redb vs one on three etcd members (etcd on CPU $ETCD_CPUS)"
  dora_part
  echo
fi
if [ "${SKIP_STORM:-0}" != 1 ]; then
  echo "== storm: lab storm --machines $MACHINES --uki-size 1MiB (redb), then with --ha (etcd)" >&2
  storm_run redb
  storm_run etcd --ha
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

python3 - "$W" <<'PY'
import json, os, sys
w = sys.argv[1]
def load(p):
    try:
        return json.load(open(os.path.join(w, p)))
    except Exception:
        return None
def words(p):
    try:
        return open(os.path.join(w, p)).read().split()
    except Exception:
        return None
def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None
def ratio(e, r):
    e, r = num(e), num(r)
    return f"{e / r:.2f}x" if e is not None and r else "n/a"
def fmt(x, spec):
    x = num(x)
    return "-" if x is None else format(x, spec)
rows = []
d = words("dora-summary")
if d:
    br, cr, be, ce, cee = d
    rows += [
        ("sustained DORA/s (< 1 % drop)", fmt(br, ",.0f"), fmt(be, ",.0f"), ratio(be, br)),
        ("  provisioner CPU-s / 1k DORA", fmt(cr, ".3f"), fmt(ce, ".3f"), ratio(ce, cr)),
        ("  etcd CPU-s / 1k DORA (3 members)", "-", fmt(cee, ".3f"), ""),
        ("  provisioner + etcd CPU-s / 1k", fmt(cr, ".3f"),
         fmt((num(ce) or 0) + (num(cee) or 0) if num(ce) is not None else None, ".3f"),
         ratio((num(ce) or 0) + (num(cee) or 0), cr) if num(ce) is not None else "n/a"),
    ]
r, e = load("redb.json"), load("etcd.json")
rc, ec = words("redb.cpu"), words("etcd.cpu")
def phase(rep, name, key):
    if not rep:
        return None
    return next((p[key] for p in rep["phases"] if p["phase"] == name), None)
if r or e:
    g = lambda rep, f: f(rep) if rep else None
    rows += [
        ("storm machines registered", g(r, lambda x: f"{x['registered']}/{x['machines']}") or "-",
         g(e, lambda x: f"{x['registered']}/{x['machines']}") or "-", ""),
        ("storm wall s", fmt(g(r, lambda x: x["wall_seconds"]), ".1f"), fmt(g(e, lambda x: x["wall_seconds"]), ".1f"),
         ratio(g(e, lambda x: x["wall_seconds"]), g(r, lambda x: x["wall_seconds"]))),
    ]
    for ph in ("dhcp", "register"):
        for k in ("p50_ms", "p99_ms"):
            a, b = phase(r, ph, k), phase(e, ph, k)
            rows.append((f"  {ph} {k[:3]} ms", fmt(a, ".0f"), fmt(b, ".0f"), ratio(b, a)))
    a, b = g(r, lambda x: x["server"]["cpu_seconds"]), g(e, lambda x: x["server"]["cpu_seconds"])
    rows.append(("  provisioner(s) CPU-s, storm", fmt(a, ".1f"), fmt(b, ".1f") + (" (2)" if e else ""), ratio(b, a)))
    if rc and ec:
        rows.append(("  provisioner(s) CPU-s, whole run", fmt(rc[0], ".1f"), fmt(ec[0], ".1f"), ratio(ec[0], rc[0])))
        rows.append(("  etcd CPU-s, whole run (3 members)", "-", fmt(ec[1], ".1f"), ""))
    if e and e.get("ha"):
        h = e["ha"]
        rows.append(("  --ha: 2-MAC addrs/events lost/SSE ok", "",
                     f"{h['addresses_acked_to_two_macs']} / {h['acknowledged_events_missing']} / {h['sse_matches_history']}", ""))
print(f"{'':<38} {'redb':>14} {'etcd (3 members)':>18} {'etcd/redb':>10}")
for name, a, b, q in rows:
    print(f"{name:<38} {a:>14} {b:>18} {q:>10}")
PY
