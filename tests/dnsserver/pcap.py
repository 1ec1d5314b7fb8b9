"""A few lines of struct code reading DNS messages out of classic pcap files (UDP and TCP)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path


def dns_messages(path: Path) -> Iterator[bytes]:
    """Every DNS message (query or response) carried on port 53 in a pcap file."""
    data = path.read_bytes()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8 : off + 12])[0]
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        if linktype == 1:  # Ethernet
            ethertype = struct.unpack("!H", frame[12:14])[0]
            packet = frame[14:]
        elif linktype == 0:  # BSD loopback: 4-octet family
            family = struct.unpack(endian + "I", frame[:4])[0]
            ethertype = 0x0800 if family == 2 else 0x86DD
            packet = frame[4:]
        else:
            continue
        if ethertype == 0x0800 and packet:
            proto, header = packet[9], (packet[0] & 0x0F) * 4
        elif ethertype == 0x86DD and len(packet) >= 40:
            proto, header = packet[6], 40
        else:
            continue
        segment = packet[header:]
        if proto == 17 and len(segment) >= 8:
            ports = struct.unpack("!HH", segment[:4])
            if 53 in ports:
                yield segment[8:]
        elif proto == 6 and len(segment) >= 20:
            ports = struct.unpack("!HH", segment[:4])
            payload = segment[(segment[12] >> 4) * 4 :]
            if 53 in ports and len(payload) > 2:
                size = struct.unpack("!H", payload[:2])[0]
                if size == len(payload) - 2:
                    yield payload[2:]
