"""Helpers run inside the test's network namespaces.

  collector ADDR PORT   print every X-Ray datagram's document as one JSON line (the daemon's place)
  echo ADDR PORT        a TCP echo server (a non-HTTP protocol to pass through unchanged)
  banner ADDR PORT      the echo server, greeting each client first (a server that speaks first:
                        SMTP, MySQL)
"""
import socket
import sys
import threading

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "collector":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    print("ready", flush=True)
    while True:
        data, _ = s.recvfrom(70000)
        header, _, body = data.partition(b"\n")
        print(body.decode(), flush=True)
elif mode in ("echo", "banner"):
    srv = socket.create_server((addr, port))

    def serve(conn):
        with conn:
            if mode == "banner":
                conn.sendall(b"220 ready\r\n")
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                conn.sendall(chunk)

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
