"""An OTLP/HTTP trace receiver that decodes each request with the official protobuf definitions
(PyPI `opentelemetry-proto`) and keeps what it got.

Usage: otlp_receiver.py PORT [FAIL_FIRST [STATUS]]   (PORT 0 picks one; the port is printed on the first line)
  POST /v1/traces   decodes an ExportTraceServiceRequest; the first FAIL_FIRST requests are answered
                    with STATUS (default 503) and Retry-After: 0 and not kept
                    (a gzip body, Content-Encoding: gzip, is decompressed first)
  GET /received     {"requests": n, "refused": n, "content_types": [...], "content_encodings": [...],
                     "bytes": n (as received), "decoded_bytes": n, "batches": [{"resource": {...}, "scope": ..., "spans": [...]}]}
"""
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

port = int(sys.argv[1])
fail_first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
fail_status = int(sys.argv[3]) if len(sys.argv) > 3 else 503
lock = threading.Lock()
state = {"requests": 0, "refused": 0, "batches": [], "content_types": [], "content_encodings": [], "bytes": 0, "decoded_bytes": 0}


def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def describe(span):
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "trace_state": span.trace_state,
        "name": span.name,
        "kind": Span.SpanKind.Name(span.kind),
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "attributes": attributes(span.attributes),
        "status": Status.StatusCode.Name(span.status.code),
        "status_message": span.status.message,
        "flags": span.flags,
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            state["requests"] += 1
            refuse = state["requests"] <= fail_first
            if refuse:
                state["refused"] += 1
            else:
                encoding = self.headers.get("Content-Encoding")
                state["content_encodings"].append(encoding)
                state["bytes"] += len(body)
                if encoding == "gzip":
                    body = gzip.decompress(body)
                state["decoded_bytes"] += len(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                state["content_types"].append(self.headers.get("Content-Type"))
                for rs in request.resource_spans:
                    for ss in rs.scope_spans:
                        state["batches"].append({
                            "resource": attributes(rs.resource.attributes),
                            "scope": ss.scope.name,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "spans": [describe(s) for s in ss.spans],
                        })
        if refuse:
            self.send_response(fail_status)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        out = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        with lock:
            out = json.dumps(state).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
