#!/usr/bin/env python3
"""Prints every DHCPv6 message in a pcap (Ethernet link type) option by option, in hex.

Usage: dhcp6-dump.py FILE.pcap
One block per message: time, direction, message type and transaction id, then one line per
option: code, length, hex of the value (IA_NA and IA_ADDR values are split into their options).
"""
import struct
import sys

TYPES = {1: "Solicit", 2: "Advertise", 3: "Request", 4: "Confirm", 5: "Renew", 6: "Rebind",
         7: "Reply", 8: "Release", 9: "Decline", 11: "Information-request"}
NAMES = {1: "CLIENTID", 2: "SERVERID", 3: "IA_NA", 5: "IAADDR", 6: "ORO", 7: "PREFERENCE", 8: "ELAPSED_TIME",
         13: "STATUS_CODE", 16: "VENDOR_CLASS", 23: "DNS_SERVERS", 59: "BOOTFILE_URL",
         60: "BOOTFILE_PARAM", 61: "CLIENT_ARCH_TYPE", 62: "NII"}


def options(buf, indent):
    i = 0
    while i + 4 <= len(buf):
        code, length = struct.unpack("!HH", buf[i:i + 4])
        val = buf[i + 4:i + 4 + length]
        name = NAMES.get(code, "?")
        if code == 3:  # IA_NA: IAID, T1, T2, options
            iaid, t1, t2 = struct.unpack("!III", val[:12])
            print(f"{indent}{code:>3} {name} len={length} iaid={val[:4].hex()} T1={t1} T2={t2}")
            options(val[12:], indent + "    ")
        elif code == 5:  # IAADDR: address, preferred, valid, options
            pl, vl = struct.unpack("!II", val[16:24])
            print(f"{indent}{code:>3} {name} len={length} addr={val[:16].hex()} pref={pl} valid={vl}")
            options(val[24:], indent + "    ")
        else:
            text = ""
            if code in (16, 59, 13):
                text = "  " + repr(bytes(c if 32 <= c < 127 else 46 for c in val).decode())
            print(f"{indent}{code:>3} {name} len={length} {val.hex()}{text}")
        i += 4 + length


def main(path):
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    off, t0 = 24, None
    while off + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        t = sec + usec / 1e6
        t0 = t if t0 is None else t0
        if len(pkt) < 14 + 40 + 8 or struct.unpack("!H", pkt[12:14])[0] != 0x86DD:
            continue
        ip6 = pkt[14:54]
        if ip6[6] != 17:
            continue
        sport, dport = struct.unpack("!HH", pkt[54:58])
        if {sport, dport} & {546, 547} == set():
            continue
        msg = pkt[62:]
        src = ip6[8:24].hex()
        dst = ip6[24:40].hex()
        kind = TYPES.get(msg[0], str(msg[0]))
        print(f"+{t - t0:7.3f}s {kind} xid={msg[1:4].hex()} {src} -> {dst} ({len(msg)} bytes)")
        options(msg[4:], "    ")


if __name__ == "__main__":
    main(sys.argv[1])
