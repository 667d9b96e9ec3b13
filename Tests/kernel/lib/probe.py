#!/usr/bin/env python3
"""A client for the traffic tests: one line per attempt, the server's answer or what went wrong.

    probe.py tcp|udp|sctp HOST PORT [COUNT] [TIMEOUT_SECONDS]

Each attempt prints the answer ("<pod-name> <source-it-saw>"), or TIMEOUT, REFUSED, UNREACHABLE or
ERROR <text>, followed by the attempt's duration in milliseconds ("ms=12"). Stops early after two timeouts
in a row.
"""
import errno
import socket
import sys
import time


def attempt(proto, host, port, timeout):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if proto == "udp":
        sock = socket.socket(family, socket.SOCK_DGRAM)
    elif proto == "sctp":
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    else:
        sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        if proto == "udp":
            sock.sendto(b"who\n", (host, port))
            data, _ = sock.recvfrom(2048)
        else:
            sock.connect((host, port))
            data = b""
            while True:
                chunk = sock.recv(2048)
                if not chunk:
                    break
                data += chunk
        return data.decode(errors="replace").strip() or "EMPTY"
    except socket.timeout:
        return "TIMEOUT"
    except ConnectionRefusedError:
        return "REFUSED"
    except OSError as error:
        if error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "UNREACHABLE"
        return f"ERROR {error.strerror}"
    finally:
        sock.close()


def main():
    proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 2.0
    timeouts = 0
    for _ in range(count):
        start = time.monotonic()
        answer = attempt(proto, host, port, timeout)
        print(f"{answer} ms={int((time.monotonic() - start) * 1000)}", flush=True)
        # Two timeouts in a row: the rest would time out too; stop so a broken ruleset fails fast.
        timeouts = timeouts + 1 if answer == "TIMEOUT" else 0
        if timeouts == 2:
            return


if __name__ == "__main__":
    main()
