#!/usr/bin/env python3
"""A stand-in OTLP collector for the benchmark: accepts OTLP/HTTP protobuf trace exports
(`POST /v1/traces`, gzip or not) and counts the spans in them.

It walks the protobuf wire format itself (ExportTraceServiceRequest.resource_spans (1) ->
ResourceSpans.scope_spans (2) -> ScopeSpans.spans (2)), so it needs nothing beyond the standard
library, checks that one span in 100 carries a 16-byte trace id and an 8-byte span id, answers each
export with 200 and an empty ExportTraceServiceResponse, and on SIGTERM writes its counts as JSON
to the --stats file: exports, spans, bytes, and exports it could not parse.
"""

import argparse
import gzip
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# One span in this many is opened and checked.
CHECK_EVERY = 100


def varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(buf: bytes):
    """(field number, wire type, value) of each field; a length-delimited value is its bytes."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = varint(buf, i)
            if i + n > len(buf):
                raise ValueError("length past the end")
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def spans(request: bytes, check: list[int]) -> int:
    """How many spans an ExportTraceServiceRequest holds; ValueError when it is malformed. Every
    CHECK_EVERY-th span (counted across calls in `check`) is opened and must carry its ids: opening
    every one would cost the sink more CPU than the proxy under test spends on it."""
    count = 0
    for n, w, resource_spans in fields(request):
        if n != 1 or w != 2:
            continue
        for n, w, scope_spans in fields(resource_spans):
            if n != 2 or w != 2:
                continue
            for n, w, span in fields(scope_spans):
                if n != 2 or w != 2:
                    continue
                count += 1
                check[0] += 1
                if check[0] % CHECK_EVERY == 0:
                    ids = {k: v for k, wt, v in fields(span) if k in (1, 2) and wt == 2}
                    if len(ids.get(1, b"")) != 16 or len(ids.get(2, b"")) != 8:
                        raise ValueError("a span without a trace id or span id")
    return count


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.exports = self.spans = self.bytes = self.malformed = 0
        self.checked = [0]

    def as_dict(self) -> dict:
        with self.lock:
            return {"exports": self.exports, "spans": self.spans, "bytes": self.bytes,
                    "malformed": self.malformed}


COUNTS = Counts()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            n = spans(body, COUNTS.checked)
        except (ValueError, IndexError, OSError, EOFError):
            with COUNTS.lock:
                COUNTS.malformed += 1
            self.answer(400, b"malformed export")
            return
        with COUNTS.lock:
            COUNTS.exports += 1
            COUNTS.spans += n
            COUNTS.bytes += len(body)
        self.answer(200, b"", "application/x-protobuf")

    def answer(self, status: int, body: bytes, ctype: str = "text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--stats", required=True, help="where to write the counts on SIGTERM")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True

    def stop(*_):
        with open(args.stats, "w") as f:
            json.dump(COUNTS.as_dict(), f)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
