#!/usr/bin/env python3
"""Runs the proxy benchmark: every configuration, the same load, on this machine, in one run.

Configurations: direct to the upstream; xray-sidecar with 100 % sampling; xray-sidecar with
tracing off; nginx as a reverse proxy; Envoy with the X-Ray tracer at 100 % sampling. Each proxy
runs one worker. For each: a warm-up, a closed-loop run with wrk (requests per second, CPU per
request), then an open-loop run with oha at a fixed rate with coordinated-omission correction
(latency percentiles, CPU per request), and the resident set size after the load.

Started by scripts/bench, which installs the tools and builds the sidecar first.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402
import report  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

UPSTREAM_PORT = 18080
PROXY_PORT = 18100
ADMIN_PORT = 18102
NGINX_PORT = 18081
ENVOY_PORT = 18082
ENVOY_ADMIN_PORT = 18901
SINK_PORT = 12000


def render(template: str, out: Path, **values) -> Path:
    """Fills the @@NAME@@ placeholders of a config template."""
    text = (BENCH / template).read_text()
    for k, v in values.items():
        text = text.replace(f"@@{k}@@", str(v))
    if re.search(r"@@[A-Z_]+@@", text):
        raise SystemExit(f"bench: {template}: a placeholder was left unfilled")
    out.write_text(text)
    return out


def pinned(cpus: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else argv


class Proc:
    """A started server whose output goes to a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env=None):
        self.name = name
        self.log = log
        self.fh = open(log, "wb")
        self.p = subprocess.Popen(
            argv, stdout=self.fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.p.poll() is None:
            # SIGTERM lets the sidecar flush queued segments and Envoy/nginx stop cleanly.
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.fh.close()
        return self.p.returncode


def wait_http(url: str, proc: Proc, timeout: float = 20.0) -> None:
    """Waits until `url` answers 200 with body "ok" through the whole chain."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SystemExit(f"bench: {proc.name} exited early; see {proc.log}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                body = r.read()
                if r.status == 200 and body == b"ok":
                    return
                last = f"status {r.status}, body {body[:40]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise SystemExit(f"bench: {url} not ready after {timeout}s ({last}); see {proc.log}")


def start_sink(out: Path, cpus: str | None) -> tuple[Proc, Path]:
    stats = out / "sink.json"
    sink = Proc(
        "udp sink",
        pinned(cpus, [sys.executable, str(BENCH / "udp_sink.py"), "--port", str(SINK_PORT),
                      "--stats", str(stats)]),
        out / "sink.log",
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sink.log.exists() and b"ready" in sink.log.read_bytes():
            return sink, stats
        if not sink.alive():
            break
        time.sleep(0.05)
    raise SystemExit(f"bench: the UDP sink did not start; see {sink.log}")


def configurations(args, work: Path) -> list[dict]:
    """What to start for each configuration: argv (None for direct) and the port to load."""
    sidecar = str(args.sidecar)
    common = [sidecar, "proxy", "--listen", f"127.0.0.1:{PROXY_PORT}",
              "--upstream", f"http://127.0.0.1:{UPSTREAM_PORT}", "--service-name", "bench",
              "--daemon-address", f"127.0.0.1:{SINK_PORT}", "--workers", "1"]
    envoy_conf = render("envoy-xray.yaml", work / "envoy.yaml", PORT=ENVOY_PORT,
                        UPSTREAM_PORT=UPSTREAM_PORT, SINK_PORT=SINK_PORT,
                        ADMIN_PORT=ENVOY_ADMIN_PORT)
    nginx_conf = render("nginx-proxy.conf", work / "nginx-proxy.conf", DIR=work,
                        PORT=NGINX_PORT, UPSTREAM_PORT=UPSTREAM_PORT)
    all_configs = [
        {"key": "direct", "label": "direct to upstream", "argv": None, "port": UPSTREAM_PORT},
        {"key": "sidecar", "label": "xray-sidecar, 100 % sampled",
         "argv": common + ["--sampling-rules", str(BENCH / "sampling-all.json"),
                           "--admin-listen", f"127.0.0.1:{ADMIN_PORT}"],
         "port": PROXY_PORT, "traced": True},
        {"key": "sidecar_off", "label": "xray-sidecar, tracing off",
         "argv": common + ["--disable-tracing", "--admin-listen", f"127.0.0.1:{ADMIN_PORT}"],
         "port": PROXY_PORT},
        {"key": "nginx", "label": "nginx reverse proxy",
         "argv": [args.nginx, "-p", str(work), "-c", str(nginx_conf)], "port": NGINX_PORT},
        {"key": "envoy", "label": "Envoy + X-Ray, 100 % sampled",
         "argv": [str(args.envoy), "-c", str(envoy_conf), "--concurrency", "1",
                  "--disable-hot-restart", "--log-level", "warn"],
         "port": ENVOY_PORT, "traced": True},
    ]
    wanted = set(args.only.split(",")) if args.only else None
    return [c for c in all_configs if wanted is None or c["key"] in wanted]


def run_config(cfg: dict, args, out: Path, upstream: Proc) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{cfg['port']}/"
    sink, sink_stats = start_sink(out, args.load_cpus)
    proxy = None
    result: dict = {"key": cfg["key"], "label": cfg["label"]}
    try:
        if cfg["argv"]:
            env = dict(os.environ, RUST_LOG="warn")
            proxy = Proc(cfg["key"], pinned(args.proxy_cpus, cfg["argv"]), out / "proxy.log", env)
            wait_http(url, proxy)
        else:
            wait_http(url, upstream)
        # The process whose CPU and memory count: the proxy, or for direct the upstream.
        measured = proxy or upstream
        result["measured"] = "proxy" if proxy else "upstream"

        measure.wrk(url, args, args.warmup, out / "warmup-wrk.txt")

        before = measure.cpu_snapshot(measured.pid)
        up_before = measure.cpu_snapshot(upstream.pid)
        closed = measure.wrk(url, args, args.duration, out / "wrk.txt")
        after = measure.cpu_snapshot(measured.pid)
        up_after = measure.cpu_snapshot(upstream.pid)
        closed.update(measure.cpu_delta(before, after, closed["requests"]))
        closed["upstream_busy"] = measure.cpu_delta(up_before, up_after, closed["requests"])["busy"]
        result["closed"] = closed

        before = measure.cpu_snapshot(measured.pid)
        opened = measure.oha(url, args, out / "oha.json")
        after = measure.cpu_snapshot(measured.pid)
        opened.update(measure.cpu_delta(before, after, opened["requests"]))
        result["open"] = opened

        result["memory"] = measure.memory(measured.pid)
        result["requests_sent"] = (measure.wrk_requests(out / "warmup-wrk.txt")
                                   + closed["requests"] + opened["requests"] + 1)
    finally:
        if proxy:
            result["exit_code"] = proxy.stop()
        time.sleep(0.3)  # let the last datagrams land before the sink counts
        sink.stop()
    try:
        result["sink"] = json.loads(sink_stats.read_text())
    except (OSError, ValueError) as e:
        result["sink"] = {"error": f"no sink stats: {e}"}
    result["traced"] = bool(cfg.get("traced"))
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sidecar", type=Path, default=ROOT / "target/release/xray-sidecar")
    ap.add_argument("--envoy", type=Path, required=True, help="the envoy binary itself")
    ap.add_argument("--nginx", default="nginx")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--oha", default="oha")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=int, default=10, help="seconds of each measured run")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up")
    ap.add_argument("--rate", type=int, default=2000, help="open-loop requests per second")
    ap.add_argument("--proxy-cpus", default="1", help="CPU list for the proxy under test ('' = no pinning)")
    ap.add_argument("--load-cpus", default="0", help="CPU list for load generator, upstream, sink")
    ap.add_argument("--only", help="comma-separated configuration keys (default: all)")
    ap.add_argument("--results", type=Path, default=BENCH / "results")
    args = ap.parse_args()
    args.proxy_cpus = args.proxy_cpus or None
    args.load_cpus = args.load_cpus or None

    for tool in (args.wrk, args.oha, args.nginx, "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: `{tool}` not found; run scripts/bench")
    for binary in (args.sidecar, args.envoy):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"bench: {binary} is not an executable")

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = (args.results / stamp).resolve()
    work = run_dir / "work"
    for d in ("tmp-upstream", "tmp-proxy-body", "tmp-proxy"):
        (work / d).mkdir(parents=True, exist_ok=True)

    meta = measure.machine(args)
    print(f"bench: results in {run_dir}", flush=True)
    print(f"bench: proxy on CPU {args.proxy_cpus or 'any'}, load/upstream/sink on CPU "
          f"{args.load_cpus or 'any'}; wrk -t1 -c{args.connections} -d{args.duration}s; "
          f"oha -q {args.rate} --latency-correction -c{args.connections} -z {args.duration}s",
          flush=True)

    up_conf = render("nginx-upstream.conf", work / "nginx-upstream.conf", DIR=work,
                     PORT=UPSTREAM_PORT)
    upstream = Proc("upstream", pinned(args.load_cpus, [args.nginx, "-p", str(work), "-c",
                                                        str(up_conf)]), run_dir / "upstream.log")
    results = []
    try:
        wait_http(f"http://127.0.0.1:{UPSTREAM_PORT}/", upstream)
        for cfg in configurations(args, work):
            print(f"bench: {cfg['label']} ...", flush=True)
            r = run_config(cfg, args, run_dir / cfg["key"], upstream)
            results.append(r)
            print("       " + report.one_line(r), flush=True)
    finally:
        upstream.stop()

    summary = report.summarise(results, meta)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    md = report.markdown(summary)
    (run_dir / "summary.md").write_text(md)
    latest = args.results / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
