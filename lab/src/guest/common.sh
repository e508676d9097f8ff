# Shared by the installer and the installed OS (sourced by their /init).
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run /var/log
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "LAB-$ROLE: $* (uptime $(cut -d' ' -f1 /proc/uptime)s)"; }
# Debian builds virtio as modules: load them in dependency order.
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk efivarfs; do
  insmod /lib/modules/$m.ko 2>/dev/null || say "insmod $m failed"
done
for a in $(cat /proc/cmdline); do
  case "$a" in
    config_url=*) CONFIG_URL=${a#config_url=} ;;
    provisioner.url=*) URL=${a#provisioner.url=} ;;
  esac
done
# Kairos-style templated config_url: fill in this machine's SMBIOS UUID.
case "$CONFIG_URL" in
  *'{{.Values.product.uuid}}'*)
    UUID=$(tr 'A-Z' 'a-z' < /sys/class/dmi/id/product_uuid 2>/dev/null)
    CONFIG_URL=$(echo "$CONFIG_URL" | sed "s/{{.Values.product.uuid}}/$UUID/") ;;
esac
IF=eth0
for i in $(seq 50); do [ -e /sys/class/net/$IF ] && break; sleep 0.1; done
ip link set lo up
ip link set $IF up
MAC=$(cat /sys/class/net/$IF/address)
say "mac $MAC, DHCP"
udhcpc -i $IF -s /udhcpc.script -q -f -n -t 10 -T 2 || say "DHCP FAILED"
[ -f /tmp/dhcp.env ] && . /tmp/dhcp.env
say "address $ip"
# A request that fails before any answer (ARP or SYN lost on a lossy link: "No route to host")
# is tried again, 5 times 2 s apart, as an installer agent retries; the server's endpoints are
# idempotent (a repeated progress report or registration changes nothing).
retry() { for t in 1 2 3 4 5; do "$@" && return 0; sleep 2; done; return 1; }
post() { # URL JSON
  for t in 1 2 3 4 5; do
    wget -q -O /tmp/post.out --header "Authorization: Bearer $TOKEN" \
      --header "Content-Type: application/json" --post-data "$2" "$1" 2>/tmp/post.err && return 0
    # A 4xx answer is final (trying again changes nothing); no answer or a 5xx is tried again.
    grep -q "server returned error: HTTP/1.. 4" /tmp/post.err && { cat /tmp/post.err; return 1; }
    sleep 2
  done
  return 1
}
halt_now() { sync; say "powering off"; poweroff -f; sleep 5; }
