"""The front-end "application" of the interception test: knows nothing of X-Ray or proxies.

It calls the back-end's address directly over HTTP a few times, runs a binary exchange over plain
TCP, makes one HTTPS call to port 443 asking for an AWS endpoint's name (SNI), trusting CERT, and
prints one JSON line of what happened.
Usage: netns_front_app.py BACKEND_IP CALLS CERT
"""
import json
import os
import socket
import ssl
import sys
import urllib.request

backend, calls = sys.argv[1], int(sys.argv[2])
# No proxy settings: interception must work without the application's cooperation.
for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
    os.environ.pop(var, None)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
statuses = []
for _ in range(calls):
    with opener.open(f"http://{backend}:8080/", timeout=10) as res:
        res.read()
        statuses.append(res.status)

payload = bytes(range(256)) * 64
with socket.create_connection((backend, 9000), timeout=10) as s:
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    echoed = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        echoed += chunk

ctx = ssl.create_default_context(cafile=sys.argv[3])
sni = "dynamodb.us-east-1.amazonaws.com"
with socket.create_connection((backend, 443), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=sni) as s:
        s.sendall(f"GET /tls HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
print(json.dumps({
    "statuses": statuses,
    "tcp_echo_ok": echoed == payload,
    "tcp_bytes": len(echoed),
    "tls_ok": answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"secure /tls\n"),
}), flush=True)
