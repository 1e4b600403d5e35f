"""An application instrumented with the real OpenTelemetry Python SDK, spans kept in memory.

Usage:
  otel_app.py serve PORT PROPAGATOR   serve on 127.0.0.1:PORT; GET /spans lists the finished spans
  otel_app.py call URL PROPAGATOR     make one request inside a CLIENT span; print it and the answer

PORT 0 picks one; the port is printed on the first line.
PROPAGATOR is `w3c` (the SDK's default, W3C traceparent) or `xray` (opentelemetry-propagator-aws-xray).
Spans are printed and listed as JSON with trace_id, span_id and parent_id in hex.
"""
import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import propagate, trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

mode, target, propagator = sys.argv[1], sys.argv[2], sys.argv[3]
if propagator == "xray":
    propagate.set_global_textmap(AwsXRayPropagator())
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("otel-app")


def describe(span):
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_id": format(parent.span_id, "016x") if parent else None,
        "parent_remote": bool(parent and parent.is_remote),
        "sampled": span.context.trace_flags.sampled,
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/spans":
            body = json.dumps([describe(s) for s in exporter.get_finished_spans()]).encode()
        else:
            # The headers object looks names up in any case, as web frameworks do.
            ctx = propagate.extract(self.headers)
            with tracer.start_as_current_span("GET " + self.path, context=ctx, kind=trace.SpanKind.SERVER):
                seen = {k.lower(): v for k, v in self.headers.items()}
                body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if mode == "serve":
    server = ThreadingHTTPServer(("127.0.0.1", int(target)), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
else:
    with tracer.start_as_current_span("call", kind=trace.SpanKind.CLIENT) as span:
        headers = {}
        propagate.inject(headers)
        req = urllib.request.Request(target, headers=headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as res:
            answer = {"status": res.status, "headers": {k.lower(): v for k, v in res.headers.items()}}
    print(json.dumps({"span": describe(exporter.get_finished_spans()[0]), "sent": headers, "answer": answer}))
