#!/usr/bin/env bash
# A boot storm against the provisioner and against the reference stack (dnsmasq for DHCP and
# TFTP, nginx for the script, UKI, config and a minimal register endpoint), one after the other
# in one run, same machines, same loader, same UKI, same link; prints both reports and the ratios.
#
#   sudo bench/storm.sh                                   # 1,000 machines, 64 MiB UKI, full DHCP
#   sudo bench/storm.sh --machines 10000 --uki-size 1MiB --dhcp relayed
#
# Arguments are passed to `lab storm` for both runs (see `lab storm --help`). Release builds.
# dnsmasq and nginx come from Debian; when missing they are installed with apt-get (their
# services are not started: Debian's policy-rc.d must deny it, else install them yourself).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "bench/storm.sh: run as root (network namespaces)" >&2; exit 1; }
missing=()
for t in dnsmasq nginx nft; do command -v "$t" >/dev/null || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sed 's/^nft$/nftables/' | tr '\n' ' ')
  rc=0
  if [ -x /usr/sbin/policy-rc.d ]; then /usr/sbin/policy-rc.d >/dev/null 2>&1 || rc=$?; fi
  if [ "$rc" -eq 101 ]; then
    echo "bench/storm.sh: installing $pkgs from Debian" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >&2
  else
    echo "bench/storm.sh: missing $pkgs; install them (apt-get install $pkgs) and stop their services" >&2
    exit 1
  fi
fi
for t in dnsmasq nginx; do command -v "$t" >/dev/null || { echo "bench/storm.sh: $t still missing" >&2; exit 1; }; done

args=("$@")
printf '%s\n' "${args[@]}" | grep -qx -- '--machines' || args=(--machines 1000 "${args[@]}")

cargo build --release -q -p provisioner -p lab
LAB=$PWD/target/release/lab
export PROVISIONER_BIN=$PWD/target/release/provisioner
W=$(mktemp -d /tmp/storm-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT

echo "== provisioner" >&2
"$LAB" storm "${args[@]}" --server provisioner --work "$W/ours" --json > "$W/ours.json" || true
echo "== dnsmasq + nginx" >&2
"$LAB" storm "${args[@]}" --server reference --work "$W/ref" --json > "$W/ref.json" || true

python3 - "$W/ours.json" "$W/ref.json" <<'PY'
import json, sys
def load(p):
    try:
        return json.load(open(p))
    except Exception as e:
        return None
ours, ref = load(sys.argv[1]), load(sys.argv[2])
def table(r):
    if r is None:
        print("  (no report: the run failed, see above)")
        return
    print(f"  {r['machines']} machines, {r['mode']} DHCP, UKI {r['uki_bytes']/1048576:.0f} MiB, server {r['server']['name']}")
    print(f"  {'phase':<10} {'done':>6} {'p50 ms':>10} {'p99 ms':>10} {'max ms':>10}  failures")
    for p in r["phases"]:
        f = "; ".join(f"{v}x {k}" for k, v in p["failures"].items()) or "0"
        print(f"  {p['phase']:<10} {p['done']:>6} {p['p50_ms']:>10.1f} {p['p99_ms']:>10.1f} {p['max_ms']:>10.1f}  {f}")
    print(f"  registered {r['registered']}/{r['machines']}, failures {r['failures']}")
    print(f"  wall {r['wall_seconds']:.2f} s; server CPU {r['server']['cpu_seconds']:.2f} s; peak RSS {r['server']['peak_rss_mib']:.1f} MiB")
    print(f"  moved {r['bytes']/1048576:.0f} MiB; link {r['link_bytes_per_second']/1048576:.0f} MiB/s; bound {r['bandwidth_bound_seconds']:.2f} s; wall/bound {r['ratio_to_bound']:.2f}")
print("provisioner:"); table(ours)
print("dnsmasq + nginx:"); table(ref)
if ours and ref:
    def ratio(a, b):
        return f"{a / b:.2f}" if b else "n/a"
    print("ratios (reference / provisioner; > 1: the provisioner is better):")
    print(f"  wall          {ratio(ref['wall_seconds'], ours['wall_seconds'])}")
    print(f"  server CPU    {ratio(ref['server']['cpu_seconds'], ours['server']['cpu_seconds'])}")
    print(f"  failures      provisioner {ours['failures']}, reference {ref['failures']}")
    for po, pr in zip(ours["phases"], ref["phases"]):
        print(f"  {po['phase']:<10} p99 {ratio(pr['p99_ms'], po['p99_ms'])}")
PY
