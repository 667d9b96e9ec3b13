#!/usr/bin/env python3
"""Creates an nfacct accounting object (like `nfacct add NAME`) in the current network namespace.

The nfacct match refuses to load unless its object exists; the nfacct tool is not always installed.
"""
import socket
import struct
import sys

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ACCT = 7
NFNL_MSG_ACCT_NEW = 0
NFACCT_NAME = 1
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400


def main(name: str) -> int:
    raw = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(raw), NFACCT_NAME) + raw
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0) + attr
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_ACCT << 8) | NFNL_MSG_ACCT_NEW,
                         NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, 1, 0)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.bind((0, 0))
    s.send(header + body)
    reply = s.recv(4096)
    error = struct.unpack_from("=i", reply, 16)[0]
    if error != 0:
        print(f"nfacct-add {name}: error {-error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
