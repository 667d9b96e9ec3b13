#!/usr/bin/env python3
"""Prints the packet count of an nfacct object in the current network namespace, or "absent" (exit 1).

    nfacct-get.py NAME

Reads the object the way `nfacct get NAME` does (NFNL_MSG_ACCT_GET); the nfacct tool is not always installed.
"""
import socket
import struct
import sys

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ACCT = 7
NFNL_MSG_ACCT_GET = 1
NFACCT_NAME, NFACCT_PKTS = 1, 2
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4


def main(name: str) -> int:
    raw = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(raw), NFACCT_NAME) + raw
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0) + attr
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_ACCT << 8) | NFNL_MSG_ACCT_GET,
                         NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.settimeout(5)
    s.bind((0, 0))
    s.send(header + body)
    for _ in range(4):
        data = s.recv(65536)
        offset = 0
        while offset + 16 <= len(data):
            length, mtype = struct.unpack_from("=IH", data, offset)
            if mtype == NLMSG_ERROR:
                error = struct.unpack_from("=i", data, offset + 16)[0]
                if error != 0:
                    print("absent")
                    return 1
                return 0
            # an NFNL_MSG_ACCT_NEW answer: nfgenmsg, then attributes
            a = offset + 20
            while a + 4 <= offset + length:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x7FFF == NFACCT_PKTS:
                    print(struct.unpack_from(">Q", data, a + 4)[0])
                a += (alen + 3) & ~3
            offset += (length + 3) & ~3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
