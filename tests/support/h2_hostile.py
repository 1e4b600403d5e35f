"""Sends HTTP/2 requests that RFC 9113 calls malformed, each on a connection of its own (h2c with
prior knowledge), with the PyPI `h2` library's own checks turned off so that they leave as
written, plus one well-formed control request; prints what came back for each as one JSON line:
{"case": name, "path": its :path, "status": int or null, "reset": error code or null,
 "goaway": error code or null, "closed": bool}.

Usage: h2_hostile.py HOST:PORT
"""
import json
import socket
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions


def head(path, *extra, method="GET", authority="app"):
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", authority), *extra]


# name -> (headers, body). Each :path names its case, so the application's log shows which arrived.
CASES = {
    "transfer-encoding": (head("/te", ("transfer-encoding", "chunked"), method="POST"),
                          b"5\r\nhello\r\n0\r\n\r\n"),
    "connection": (head("/connection", ("connection", "keep-alive")), None),
    "keep-alive": (head("/keep-alive", ("keep-alive", "timeout=5")), None),
    "upgrade": (head("/upgrade", ("upgrade", "websocket")), None),
    "te-not-trailers": (head("/te-gzip", ("te", "gzip")), None),
    "crlf-in-value": (head("/crlf-value", ("x-note", "a\r\nx-smuggled: 1")), None),
    "lf-in-value": (head("/lf-value", ("x-note", "a\nx-smuggled: 1")), None),
    "nul-in-value": (head("/nul-value", ("x-note", "a\x00b")), None),
    "uppercase-name": (head("/uppercase", ("X-Upper", "1")), None),
    "space-in-name": (head("/space-name", ("x bad", "1")), None),
    "colon-in-name": (head("/colon-name", ("x:bad", "1")), None),
    "crlf-in-path": (head("/crlf-path HTTP/1.1\r\nhost: evil\r\n\r\nGET /smuggled"), None),
    "space-in-method": (head("/space-method", method="GET /smuggled"), None),
    "pseudo-after-regular": ([(":method", "GET"), ("x-a", "1"), (":scheme", "http"),
                              (":path", "/pseudo-late"), (":authority", "app")], None),
    "unknown-pseudo": (head("/unknown-pseudo", (":evil", "1")), None),
    "duplicate-path": (head("/dup-path", (":path", "/dup-path-2")), None),
    "no-path": ([(":method", "GET"), (":scheme", "http"), (":authority", "app")], None),
    "content-length-longer": (head("/cl-longer", ("content-length", "3"), method="POST"), b"hello"),
    "content-length-shorter": (head("/cl-shorter", ("content-length", "10"), method="POST"),
                               b"hello"),
    "control": (head("/control", ("x-note", "fine")), None),
}


def run(addr, headers, body, timeout=5.0):
    host, port = addr.rsplit(":", 1)
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding="utf-8",
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    out = {"status": None, "reset": None, "goaway": None, "closed": False}
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers, end_stream=body is None)
        if body is not None:
            conn.send_data(sid, body, end_stream=True)
        s.sendall(conn.data_to_send())
        done = False
        while not done:
            try:
                data = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                out["closed"] = True
                break
            if not data:
                out["closed"] = True
                break
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                out["closed"] = True
                break
            for e in events:
                if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
                    out["status"] = int(dict(e.headers)[":status"])
                elif isinstance(e, h2.events.StreamReset) and e.stream_id == sid:
                    out["reset"] = int(e.error_code)
                    done = True
                elif isinstance(e, h2.events.StreamEnded) and e.stream_id == sid:
                    done = True
                elif isinstance(e, h2.events.ConnectionTerminated):
                    out["goaway"] = int(e.error_code)
                    done = True
            pending = conn.data_to_send()
            if pending:
                s.sendall(pending)
    return out


def main():
    addr = sys.argv[1]
    for name, (headers, body) in CASES.items():
        path = next((v for k, v in headers if k == ":path"), None)
        print(json.dumps({"case": name, "path": path, **run(addr, headers, body)}), flush=True)


if __name__ == "__main__":
    main()
