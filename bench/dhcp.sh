#!/usr/bin/env bash
# DHCPv4 DORA throughput of provisioner (full mode, leases durable before ACK) against ISC Kea
# (memfile, persist=true), same perfdhcp load, same run.
#
#   sudo bench/dhcp.sh                          # rates 2000..10000, 10 s trials
#   RATES="4000 8000" DURATION=5 bench/dhcp.sh  # quick look
#
# Two namespaces with random names joined by a veth pair (198.18.0.1/15 server, 198.18.0.2/15
# client; nothing connects to the host network). perfdhcp acts as a relay (giaddr = 198.18.0.2),
# -R 50000 simulated clients. Each server is started fresh for every trial, pinned to CPU 0;
# perfdhcp runs on CPU 1. achieved = ACKs received / duration; drop = 1 - ACKs / DISCOVERs sent.
# A rate is sustained when drop < 1 %. The ratio compares the highest sustained rates. cpu/1k:
# the server's CPU-seconds (utime + stime, /proc/PID/stat) during the trial per 1,000 DORAs.
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-"2000 4000 6000 8000 9000 10000"}
DURATION=${DURATION:-10}
[ "$(id -u)" -eq 0 ] || { echo "bench/dhcp.sh: run as root" >&2; exit 1; }
scripts/install-test-deps
dpkg-query -W -f='${Status}' kea-dhcp4-server 2>/dev/null | grep -q "install ok installed" \
  || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kea-dhcp4-server >/dev/null; }
cargo build --release -q -p provisioner
BIN=$PWD/target/release/provisioner

SUF=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
S=dbs-$SUF; C=dbc-$SUF
W=$(mktemp -d)
SRV_PID=""
cleanup() { [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null; ip netns del "$S" 2>/dev/null; ip netns del "$C" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT INT TERM
ip netns add "$S"; ip netns add "$C"
ip -n "$S" link set lo up; ip -n "$C" link set lo up
ip -n "$S" link add vs type veth peer name vc netns "$C"
ip -n "$S" addr add 198.18.0.1/15 dev vs; ip -n "$S" link set vs up
ip -n "$C" addr add 198.18.0.2/15 dev vc; ip -n "$C" link set vc up

cat > "$W/ours.toml" <<TOML
[dhcp]
mode = "full"
server_ip = "198.18.0.1"
[[dhcp.subnet]]
network = "198.18.0.0/15"
range = "198.18.1.0-198.19.255.254"
router = "198.18.0.1"
lease_time = "1h"
TOML
kea_config() {
  cat > "$W/kea.json" <<JSON
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "vs" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "lfc-interval": 0, "name": "$W/kea/leases4.csv" },
  "valid-lifetime": 3600, "renew-timer": 900, "rebind-timer": 1800, "authoritative": true,
  "subnet4": [ { "id": 1, "subnet": "198.18.0.0/15", "pools": [ { "pool": "198.18.1.0 - 198.19.255.254" } ],
                 "option-data": [ { "name": "routers", "data": "198.18.0.1" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "severity": "WARN", "output_options": [ { "output": "$W/kea/kea.log" } ] } ]
} }
JSON
}

start_server() {
  rm -rf "$W/data" "$W/kea"; mkdir -p "$W/kea"
  case $1 in
    ours) ip netns exec "$S" taskset -c 0 "$BIN" serve --config "$W/ours.toml" --listen 127.0.0.1:0 --no-tftp --data-dir "$W/data" 2>"$W/ours.log" & ;;
    kea) kea_config; KEA_PIDFILE_DIR=$W/kea KEA_LOCKFILE_DIR=$W/kea ip netns exec "$S" taskset -c 0 kea-dhcp4 -c "$W/kea.json" >"$W/kea/out.log" 2>&1 & ;;
  esac
  SRV_PID=$!
  for _ in $(seq 100); do ip netns exec "$S" ss -uln | grep -q ':67 ' && return 0; sleep 0.1; done
  echo "$1 did not start" >&2; cat "$W"/*.log "$W"/kea/*.log 2>/dev/null >&2; exit 1
}
stop_server() { kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; SRV_PID=""; }

# CPU-seconds the server process has used (utime + stime from /proc/PID/stat).
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$SRV_PID/stat"
}

# trial SERVER RATE -> "achieved drop_pct cpu_s_per_1000_DORA"
trial() {
  start_server "$1"
  local out cpu0 cpu1
  cpu0=$(cpu_seconds)
  out=$(ip netns exec "$C" taskset -c 1 timeout $((DURATION + 30)) perfdhcp -4 -l 198.18.0.2 -r "$2" -R 50000 -p "$DURATION" 198.18.0.1 2>&1 || true)
  cpu1=$(cpu_seconds)
  stop_server
  echo "$out" | awk -v d="$DURATION" -v cpu="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" '
    /sent packets:/ { n++; sent[n] = $3 } /received packets:/ { recv[n] = $3 }
    END { if (n < 2 || sent[1] == 0 || recv[2] == 0) { print "0 100 -"; exit }
          printf "%.0f %.3f %.3f\n", recv[2] / d, 100 * (1 - recv[2] / sent[1]), cpu / (recv[2] / 1000) }'
}

printf '%-6s %14s %9s %12s %14s %9s %12s\n' rate ours_DORA/s drop% ours_cpu/1k kea_DORA/s drop% kea_cpu/1k
best_ours=0; best_kea=0
for rate in $RATES; do
  read -r oa od oc < <(trial ours "$rate")
  read -r ka kd kc < <(trial kea "$rate")
  printf '%-6s %14s %9s %12s %14s %9s %12s\n' "$rate" "$oa" "$od" "$oc" "$ka" "$kd" "$kc"
  awk -v d="$od" 'BEGIN { exit !(d < 1) }' && best_ours=$oa
  awk -v d="$kd" 'BEGIN { exit !(d < 1) }' && best_kea=$ka
done
echo
echo "sustained (< 1 % drop): provisioner $best_ours DORA/s, Kea $best_kea DORA/s"
awk -v o="$best_ours" -v k="$best_kea" 'BEGIN { if (k > 0) printf "ratio provisioner / Kea = %.2fx (target >= 1.5x)\n", o / k }'
