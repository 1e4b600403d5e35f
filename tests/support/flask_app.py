"""A Flask app instrumented with the real AWS X-Ray SDK, used as an upstream in interop tests.

Usage: flask_app.py PORT DAEMON_ADDRESS SERVICE_NAME   (PORT 0 picks one; the port is printed on the first line)

`GET /call?proxy=HOST:PORT&url=URL` calls URL through the HTTP proxy at HOST:PORT with `requests`,
which the SDK patches to record a remote subsegment and pass its trace header on.
"""
import sys

import requests
from aws_xray_sdk.core import patch, xray_recorder
from aws_xray_sdk.ext.flask.middleware import XRayMiddleware
from flask import Flask, request
from werkzeug.serving import make_server

port, daemon, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
app = Flask(__name__)
xray_recorder.configure(service=name, daemon_address=daemon, context_missing="LOG_ERROR")
XRayMiddleware(app, xray_recorder)
patch(["requests"])


@app.route("/")
def index():
    return "hello from flask\n"


@app.route("/call")
def call():
    proxy = "http://" + request.args["proxy"]
    res = requests.get(request.args["url"], proxies={"http": proxy}, timeout=10)
    return res.content, res.status_code


@app.route("/boom")
def boom():
    return "broken\n", 500


if __name__ == "__main__":
    server = make_server("127.0.0.1", port, app, threaded=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()
