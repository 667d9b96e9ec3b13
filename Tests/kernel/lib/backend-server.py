#!/usr/bin/env python3
"""A pod's server for the traffic tests: every TCP connection, UDP datagram (and SCTP association, where the
kernel has SCTP sockets) is answered with "<pod-name> <source-address-it-saw>", then closed.

    backend-server.py NAME LIFETIME_SECONDS [--tcp PORT]... [--udp PORT]... [--sctp PORT]...

Listens on 0.0.0.0 and, where the namespace has IPv6, on [::]. Exits by itself after LIFETIME_SECONDS so a
test that dies without cleanup leaves nothing running for long.
"""
import selectors
import socket
import sys
import time


def source_of(address):
    host = address[0]
    return host[7:] if host.startswith("::ffff:") else host


def listeners(kind, port):
    """One socket per family that can bind; IPv6 sockets are v6-only so IPv4 peers show plain addresses."""
    made = []
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            if kind == "tcp":
                s = socket.socket(family, socket.SOCK_STREAM)
            elif kind == "sctp":
                s = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
            else:
                s = socket.socket(family, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
            if kind != "udp":
                s.listen(64)
            s.setblocking(False)
            made.append((kind, s))
        except OSError as error:
            print(f"{kind} {host} {port}: {error}", file=sys.stderr)
    return made


def main():
    name, lifetime = sys.argv[1], float(sys.argv[2])
    args = sys.argv[3:]
    selector = selectors.DefaultSelector()
    for i in range(0, len(args) - 1, 2):
        kind = args[i].lstrip("-")
        for entry in listeners(kind, int(args[i + 1])):
            selector.register(entry[1], selectors.EVENT_READ, entry[0])
    deadline = time.monotonic() + lifetime
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        for key, _ in selector.select(timeout=min(left, 1.0)):
            sock = key.fileobj
            try:
                if key.data == "udp":
                    _, peer = sock.recvfrom(2048)
                    sock.sendto(f"{name} {source_of(peer)}\n".encode(), peer)
                else:
                    conn, peer = sock.accept()
                    conn.settimeout(1.0)
                    conn.sendall(f"{name} {source_of(peer)}\n".encode())
                    conn.close()
            except OSError as error:
                print(f"{name}: {error}", file=sys.stderr)


if __name__ == "__main__":
    main()
