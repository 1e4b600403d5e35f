"""Measurements for the benchmark: load generators (wrk, oha) and what /proc says about a process.

CPU is utime + stime from /proc/PID/stat (clock ticks, every thread, live ones and exited ones),
summed over the process and its descendants (nginx serves from a worker under its master).
Memory is VmRSS from /proc/PID/status, summed the same way.
"""

import json
import os
import platform
import subprocess
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def _run(argv: list[str], out: Path, timeout: float) -> str:
    """Runs a load generator, keeps its raw output, fails loudly on a non-zero exit."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    out.write_text(f"$ {' '.join(argv)}\n{p.stdout}\n--- stderr ---\n{p.stderr}")
    if p.returncode != 0:
        raise SystemExit(f"bench: {argv[0]} failed ({p.returncode}); see {out}")
    return p.stdout


def wrk(url: str, args, seconds: int, out: Path) -> dict:
    """Closed loop: one thread, fixed connections, as fast as the server answers."""
    argv = [*pin(args.load_cpus), args.wrk, "-t1", f"-c{args.connections}", f"-d{seconds}s",
            "-s", str(BENCH / "wrk-report.lua"), url]
    stdout = _run(argv, out, seconds + 30)
    line = next((ln for ln in stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise SystemExit(f"bench: no WRK_JSON line in wrk's output; see {out}")
    r = json.loads(line[len("WRK_JSON "):])
    secs = r["duration_us"] / 1e6
    errors = sum(r["errors"].values())
    return {
        "requests": r["requests"],
        "seconds": secs,
        "rps": r["requests"] / secs if secs else 0.0,
        "errors": errors,
        "error_detail": r["errors"],
        "latency_us": r["latency_us"],
    }


def wrk_requests(out: Path) -> int:
    for ln in out.read_text().splitlines():
        if ln.startswith("WRK_JSON "):
            return int(json.loads(ln[len("WRK_JSON "):])["requests"])
    return 0


def oha(url: str, args, out: Path) -> dict:
    """Open loop: a fixed request rate; latency counted from when each request was due."""
    argv = [*pin(args.load_cpus), args.oha, "--no-tui", "--output-format", "json", "-w",
            "-z", f"{args.duration}s", "-q", str(args.rate), "--latency-correction",
            "-c", str(args.connections), url]
    stdout = _run(argv, out.with_suffix(".txt"), args.duration + 60)
    start = stdout.find("{")
    if start < 0:
        raise SystemExit(f"bench: no JSON in oha's output; see {out.with_suffix('.txt')}")
    r = json.loads(stdout[start:])
    out.write_text(json.dumps(r, indent=2))
    codes = {str(k): int(v) for k, v in (r.get("statusCodeDistribution") or {}).items()}
    errors = {str(k): int(v) for k, v in (r.get("errorDistribution") or {}).items()}
    pct = r.get("latencyPercentiles") or {}
    summary = r.get("summary") or {}

    def us(key: str) -> float | None:
        v = pct.get(key)
        return None if v is None else v * 1e6

    ok = codes.get("200", 0)
    secs = float(summary.get("total") or args.duration)
    return {
        "requests": sum(codes.values()),
        "ok": ok,
        "errors": sum(errors.values()),
        "error_detail": errors,
        "seconds": secs,
        "rps": sum(codes.values()) / secs if secs else 0.0,
        "p50_us": us("p50"),
        "p90_us": us("p90"),
        "p99_us": us("p99"),
        "p99.9_us": us("p99.9"),
        "max_us": (summary.get("slowest") or 0) * 1e6,
    }


def pin(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def _tree(pid: int) -> list[int]:
    """The process and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return pids


def _ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command: state is field 3; utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def cpu_snapshot(pid: int) -> dict:
    total = 0
    for p in _tree(pid):
        try:
            total += _ticks(p)
        except (OSError, ValueError, IndexError):
            pass
    return {"ticks": total, "t": time.monotonic()}


def cpu_delta(before: dict, after: dict, requests: int) -> dict:
    cpu_s = (after["ticks"] - before["ticks"]) / TICKS
    wall = after["t"] - before["t"]
    return {
        "cpu_s": cpu_s,
        "busy": cpu_s / wall if wall > 0 else 0.0,
        "cpu_us_per_req": cpu_s * 1e6 / requests if requests else None,
    }


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def memory(pid: int) -> dict:
    pids = _tree(pid)
    rss = hwm = 0
    for p in pids:
        try:
            rss += _status_kb(p, "VmRSS")
            hwm += _status_kb(p, "VmHWM")
        except (OSError, ValueError):
            pass
    return {"rss_mb": rss / 1024, "hwm_mb": hwm / 1024, "processes": len(pids)}


def machine(args) -> dict:
    def version(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[-1][:200]
        except (OSError, subprocess.SubprocessError, IndexError):
            return None

    cpu = None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "proxy_cpus": args.proxy_cpus,
        "load_cpus": args.load_cpus,
        "connections": args.connections,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rate": args.rate,
        "versions": {
            "xray-sidecar": version([str(args.sidecar), "--version"]),
            "nginx": version([args.nginx, "-v"]),
            "envoy": version([str(args.envoy), "--version"]),
            "wrk": version([args.wrk, "-v"]),
            "oha": version([args.oha, "--version"]),
        },
    }
