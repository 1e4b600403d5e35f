#!/usr/bin/env python3
"""A stand-in X-Ray daemon for the benchmark: receives segment datagrams on UDP and counts them.

It counts datagrams and bytes, checks each starts with the daemon header, parses one in 1000
whole (a segment document with name, id, trace_id and times), keeps the first one
whole, and on SIGTERM writes its counts (plus the kernel's drop count for the socket) as JSON to
the --stats file. It never answers: the daemon protocol is one-way.
"""

import argparse
import json
import signal
import socket
import sys

# The daemon header line, as the X-Ray SDKs write it and as Envoy writes it (no spaces).
HEADERS = (b'{"format": "json", "version": 1}\n', b'{"format":"json","version":1}\n')
L0, L1 = len(HEADERS[0]), len(HEADERS[1])
CHECK_EVERY = 1000
REQUIRED = ("name", "id", "trace_id", "start_time", "end_time")
SO_RCVBUFFORCE = 33


def header_ok(data: bytes) -> bool:
    """Whether the first line is the daemon header, in any JSON spelling."""
    line, sep, _ = data.partition(b"\n")
    if not sep:
        return False
    try:
        h = json.loads(line)
    except ValueError:
        return False
    return isinstance(h, dict) and h.get("format") == "json" and h.get("version") == 1


def document_ok(data: bytes) -> bool:
    """Whether the datagram carries one segment document with the required fields."""
    _, _, body = data.partition(b"\n")
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and all(k in doc for k in REQUIRED)


class Stop(Exception):
    """Raised from the signal handler to leave the receive loop."""


def kernel_drops(port: int) -> int | None:
    """The `drops` column of /proc/net/udp for the socket bound to `port` on 127.0.0.1."""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[1] == want:
                    return int(cols[-1])
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=2000)
    ap.add_argument("--stats", required=True, help="where to write the counts on SIGTERM")
    args = ap.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Large enough to absorb bursts at ~100k datagrams/s (needs root; else the plain option).
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 * 1024 * 1024)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024 * 1024)
    sock.bind(("127.0.0.1", args.port))

    def on_term(_sig, _frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    buf = bytearray(65536)
    view = memoryview(buf)
    counts = {"datagrams": 0, "bytes": 0, "bad_header": 0, "checked": 0, "bad_document": 0}
    first = None

    def count(n: int) -> None:
        nonlocal first
        counts["datagrams"] += 1
        counts["bytes"] += n
        if not (view[:L0] == HEADERS[0] or view[:L1] == HEADERS[1]):
            if not header_ok(bytes(view[:n])):
                counts["bad_header"] += 1
        # Parse one datagram in CHECK_EVERY whole: cheap enough not to slow the sink down.
        if counts["datagrams"] % CHECK_EVERY == 1:
            data = bytes(view[:n])
            counts["checked"] += 1
            if not document_ok(data):
                counts["bad_document"] += 1
            if first is None:
                first = data.decode("utf-8", "replace")

    recv_into = sock.recv_into
    print("ready", flush=True)
    try:
        while True:
            count(recv_into(buf))
    except Stop:
        pass
    # Whatever is still queued in the socket was sent before the stop: count it too.
    sock.setblocking(False)
    try:
        while True:
            count(sock.recv_into(buf))
    except (BlockingIOError, InterruptedError):
        pass
    stats = dict(counts, kernel_drops=kernel_drops(args.port), first=first)
    with open(args.stats, "w") as f:
        json.dump(stats, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
