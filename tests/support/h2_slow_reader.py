"""An HTTP/2 client (the PyPI `h2` library, prior knowledge) that asks for a response and then
takes none of it: it never opens the stream's flow-control window, while it answers the
connection's pings. Once the stream is reset, or after SECONDS, it gives the connection's window
back and asks for SECOND_PATH on a new stream of the same connection.

With TRICKLE_MS, it is a slow reader instead: every TRICKLE_MS it opens the windows by what it
has received since, so the response keeps moving at the client's pace.

Usage: h2_slow_reader.py HOST:PORT PATH SECOND_PATH SECONDS [TRICKLE_MS]
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


def request(conn, sock, stream_id, path):
    conn.send_headers(stream_id, [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "app")],
                      end_stream=True)
    sock.sendall(conn.data_to_send())


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    path, second_path, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
    trickle = float(sys.argv[5]) / 1000 if len(sys.argv) > 5 else None
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(0.05)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    out = {"status": None, "received": 0, "reset": None, "reset_after": None, "second": None}
    started = time.monotonic()
    request(conn, sock, 1, path)
    second_deadline = None
    unacknowledged, last_trickle = 0, started
    while True:
        now = time.monotonic()
        if trickle and second_deadline is None and now - last_trickle >= trickle and unacknowledged:
            conn.acknowledge_received_data(unacknowledged, 1)
            sock.sendall(conn.data_to_send())
            unacknowledged, last_trickle = 0, now
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
