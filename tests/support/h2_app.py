"""An HTTP/2 (h2c, prior knowledge) application that accepts anything: the PyPI `h2` library with
its checks of received headers turned off, so that whatever a proxy forwards is seen as it came.
Answers every request 200 "ok" and appends each one's headers to LOG as a JSON line:
{"headers": [[name, value], ...]}. A :path ending in /no-status answers as a gRPC server that
forgets its status (one message, then the end of the stream, no trailers); /bad-status sends
`grpc-status: abc` in its trailers; /reset-CODE (8 for CANCEL, 2 for INTERNAL_ERROR...) resets
the stream with that code after one message, /drop closes the connection after one message, and
/stall sends one message and then nothing, holding the stream open.

Usage: h2_app.py PORT LOG   (PORT 0 picks one; the port is printed on the first line)
"""
import json
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events
import h2.exceptions

LOCK = threading.Lock()
LOG = sys.argv[2]


def say(line):
    with LOCK, open(LOG, "a") as f:
        f.write(line + "\n")


def serve(sock):
    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding="utf-8",
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    with sock:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                say(json.dumps({"protocol_error": str(e)}))
                return
            for e in events:
                if isinstance(e, h2.events.RequestReceived):
                    say(json.dumps({"headers": [[k, v] for k, v in e.headers]}))
                    path = dict(e.headers).get(":path", "")
                    broken = path.rsplit("/", 1)[-1]
                    if broken in ("drop", "stall") or broken.startswith("reset-"):
                        conn.send_headers(e.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                        conn.send_data(e.stream_id, b"\x00\x00\x00\x00\x02hi")
                        sock.sendall(conn.data_to_send())
                        if broken == "drop":
                            return
                        if broken == "stall":
                            continue
                        conn.reset_stream(e.stream_id, error_code=int(broken[len("reset-"):]))
                        continue
                    if path.endswith(("/no-status", "/bad-status")):
                        conn.send_headers(e.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                        message = b"\x00\x00\x00\x00\x02hi"
                        no_status = path.endswith("/no-status")
                        conn.send_data(e.stream_id, message, end_stream=no_status)
                        if not no_status:
                            conn.send_headers(e.stream_id, [("grpc-status", "abc")], end_stream=True)
                        continue
                    conn.send_headers(e.stream_id, [(":status", "200"), ("content-length", "2")])
                    conn.send_data(e.stream_id, b"ok", end_stream=True)
                elif isinstance(e, h2.events.DataReceived):
                    conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            pending = conn.data_to_send()
            if pending:
                sock.sendall(pending)


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main()
