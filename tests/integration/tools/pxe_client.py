#!/usr/bin/env python3
"""A PXE firmware stand-in for tests: broadcasts a DHCPDISCOVER with the options UEFI PXE sends
(60 PXEClient:Arch:00007, 93 = 7, 97 GUID), prints every OFFER received within the wait as one JSON
line each, then (with --boot-server IP) sends a DHCPREQUEST to IP:4011 and prints the ACK.
Run inside a network namespace: it binds 0.0.0.0:68 on --iface."""
import argparse, json, socket, struct, time

p = argparse.ArgumentParser()
p.add_argument("--iface", required=True)
p.add_argument("--mac", required=True)
p.add_argument("--wait", type=float, default=3.0)
p.add_argument("--boot-server")
a = p.parse_args()
mac = bytes.fromhex(a.mac.replace(":", ""))
XID = 0x1234ABCD

def packet(msg_type, extra=b""):
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, XID, 0, 0x8000, b"\0" * 4, b"\0" * 4,
                      b"\0" * 4, b"\0" * 4, mac + b"\0" * 10, b"\0" * 64, b"\0" * 128)
    vc = b"PXEClient:Arch:00007:UNDI:003016"
    opts = bytes([53, 1, msg_type]) + bytes([60, len(vc)]) + vc + bytes([93, 2, 0, 7])
    opts += bytes([97, 17, 0]) + bytes(range(16)) + extra + bytes([255])
    return hdr + b"\x63\x82\x53\x63" + opts

def parse(data, src):
    f = struct.unpack("!BBBBIHH4s4s4s4s16s64s128s", data[:236])
    opts, i, o = {}, 240, data
    while i < len(o) and o[i] != 255:
        if o[i] == 0:
            i += 1
            continue
        code, ln = o[i], o[i + 1]
        opts[code] = o[i + 2:i + 2 + ln]
        i += 2 + ln
    return {"from": src[0], "port": src[1], "type": opts.get(53, b"\0")[0], "yiaddr": socket.inet_ntoa(f[8]),
            "siaddr": socket.inet_ntoa(f[9]), "file": f[13].rstrip(b"\0").decode(errors="replace"),
            "opt60": opts.get(60, b"").decode(errors="replace"), "opt43": list(opts.get(43, b"")),
            "opt54": socket.inet_ntoa(opts[54]) if 54 in opts else None,
            "opt67": opts.get(67, b"").decode(errors="replace"), "xid": f[4]}

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, 25, a.iface.encode())  # SO_BINDTODEVICE
s.bind(("0.0.0.0", 68))
s.sendto(packet(1), ("255.255.255.255", 67))
end = time.time() + a.wait
while time.time() < end:
    s.settimeout(max(0.05, end - time.time()))
    try:
        data, src = s.recvfrom(2048)
    except socket.timeout:
        break
    r = parse(data, src)
    if r["xid"] == XID and r["type"] == 2:
        print(json.dumps(r), flush=True)
if a.boot_server:
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b.setsockopt(socket.SOL_SOCKET, 25, a.iface.encode())
    b.settimeout(3)
    b.sendto(packet(3), (a.boot_server, 4011))
    data, src = b.recvfrom(2048)
    print(json.dumps(parse(data, src)), flush=True)
