#!/usr/bin/env bash
# Experiment: Debian's OVMF booting "UEFI HTTPv6" against Kea's DHCPv6 server (the reference),
# in a throwaway network namespace (bridge br0 at 2001:2::1/64, tap0 for the VM; no route out).
# Captures the link with tcpdump and keeps the serial console. Findings: lab/IPV6-HTTP-BOOT.md.
#
# Usage (root): lab/experiments/ovmf-http6.sh OUTDIR [VARIANT]
#   VARIANT selects the Advertise contents (what OVMF is offered):
#     rfc      option 16 as RFC 8415: enterprise 343, one vendor-class-data item "HTTPClient" (default)
#     bare     option 16 = the 10 bytes "HTTPClient" (no enterprise number, no length)
#     none     no option 16
#   PREF=255 (environment) adds option 7 (preference 255): OVMF then requests at once instead of
#   collecting Advertises for its first Solicit retransmission time (4 s).
#   DHCP6=dnsmasq (environment): dnsmasq is the DHCPv6 server instead of Kea, with the same option
#   bytes (for the comparison); default DHCP6=kea. DNSMASQ_VC=TEXT: dnsmasq's option 16 argument as given.
#   RA=1 (environment) adds router advertisements for 2001:2::/64 (dnsmasq, ra-only; M flag with RA_M=1).
# Everything below is derived from these values; nothing outside the namespace is touched.
set -euo pipefail

OUT=${1:?outdir}; VARIANT=${2:-rfc}
PREFIX=2001:2::          # RFC 5180 benchmarking range, /64 on the link
SERVER=2001:2::1
POOL_FROM=2001:2::1000; POOL_TO=2001:2::1fff
PORT=8080
FILE=boot.efi
EFI_SRC=${EFI_SRC:-/usr/lib/ipxe/snponly.efi}
MAC=52:54:00:1a:b0:61
TIMEOUT=${TIMEOUT:-150}
ENTERPRISE=343

mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
NS=labv6-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
case $VARIANT in
  rfc)  VC=$(printf '%08x%04x' $ENTERPRISE 10)$(hex HTTPClient) ;;
  bare) VC=$(hex HTTPClient) ;;
  none) VC= ;;
  *) echo "unknown variant $VARIANT" >&2; exit 2 ;;
esac

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge
ip -n "$NS" link set br0 type bridge stp_state 0 forward_delay 0
ip -n "$NS" addr add "$SERVER/64" dev br0 nodad
ip -n "$NS" tuntap add dev tap0 mode tap
ip -n "$NS" link set tap0 master br0
ip -n "$NS" link set tap0 up
ip -n "$NS" link set br0 up

mkdir -p "$OUT/www"; cp "$EFI_SRC" "$OUT/www/$FILE"
URL="http://[$SERVER]:$PORT/$FILE"
VCOPT=""
[ -n "${PREF:-}" ] && VCOPT+=", { \"name\": \"preference\", \"data\": \"$PREF\", \"always-send\": true }"
[ -n "$VC" ] && VCOPT+=", { \"code\": 16, \"space\": \"dhcp6\", \"csv-format\": false, \"data\": \"$VC\", \"always-send\": true }"
cat > "$OUT/kea-dhcp6.json" <<JSON
{ "Dhcp6": {
  "interfaces-config": { "interfaces": [ "br0" ], "service-sockets-max-retries": 200, "service-sockets-retry-wait-time": 500 },
  "lease-database": { "type": "memfile", "persist": false },
  "server-id": { "type": "LL", "persist": false },
  "preferred-lifetime": 3000, "valid-lifetime": 4000, "renew-timer": 1000, "rebind-timer": 2000,
  "subnet6": [ {
    "id": 1, "subnet": "$PREFIX/64", "interface": "br0",
    "pools": [ { "pool": "$POOL_FROM-$POOL_TO" } ],
    "option-data": [ { "name": "bootfile-url", "data": "$URL", "always-send": true }$VCOPT ]
  } ],
  "loggers": [ { "name": "kea-dhcp6", "severity": "DEBUG", "debuglevel": 55,
                 "output_options": [ { "output": "$OUT/kea.log" } ] } ]
} }
JSON
ip netns exec "$NS" kea-dhcp6 -t "$OUT/kea-dhcp6.json" > "$OUT/kea-check.log" 2>&1

ip netns exec "$NS" tcpdump -i br0 -U -s 0 -w "$OUT/link.pcap" >"$OUT/tcpdump.log" 2>&1 & pids+=($!)
export KEA_PIDFILE_DIR=$OUT KEA_LOCKFILE_DIR=$OUT
DNSMASQ6=()
if [ "${DHCP6:-kea}" = kea ]; then
  ip netns exec "$NS" kea-dhcp6 -c "$OUT/kea-dhcp6.json" >"$OUT/kea.out" 2>&1 & pids+=($!)
else
  colons() { echo "$1" | sed 's/../&:/g; s/:$//'; }
  DNSMASQ6=(--dhcp-range=$POOL_FROM,$POOL_TO,64,1h "--dhcp-option=option6:bootfile-url,$URL")
  [ -n "$VC" ] && DNSMASQ6+=("--dhcp-option-force=option6:16,${DNSMASQ_VC:-$(colons "$VC")}")
  [ -n "${PREF:-}" ] && DNSMASQ6+=("--dhcp-option-force=option6:7,$(printf '%02x' "$PREF")")
fi
ip netns exec "$NS" python3 -m http.server --bind "$SERVER" --directory "$OUT/www" "$PORT" >"$OUT/http.log" 2>&1 & pids+=($!)
# DHCPv4 for OVMF's "UEFI HTTPv4" entry, which runs before HTTPv6 (the fw_cfg switches only govern
# PXE): an HTTP offer whose URL nothing listens on, so it fails at once. Without DHCPv4 it retries
# Discover for ~60 s; a plain offer (no option 60 "HTTPClient") is not selected and costs the same.
ip -n "$NS" addr add 198.18.0.1/24 dev br0
RA_ARGS=()
if [ "${RA:-0}" = 1 ]; then   # router advertisements for the /64 (same dnsmasq, no DHCPv6 from it)
  MODE=ra-only; [ "${RA_M:-0}" = 1 ] && MODE=ra-stateless
  RA_ARGS=(--enable-ra "--dhcp-range=$PREFIX,$MODE,64")
fi
ip netns exec "$NS" dnsmasq -k --conf-file=/dev/null --port=0 --interface=br0 --bind-interfaces --no-ping \
  --dhcp-range=198.18.0.100,198.18.0.199,1h \
  --dhcp-option-force=60,HTTPClient --dhcp-option-force=67,http://198.18.0.1:9/no-ipv4-boot-here "${RA_ARGS[@]}" "${DNSMASQ6[@]}" --log-dhcp --pid-file="$OUT/dhcp4.pid" >"$OUT/dhcp4.log" 2>&1 & pids+=($!)
sleep 1   # the servers bind; the VM takes seconds to reach its network stack anyway

cp /usr/share/OVMF/OVMF_VARS_4M.fd "$OUT/vars.fd"
: > "$OUT/disk.img"; truncate -s 64M "$OUT/disk.img"
start=$(date +%s.%N)
ip netns exec "$NS" nice -n 15 timeout --signal=KILL "$TIMEOUT" qemu-system-x86_64 \
  -accel tcg -M q35 -m 256 -smp 1 -nographic -no-reboot -serial stdio -monitor none \
  -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
  -drive if=pflash,format=raw,file="$OUT/vars.fd" \
  -fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n \
  -fw_cfg name=opt/org.tianocore/IPv6PXESupport,string=n \
  -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
  -device virtio-net-pci,netdev=n0,mac=$MAC,bootindex=1,romfile= \
  -drive file="$OUT/disk.img",format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0,bootindex=2 \
  > "$OUT/serial.log" 2>"$OUT/qemu.err" || true
echo "qemu ran $(echo "$(date +%s.%N) - $start" | bc) s" | tee "$OUT/summary.txt"
