#!/usr/bin/env bash
# DHCPv6 Solicit-Advertise-Request-Reply (SARR) throughput of provisioner ([dhcp6] stateful,
# every binding durable in redb before its Reply) against ISC Kea's kea-dhcp6 (memfile,
# persist=true: every lease appended to a CSV file), same perfdhcp -6 load, same run.
#
#   sudo bench/dhcp6.sh                             # rates 1000..8000, 10 s trials (< 5 min)
#   RATES="2000 4000" DURATION=5 bench/dhcp6.sh     # quick look
#   RELAY=1 bench/dhcp6.sh                          # perfdhcp as a relay (-A 1, Relay-forw)
#
# Two namespaces with random names joined by a veth pair (2001:2::1/64 server, 2001:2::2/64
# client, DAD off; nothing connects to the host network). perfdhcp -6 multicasts to ff02::1:2
# from its link-local address (with RELAY=1 it wraps each message in Relay-forw from
# [2001:2::2]:547), -R 50000 simulated clients (DUID-LLT each). Each server is started fresh for
# every trial with an empty lease store, pinned to CPU 0; perfdhcp runs on CPU 1.
# achieved = Replies received / duration; drop = 1 - Replies / Solicits sent (perfdhcp waits 1 s
# after the last Solicit for answers in flight). A rate is sustained when drop < 1 %. cpu/1k:
# the server's CPU-seconds (utime + stime, /proc/PID/stat) during the trial per 1,000 SARRs.
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-"1000 2000 4000 6000 8000"}
DURATION=${DURATION:-10}
RELAY=${RELAY:-0}
[ "$(id -u)" -eq 0 ] || { echo "bench/dhcp6.sh: run as root" >&2; exit 1; }
scripts/install-test-deps # kea-admin (perfdhcp) and kea-dhcp6-server are in its list
cargo build --release -q -p provisioner
BIN=$PWD/target/release/provisioner

SUF=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
S=d6s-$SUF; C=d6c-$SUF
W=$(mktemp -d)
SRV_PID=""
cleanup() { [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null; ip netns del "$S" 2>/dev/null; ip netns del "$C" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT INT TERM
ip netns add "$S"; ip netns add "$C"
for n in "$S" "$C"; do
  ip -n "$n" link set lo up
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
done
ip -n "$S" link add vs type veth peer name vc netns "$C"
ip -n "$S" addr add 2001:2::1/64 dev vs nodad; ip -n "$S" link set vs up
ip -n "$C" addr add 2001:2::2/64 dev vc nodad; ip -n "$C" link set vc up

cat > "$W/ours.toml" <<TOML
[dhcp6]
mode = "stateful"
interface = "vs"
server_address = "2001:2::1"
range = "2001:2::1:0:0-2001:2::1:ffff:ffff"
valid_lifetime = "1h"
TOML
cat > "$W/kea.json" <<JSON
{ "Dhcp6": {
  "interfaces-config": { "interfaces": [ "vs" ] },
  "server-id": { "type": "LL", "persist": false },
  "lease-database": { "type": "memfile", "persist": true, "lfc-interval": 0, "name": "$W/kea/leases6.csv" },
  "preferred-lifetime": 1800, "valid-lifetime": 3600, "renew-timer": 900, "rebind-timer": 1400,
  "subnet6": [ { "id": 1, "subnet": "2001:2::/64", "interface": "vs",
                 "pools": [ { "pool": "2001:2::1:0:0 - 2001:2::1:ffff:ffff" } ] } ],
  "loggers": [ { "name": "kea-dhcp6", "severity": "WARN", "output_options": [ { "output": "$W/kea/kea.log" } ] } ]
} }
JSON

start_server() {
  rm -rf "$W/data" "$W/kea"; mkdir -p "$W/kea"
  case $1 in
    ours) ip netns exec "$S" taskset -c 0 "$BIN" serve --config "$W/ours.toml" --listen 127.0.0.1:0 --no-tftp --data-dir "$W/data" 2>"$W/ours.log" & ;;
    kea) KEA_PIDFILE_DIR=$W/kea KEA_LOCKFILE_DIR=$W/kea ip netns exec "$S" taskset -c 0 kea-dhcp6 -c "$W/kea.json" >"$W/kea/out.log" 2>&1 & ;;
  esac
  SRV_PID=$!
  for _ in $(seq 100); do ip netns exec "$S" ss -uln | grep -q ':547 ' && return 0; sleep 0.1; done
  echo "$1 did not start" >&2; cat "$W"/*.log "$W"/kea/*.log 2>/dev/null >&2; exit 1
}
stop_server() { kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; SRV_PID=""; }

# CPU-seconds the server process has used (utime + stime from /proc/PID/stat).
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$SRV_PID/stat"
}

# trial SERVER RATE -> "achieved drop_pct cpu_s_per_1000_SARR"
trial() {
  start_server "$1"
  local out cpu0 cpu1 relay=()
  [ "$RELAY" = 1 ] && relay=(-A 1)
  cpu0=$(cpu_seconds)
  out=$(ip netns exec "$C" taskset -c 1 timeout $((DURATION + 30)) perfdhcp -6 "${relay[@]}" -l vc -r "$2" -R 50000 -p "$DURATION" -W 1000000 2>&1 || true)
  cpu1=$(cpu_seconds)
  stop_server
  echo "$out" | awk -v d="$DURATION" -v cpu="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" '
    /sent packets:/ { n++; sent[n] = $3 } /received packets:/ { recv[n] = $3 }
    END { if (n < 2 || sent[1] == 0 || recv[2] == 0) { print "0 100 -"; exit }
          printf "%.0f %.3f %.3f\n", recv[2] / d, 100 * (1 - recv[2] / sent[1]), cpu / (recv[2] / 1000) }'
}

echo "perfdhcp -6$([ "$RELAY" = 1 ] && echo ' -A 1 (relayed)'), ${DURATION} s per trial, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %14s %9s %12s %14s %9s %12s\n' rate ours_SARR/s drop% ours_cpu/1k kea_SARR/s drop% kea_cpu/1k
best_ours=0; best_kea=0
for rate in $RATES; do
  read -r oa od oc < <(trial ours "$rate")
  read -r ka kd kc < <(trial kea "$rate")
  printf '%-6s %14s %9s %12s %14s %9s %12s\n' "$rate" "$oa" "$od" "$oc" "$ka" "$kd" "$kc"
  awk -v d="$od" 'BEGIN { exit !(d < 1) }' && best_ours=$oa
  awk -v d="$kd" 'BEGIN { exit !(d < 1) }' && best_kea=$ka
done
echo
echo "sustained (< 1 % drop): provisioner $best_ours SARR/s, Kea $best_kea SARR/s"
awk -v o="$best_ours" -v k="$best_kea" 'BEGIN { if (k > 0) printf "ratio provisioner / Kea = %.2fx\n", o / k }'
echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
