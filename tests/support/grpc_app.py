"""A real gRPC server and client (PyPI `grpcio`, generic handlers over raw bytes, no generated stubs).

  server PORT          serve `shop.v1.Catalog` on 127.0.0.1:PORT (0 picks one; printed first)
  client TARGET [AUTHORITY]
                       make one call of each kind through TARGET and print one JSON line per call:
                       {"call": ..., "code": "OK" | status name, "replies": n}; the "ok" call also
                       has "trace" and "traceparent", the headers the server received. The client
                       dials TARGET itself unless `grpc_proxy` is set in the environment, when it
                       goes through that proxy (with `CONNECT`) as gRPC does by default.
  call TARGET REQUEST [METHOD]
                       make one unary call (`GetItem` unless METHOD) with REQUEST (10 s deadline)
                       and print its line
  burst TARGET N       make N "slow" `GetItem` calls at once on one channel (one HTTP/2
                       connection) and print a line for each

`GetItem` (unary) answers by its request: b"ok" (echoing the trace headers it got in its trailing
metadata as `seen-trace-id` and `seen-traceparent`), or fails with the status named in the request
(`NOT_FOUND`, `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNAVAILABLE`), or sleeps past the client's deadline
(b"slow"). `ListItems` streams 3 replies, `Upload` takes a stream and answers once (a client whose
deadline passes mid-stream cancels it: "slow_upload"), `Chat` echoes.
"""
import json
import os
import sys
import time
from concurrent import futures

import grpc

SERVICE = "shop.v1.Catalog"


def get_item(request, context):
    if request == b"ok":
        got = dict(context.invocation_metadata())
        context.set_trailing_metadata((
            ("seen-trace-id", got.get("x-amzn-trace-id", "")),
            ("seen-traceparent", got.get("traceparent", "")),
        ))
        return b"item-42"
    if request == b"slow":
        time.sleep(2)
        return b"late"
    code = grpc.StatusCode[request.decode()]
    context.abort(code, f"{code.name.lower()} for item 42: 100% sure")


def list_items(request, context):
    for i in range(3):
        yield f"item-{i}".encode()


def upload(requests, context):
    return str(sum(1 for _ in requests)).encode()


def chat(requests, context):
    for r in requests:
        yield b"echo:" + r


def serve(port):
    handlers = {
        "GetItem": grpc.unary_unary_rpc_method_handler(get_item),
        "ListItems": grpc.unary_stream_rpc_method_handler(list_items),
        "Upload": grpc.stream_unary_rpc_method_handler(upload),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def run(channel, name, fn):
    try:
        replies = fn(channel)
        extra = {}
        if isinstance(replies, tuple):
            replies, extra = replies
        print(json.dumps({"call": name, "code": "OK", "replies": replies, **extra}), flush=True)
    except grpc.RpcError as e:
        print(json.dumps({"call": name, "code": e.code().name, "details": e.details()}), flush=True)


def stalling():
    """One message, then nothing until well past the caller's deadline."""
    yield b"a"
    time.sleep(1.5)
    yield b"b"


def ok_call(unary):
    _, call = unary.with_call(b"ok", timeout=10)
    seen = dict(call.trailing_metadata())
    return 1, {"trace": seen.get("seen-trace-id"), "traceparent": seen.get("seen-traceparent")}


def client(target, authority=None):
    options = [] if os.environ.get("grpc_proxy") else [("grpc.enable_http_proxy", 0)]
    if authority:
        options.append(("grpc.default_authority", authority))
    channel = grpc.insecure_channel(target, options=options)
    unary = channel.unary_unary(f"/{SERVICE}/GetItem")
    run(channel, "ok", lambda c: ok_call(unary))
    for request in ["NOT_FOUND", "RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE"]:
        run(channel, request, lambda c, r=request: len([unary(r.encode(), timeout=10)]))
    run(channel, "slow", lambda c: len([unary(b"slow", timeout=0.5)]))
    stream = channel.unary_stream(f"/{SERVICE}/ListItems")
    run(channel, "server_stream", lambda c: len(list(stream(b"all", timeout=10))))
    up = channel.stream_unary(f"/{SERVICE}/Upload")
    run(channel, "client_stream", lambda c: int(up(iter([b"a", b"b", b"c", b"d"]), timeout=10)))
    run(channel, "slow_upload", lambda c: int(up(stalling(), timeout=0.5)))
    bidi = channel.stream_stream(f"/{SERVICE}/Chat")
    run(channel, "bidi_stream", lambda c: len(list(bidi(iter([b"x", b"y"]), timeout=10))))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    elif sys.argv[1] == "call":
        channel = grpc.insecure_channel(sys.argv[2], options=[("grpc.enable_http_proxy", 0)])
        method = sys.argv[4] if len(sys.argv) > 4 else "GetItem"
        unary = channel.unary_unary(f"/{SERVICE}/{method}")
        run(channel, sys.argv[3], lambda c: len([unary(sys.argv[3].encode(), timeout=10)]))
    elif sys.argv[1] == "burst":
        channel = grpc.insecure_channel(sys.argv[2], options=[("grpc.enable_http_proxy", 0)])
        unary = channel.unary_unary(f"/{SERVICE}/GetItem")
        calls = [unary.future(b"slow", timeout=10) for _ in range(int(sys.argv[3]))]
        for call in calls:
            run(channel, "slow", lambda c, f=call: len([f.result()]))
    else:
        client(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
