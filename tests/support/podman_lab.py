"""The lab's manifests (k8s/base/lab) as the podman lab test runs them.

`before` adapts the lab before `xray-injector inject -f`: there is no registry here, so the
applications run in a local Python image (the back-end's http-echo becomes a Python server giving the
same answer), the front-end calls the back-end pod by address, one replica each, and every request is
sampled (a ConfigMap named by the `xray-sidecar.io/sampling-rules` annotation, as users do).

`after` adapts the injected output to what `podman kube play` (4.3) accepts where it differs from
Kubernetes: annotation values over 63 characters are rejected, every `containerPort` is published
on the host (two pods listening on 8080 cannot both start; the ports go, probes name theirs by
number), `fieldRef` knows neither
`metadata.namespace` nor `spec.nodeName` (they become the values Kubernetes would give), and a
Deployment's restart policy restarts its init containers forever, so each Deployment becomes the one
Pod its ReplicaSet would make, whose containers restart on failure. Its init containers are of
podman's `always` kind: kept after they ran (podman 4.3 races removing `once` ones) and run again
whenever the pod starts, as a Pod's are when its sandbox is re-created.

    python3 podman_lab.py before APP_IMAGE BACKEND_URL < lab.yaml
    python3 podman_lab.py after NAMESPACE NODE POD_SUFFIX < injected.yaml
"""
import json
import sys

import yaml

BACK_END = """from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
TEXT = b"hello from back-end\\n"
class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(TEXT)))
        self.end_headers()
        self.wfile.write(TEXT)
    def log_message(self, fmt, *args):
        print("request", self.path, flush=True)
ThreadingHTTPServer(("", 8080), Echo).serve_forever()
"""

SAMPLE_ALL = {"version": 2, "default": {"fixed_target": 0, "rate": 1.0}, "rules": []}


def before(docs, image, backend_url):
    out = []
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        d["spec"]["replicas"] = 1
        template = d["spec"]["template"]
        template["metadata"]["annotations"]["xray-sidecar.io/sampling-rules"] = "sample-all"
        app = template["spec"]["containers"][0]
        app["image"] = image
        if d["metadata"]["name"] == "back-end":
            app["command"] = ["python3", "-u", "-c"]
            app["args"] = [BACK_END]
        else:
            script = app["args"][0]
            old = 'BACKEND = "http://back-end.xray-lab.svc.cluster.local/"'
            assert old in script, "the front-end's back-end address moved"
            app["args"] = [script.replace(old, f"BACKEND = {json.dumps(backend_url)}")]
        out.append(d)
    out.append({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "sample-all", "namespace": "xray-lab"},
        "data": {"sampling-rules.json": json.dumps(SAMPLE_ALL)},
    })
    return out


def after(docs, namespace, node, suffix):
    values = {"metadata.namespace": namespace, "spec.nodeName": node}
    out = []
    for d in docs:
        if d["kind"] != "Deployment":
            out.append(d)
            continue
        template = d["spec"]["template"]
        template["metadata"]["name"] = d["metadata"]["name"] + suffix
        template["metadata"]["namespace"] = namespace
        template["spec"]["restartPolicy"] = "OnFailure"
        out.append({"apiVersion": "v1", "kind": "Pod", **template})
        annotations = template["metadata"].get("annotations", {})
        for key in [k for k, v in annotations.items() if len(v) > 63]:
            del annotations[key]
        annotations["io.podman.annotations.init.container.type"] = "always"
        spec = template["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            numbers = {p["name"]: p["containerPort"] for p in c.pop("ports", []) if "name" in p}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                action = c.get(probe, {}).get("httpGet") or c.get(probe, {}).get("tcpSocket") or {}
                action["port"] = numbers.get(action.get("port"), action.get("port"))
            for e in c.get("env", []):
                path = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                if path in values:
                    e.pop("valueFrom")
                    e["value"] = values[path]
    return out


def literal_blocks(dumper, text):
    """Scripts as `|` blocks: podman's YAML reader rejects folded double-quoted scalars."""
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


def main():
    yaml.SafeDumper.add_representer(str, literal_blocks)
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    mode, args = sys.argv[1], sys.argv[2:]
    docs = before(docs, *args) if mode == "before" else after(docs, *args)
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
