"""An HTTP/2 client (the PyPI `h2` library, prior knowledge) that asks for a response and then
takes none of it: it never opens the stream's flow-control window, while it answers the
connection's pings. Once the stream is reset, or after SECONDS, it gives the connection's window
back and asks for SECOND_PATH on a new stream of the same connection.

With `trickle MS`, it is a slow reader instead: every MS it opens the windows by what it has
received since, so the response keeps moving at the client's pace. With `upload MS`, it takes
none of the response but keeps its request body coming: 100 bytes every MS, until SECONDS.

Usage: h2_slow_reader.py HOST:PORT PATH SECOND_PATH SECONDS [trickle MS | upload MS]
Prints one JSON object: the first stream's "status", the bytes "received" of it, the "reset" code
(null if it was not reset) and "reset_after" (seconds from the request), and the "second" stream's
status (null if it got none within 5 s).
"""
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events


def request(conn, sock, stream_id, path, method="GET", end_stream=True):
    conn.send_headers(stream_id, [(":method", method), (":path", path), (":scheme", "http"), (":authority", "app")],
                      end_stream=end_stream)
    sock.sendall(conn.data_to_send())


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    path, second_path, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
    mode, every = (sys.argv[5], float(sys.argv[6]) / 1000) if len(sys.argv) > 6 else (None, None)
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(0.05)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    out = {"status": None, "received": 0, "reset": None, "reset_after": None, "second": None}
    started = time.monotonic()
    uploading = mode == "upload"
    request(conn, sock, 1, path, "POST" if uploading else "GET", end_stream=not uploading)
    second_deadline = None
    unacknowledged, last_turn = 0, started
    while True:
        now = time.monotonic()
        if mode and second_deadline is None and now - last_turn >= every:
            if mode == "trickle" and unacknowledged:
                conn.acknowledge_received_data(unacknowledged, 1)
                unacknowledged = 0
            elif uploading and out["reset"] is None:
                conn.send_data(1, b"u" * 100)
            sock.sendall(conn.data_to_send())
            last_turn = now
        if second_deadline is None and (out["reset"] is not None or now - started > seconds):
            # The window taken by the first stream is given back, so the second can be answered.
            if unacknowledged:
                conn.increment_flow_control_window(unacknowledged)
            request(conn, sock, 3, second_path)
            second_deadline = now + 5
        if second_deadline is not None and (now > second_deadline or out["second"] is not None):
            break
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        for e in conn.receive_data(data):
            if isinstance(e, h2.events.ResponseReceived):
                status = int(dict(e.headers)[b":status"])
                if e.stream_id == 1:
                    out["status"] = status
                else:
                    out["second"] = status
            elif isinstance(e, h2.events.DataReceived) and e.stream_id == 1:
                out["received"] += e.flow_controlled_length
                unacknowledged += e.flow_controlled_length
            elif isinstance(e, h2.events.StreamReset) and e.stream_id == 1:
                out["reset"] = int(e.error_code)
                out["reset_after"] = round(time.monotonic() - started, 2)
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
