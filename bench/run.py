#!/usr/bin/env python3
"""Runs the proxy benchmark: every configuration, the same load, on this machine, in one run.

Configurations: direct to the upstream; xray-sidecar with 100 % sampling (segments over UDP to a
stand-in daemon); the same with the OTLP exporter instead (spans over OTLP/HTTP to a stand-in
collector); xray-sidecar with tracing off; nginx as a reverse proxy; Envoy with the X-Ray tracer at
100 % sampling; and, as a measuring stick, the least a proxy on tokio costs (bench/floor.rs). Each
proxy runs one worker. For each: a warm-up, a closed-loop run with wrk (requests per second, CPU
per request), then an open-loop run with oha at a fixed rate with coordinated-omission correction
(latency percentiles, CPU per request), and the resident set size once the load has settled.

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
SIDECAR_PORT = 18100
SIDECAR_ADMIN_PORT = 18102
SIDECAR_OFF_PORT = 18110
SIDECAR_OFF_ADMIN_PORT = 18112
SIDECAR_OTLP_PORT = 18120
SIDECAR_OTLP_ADMIN_PORT = 18122
SIDECAR_DEFAULT_PORT = 18140
SIDECAR_DEFAULT_ADMIN_PORT = 18142
NGINX_PORT = 18081
ENVOY_PORT = 18082
FLOOR_PORT = 18130
ENVOY_ADMIN_PORT = 18901
# One sink per traced configuration, so that each one's segments are counted on their own.
SIDECAR_SINK_PORT = 12000
ENVOY_SINK_PORT = 12001
OTLP_SINK_PORT = 12002
DEFAULT_SINK_PORT = 12003
# The stand-in for each kind of sink: the X-Ray daemon's UDP port, or an OTLP/HTTP collector.
SINKS = {"udp": "udp_sink.py", "otlp": "otlp_sink.py"}


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


def start_sink(name: str, kind: str, port: int, out: Path, cpus: str | None) -> tuple[Proc, Path]:
    stats = out / f"sink-{name}.json"
    sink = Proc(
        f"{kind} sink for {name}",
        pinned(cpus, [sys.executable, str(BENCH / SINKS[kind]), "--port", str(port),
                      "--stats", str(stats)]),
        out / f"sink-{name}.log",
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sink.log.exists() and b"ready" in sink.log.read_bytes():
            return sink, stats
        if not sink.alive():
            break
        time.sleep(0.05)
    raise SystemExit(f"bench: the {kind} sink did not start; see {sink.log}")


def configurations(args, work: Path) -> list[dict]:
    """What to start for each configuration: argv (None for direct) and the port to load."""

    def sidecar(port: int, admin: int, sink: int = SIDECAR_SINK_PORT) -> list[str]:
        # The connection cap (4,096 by default) would answer most of the idle connections with
        # 503 and leave the RSS-per-connection figure and the segment count meaningless. Idle
        # connections are closed at the keep-alive timeout (75 s by default, as nginx's; Envoy
        # keeps them an hour); they must outlive --idle-settle to be measured.
        return [str(args.sidecar), "proxy", "--listen", f"127.0.0.1:{port}",
                "--upstream", f"http://127.0.0.1:{UPSTREAM_PORT}", "--service-name", "bench",
                "--daemon-address", f"127.0.0.1:{sink}", "--workers", "1",
                "--admin-listen", f"127.0.0.1:{admin}",
                "--max-connections", str(args.idle_connections + 1000),
                "--keep-alive-timeout", "60s"]

    envoy_conf = render("envoy-xray.yaml", work / "envoy.yaml", PORT=ENVOY_PORT,
                        UPSTREAM_PORT=UPSTREAM_PORT, SINK_PORT=ENVOY_SINK_PORT,
                        ADMIN_PORT=ENVOY_ADMIN_PORT)
    nginx_conf = render("nginx-proxy.conf", work / "nginx-proxy.conf", DIR=work,
                        PORT=NGINX_PORT, UPSTREAM_PORT=UPSTREAM_PORT)
    all_configs = [
        {"key": "direct", "label": "direct to upstream", "argv": None, "port": UPSTREAM_PORT},
        {"key": "sidecar", "label": "xray-sidecar, 100 % sampled",
         "argv": sidecar(SIDECAR_PORT, SIDECAR_ADMIN_PORT)
         + ["--sampling-rules", str(BENCH / "sampling-all.json")],
         "port": SIDECAR_PORT, "sink_port": SIDECAR_SINK_PORT},
        {"key": "sidecar_otlp", "label": "xray-sidecar, 100 %, OTLP",
         "argv": sidecar(SIDECAR_OTLP_PORT, SIDECAR_OTLP_ADMIN_PORT)
         + ["--sampling-rules", str(BENCH / "sampling-all.json"), "--exporter", "otlp",
            "--otlp-endpoint", f"http://127.0.0.1:{OTLP_SINK_PORT}/v1/traces"],
         "port": SIDECAR_OTLP_PORT, "sink_port": OTLP_SINK_PORT, "sink": "otlp",
         # The same proxy as the one above but for the exporter: its idle connections cost the same.
         "idle": False},
        # What a pod pays with the rules it starts with (1 a second, then 5 %): most requests
        # unsampled, each still given a trace id, a decision and the next hop's headers. Not a
        # target's configuration; its segments are counted, not held against its requests.
        {"key": "sidecar_default", "label": "xray-sidecar, default sampling",
         "argv": sidecar(SIDECAR_DEFAULT_PORT, SIDECAR_DEFAULT_ADMIN_PORT, DEFAULT_SINK_PORT),
         "port": SIDECAR_DEFAULT_PORT, "sink_port": DEFAULT_SINK_PORT, "all_sampled": False,
         "idle": False},
        {"key": "sidecar_off", "label": "xray-sidecar, tracing off",
         "argv": sidecar(SIDECAR_OFF_PORT, SIDECAR_OFF_ADMIN_PORT) + ["--disable-tracing"],
         "port": SIDECAR_OFF_PORT},
        {"key": "nginx", "label": "nginx reverse proxy",
         "argv": [args.nginx, "-p", str(work), "-c", str(nginx_conf)], "port": NGINX_PORT},
        {"key": "envoy", "label": "Envoy + X-Ray, 100 % sampled",
         "argv": [str(args.envoy), "-c", str(envoy_conf), "--concurrency", "1",
                  "--disable-hot-restart", "--log-level", "warn"],
         "port": ENVOY_PORT, "sink_port": ENVOY_SINK_PORT},
        # Not a contender: what any proxy on tokio pays at least (bench/floor.rs), so that the
        # sidecar's cost above it can be told from the kernel's and the runtime's.
        {"key": "floor", "label": "floor: bare tokio forwarding",
         "argv": [str(args.floor), f"127.0.0.1:{FLOOR_PORT}", f"127.0.0.1:{UPSTREAM_PORT}"],
         # It outruns the load side (its req/s is the load's); its CPU per request is the figure.
         "port": FLOOR_PORT, "idle": False, "load_bound": True},
    ]
    wanted = set(args.only.split(",")) if args.only else None
    return [c for c in all_configs if wanted is None or c["key"] in wanted]


def closed_loop(cfg: dict, args, out: Path, seconds: int) -> dict:
    """One wrk run with the measured process's CPU and the proxy core's steal time around it."""
    before = measure.cpu_snapshot(cfg["pid"])
    steal0 = measure.steal(args.proxy_cpus)
    r = measure.wrk(cfg["url"], args, seconds, out)
    steal1 = measure.steal(args.proxy_cpus)
    after = measure.cpu_snapshot(cfg["pid"])
    r.update(measure.cpu_delta(before, after, r["requests"]))
    r["steal"] = measure.steal_share(steal0, steal1)
    return r


def undisturbed(run, cfg: dict, ours: list[int], args) -> dict:
    """Runs a measurement when the machine is quiet; runs it again (up to --attempts) when other
    processes took CPU meanwhile, since this machine may be shared with builds."""
    for attempt in range(1, args.attempts + 1):
        measure.wait_quiet(ours, args.quiet_limit, args.quiet_wait)
        a = measure.activity(ours)
        r = run()
        f = measure.foreign_cores(a, measure.activity(ours))
        cfg["sent"] += r["requests"]
        r["foreign_cores"] = f
        r["attempt"] = attempt
        # A proxy that was not kept busy in a closed-loop run was waiting on the load side, which
        # on this shared machine means the load core was slowed down (possibly from outside, where
        # no counter here shows it): such a run says nothing about the proxy.
        closed = "steal" in r  # only closed-loop runs read the steal time
        starved = closed and cfg["argv"] is not None and not cfg.get("load_bound") and r["busy"] < 0.95
        if f <= 2 * args.quiet_limit and not starved:
            break
        why = (f"other processes used {f:.2f} cores meanwhile" if f > 2 * args.quiet_limit
               else f"the proxy was only {r['busy']:.0%} busy")
        print(f"       ({cfg['label']}: {why}; "
              f"{'again' if attempt < args.attempts else 'kept, marked as disturbed'})",
              flush=True)
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sidecar", type=Path, default=ROOT / "target/per-pod/release/xray-sidecar",
                    help="the sidecar binary (scripts/bench builds the per-pod one there)")
    ap.add_argument("--envoy", type=Path, required=True, help="the envoy binary itself")
    ap.add_argument("--floor", type=Path, default=ROOT / "target/per-pod/release/examples/floor",
                    help="bench/floor.rs built (scripts/bench builds it there)")
    ap.add_argument("--nginx", default="nginx")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--oha", default="oha")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=int, default=4, help="seconds of each closed-loop run")
    ap.add_argument("--rounds", type=int, default=3, help="closed-loop runs per configuration")
    ap.add_argument("--open-duration", type=int, default=5, help="seconds of each open-loop run")
    ap.add_argument("--open-rounds", type=int, default=3, help="open-loop runs per configuration")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up")
    ap.add_argument("--rate", type=int, default=2000, help="open-loop requests per second")
    ap.add_argument("--proxy-cpus", default="1", help="CPU list for the proxy under test ('' = no pinning)")
    ap.add_argument("--load-cpus", default="0", help="CPU list for load generator, upstream, sink")
    ap.add_argument("--only", help="comma-separated configuration keys (default: all)")
    ap.add_argument("--quiet-limit", type=float, default=0.05,
                    help="CPU (in cores) other processes may use for the machine to count as quiet")
    ap.add_argument("--quiet-wait", type=float, default=30,
                    help="seconds to wait for a quiet machine before each measured run")
    ap.add_argument("--attempts", type=int, default=3,
                    help="tries per measured run when other processes disturb it")
    ap.add_argument("--no-syscalls", dest="syscalls", action="store_false",
                    help="skip counting system calls per request with perf")
    ap.add_argument("--idle-connections", type=int, default=10000,
                    help="idle keep-alive connections for the RSS-per-connection figure (0: skip)")
    ap.add_argument("--idle-settle", type=float, default=15,
                    help="seconds the idle connections sit idle before RSS is read (the sidecar hands their "
                         "buffers back after 1-2 s, its allocator the freed pages about a second later)")
    ap.add_argument("--settle", type=float, default=11,
                    help="seconds without load before RSS is read (steady, not at the peak)")
    ap.add_argument("--results", type=Path, default=BENCH / "results")
    args = ap.parse_args()
    args.proxy_cpus = args.proxy_cpus or None
    args.load_cpus = args.load_cpus or None

    for tool in (args.wrk, args.oha, args.nginx, "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: `{tool}` not found; run scripts/bench")
    for binary in (args.sidecar, args.envoy, args.floor):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"bench: {binary} is not an executable")

    fds = measure.raise_fd_limit()
    if args.idle_connections and fds < args.idle_connections + 1000:
        print(f"bench: open-file limit {fds}: idle connections cut to {fds - 1000}", flush=True)
        args.idle_connections = max(0, fds - 1000)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = (args.results / stamp).resolve()
    work = run_dir / "work"
    for d in ("tmp-upstream", "tmp-proxy-body", "tmp-proxy"):
        (work / d).mkdir(parents=True, exist_ok=True)

    meta = measure.machine(args)
    print(f"bench: results in {run_dir}", flush=True)
    print(f"bench: proxy on CPU {args.proxy_cpus or 'any'}, load/upstream/sink on CPU "
          f"{args.load_cpus or 'any'}; wrk -t1 -c{args.connections} -d{args.duration}s; "
          f"x {args.rounds} rounds; oha -q {args.rate} --latency-correction -c{args.connections} "
          f"-z {args.open_duration}s x {args.open_rounds} rounds",
          flush=True)

    up_conf = render("nginx-upstream.conf", work / "nginx-upstream.conf", DIR=work,
                     PORT=UPSTREAM_PORT)
    configs = configurations(args, work)
    procs: list[Proc] = []
    sinks: dict[str, tuple[Proc, Path]] = {}
    results: dict[str, dict] = {}
    try:
        upstream = Proc("upstream", pinned(args.load_cpus, [args.nginx, "-p", str(work), "-c",
                                                            str(up_conf)]), run_dir / "upstream.log")
        procs.append(upstream)
        wait_http(f"http://127.0.0.1:{UPSTREAM_PORT}/", upstream)
        # Every proxy runs from the start, each on the proxy core; the idle ones cost nothing,
        # and the closed-loop runs can then alternate between them (see below).
        for cfg in configs:
            out = run_dir / cfg["key"]
            out.mkdir(parents=True, exist_ok=True)
            cfg["out"] = out
            cfg["url"] = f"http://127.0.0.1:{cfg['port']}/"
            if cfg.get("sink_port"):
                sinks[cfg["key"]] = start_sink(cfg["key"], cfg.get("sink", "udp"), cfg["sink_port"],
                                               out, args.load_cpus)
            if cfg["argv"]:
                env = dict(os.environ, RUST_LOG="warn")
                proc = Proc(cfg["key"], pinned(args.proxy_cpus, cfg["argv"]), out / "proxy.log",
                            env)
                procs.append(proc)
            else:
                proc = upstream
            wait_http(cfg["url"], proc)
            cfg["proc"], cfg["pid"] = proc, proc.pid
            cfg["sent"] = 1  # the readiness check
            results[cfg["key"]] = {"key": cfg["key"], "label": cfg["label"],
                                   "measured": "upstream" if proc is upstream else "proxy",
                                   "load_bound": bool(cfg.get("load_bound")),
                                   "traced": bool(cfg.get("sink_port")) and cfg.get("all_sampled", True),
                                   "closed_runs": []}

        ours = [p.pid for p in procs] + [sink.pid for sink, _ in sinks.values()]
        print("bench: warm-up", flush=True)
        for cfg in configs:
            w = measure.wrk(cfg["url"], args, args.warmup, cfg["out"] / "warmup-wrk.txt")
            cfg["sent"] += w["requests"]

        # Closed loop: the rounds alternate between the configurations (rotating the order), so a
        # slow spell of this shared machine touches all of them alike rather than one.
        for rnd in range(args.rounds):
            order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
            print(f"bench: closed loop, round {rnd + 1} of {args.rounds}", flush=True)
            for cfg in order:
                r = undisturbed(lambda: closed_loop(cfg, args, cfg["out"] / f"wrk-{rnd + 1}.txt",
                                                    args.duration), cfg, ours, args)
                results[cfg["key"]]["closed_runs"].append(r)
                print(f"       {cfg['label']:32s} {r['rps']:8.0f} req/s, busy {r['busy']:.0%}, "
                      f"{r['cpu_us_per_req']:.1f} us CPU/req, steal {r['steal']:.0%}", flush=True)

        if args.syscalls and shutil.which("perf"):
            print("bench: system calls per request (perf stat)", flush=True)
            for cfg in configs:
                sc = measure.syscalls(cfg["pid"], cfg["url"], args, 2, cfg["out"] / "syscalls.txt")
                results[cfg["key"]]["syscalls"] = sc
                if sc:
                    print(f"       {cfg['label']:32s} " + ", ".join(
                        f"{k} {v:.2f}" for k, v in sc.items()), flush=True)
                cfg["sent"] += measure.wrk_requests(cfg["out"] / "syscalls.txt")

        # Open loop, in alternating rounds too: a tail percentile is what a noisy spell spoils
        # first, so each configuration's figures are the median over its rounds.
        for rnd in range(args.open_rounds):
            order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
            print(f"bench: open loop at {args.rate} req/s, round {rnd + 1} of {args.open_rounds}",
                  flush=True)
            for cfg in order:
                def open_loop(cfg=cfg, rnd=rnd):
                    before = measure.cpu_snapshot(cfg["pid"])
                    o = measure.oha(cfg["url"], args, cfg["out"] / f"oha-{rnd + 1}.json")
                    after = measure.cpu_snapshot(cfg["pid"])
                    o.update(measure.cpu_delta(before, after, o["requests"]))
                    return o

                o = undisturbed(open_loop, cfg, ours, args)
                results[cfg["key"]].setdefault("open_runs", []).append(o)
                print(f"       {cfg['label']:32s} p50 {o['p50_us']:.0f} us, p99 {o['p99_us']:.0f} us,"
                      f" {o['cpu_us_per_req']:.1f} us CPU/req", flush=True)
        # RSS is read once the load has stopped for a while, as a pod sits between bursts: the
        # sidecar's allocator hands back what a burst left free about a second after it falls idle.
        print(f"bench: {args.settle} s without load before reading RSS", flush=True)
        time.sleep(args.settle)
        for cfg in configs:
            res = results[cfg["key"]]
            res["open"] = measure.combine_open(res["open_runs"])
            res["memory"] = measure.memory(cfg["pid"])
            res["closed"] = measure.combine(res["closed_runs"])
            print("       " + report.one_line(res), flush=True)
        if args.idle_connections:
            print(f"bench: RSS per idle keep-alive connection ({args.idle_connections} connections)",
                  flush=True)
            for cfg in configs:
                if results[cfg["key"]]["measured"] != "proxy" or not cfg.get("idle", True):
                    continue
                idle = measure.idle_connections(cfg["pid"], cfg["port"], args.idle_connections,
                                                cfg["out"] / "idle-connections.json", args.idle_settle)
                results[cfg["key"]]["idle"] = idle
                cfg["sent"] += idle["connections"]
                print(f"       {cfg['label']:32s} {idle['connections']} connections, "
                      f"{report.fmt(idle['kb_per_connection'], '{:.2f}')} KB each "
                      f"({idle['failures']} failed)", flush=True)
    finally:
        for proc in reversed(procs):
            code = proc.stop()
            for cfg in configs:
                if cfg.get("proc") is proc and proc is not procs[0]:
                    results[cfg["key"]]["exit_code"] = code
        time.sleep(0.3)  # let the last datagrams and exports land before the sinks count
        for sink, _ in sinks.values():
            sink.stop()
    for cfg in configs:
        res = results[cfg["key"]]
        res["requests_sent"] = cfg["sent"]
        if cfg["key"] in sinks:
            try:
                res["sink"] = json.loads(sinks[cfg["key"]][1].read_text())
            except (OSError, ValueError) as e:
                res["sink"] = {"error": f"no sink stats: {e}"}
        else:
            res["sink"] = {}

    results = [results[c["key"]] for c in configs]
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
