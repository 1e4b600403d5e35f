"""A Flask app instrumented with the real AWS X-Ray SDK, used as an upstream in interop tests.

Usage: flask_app.py PORT DAEMON_ADDRESS SERVICE_NAME
"""
import sys

from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.ext.flask.middleware import XRayMiddleware
from flask import Flask

port, daemon, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
app = Flask(__name__)
xray_recorder.configure(service=name, daemon_address=daemon, context_missing="LOG_ERROR")
XRayMiddleware(app, xray_recorder)


@app.route("/")
def index():
    return "hello from flask\n"


@app.route("/boom")
def boom():
    return "broken\n", 500


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=port)
