"""Measurements for the benchmark: load generators (wrk, oha) and what /proc says about a process.

CPU is utime + stime from /proc/PID/stat (clock ticks, every thread, live ones and exited ones),
summed over the process and its descendants (nginx serves from a worker under its master).
Memory is VmRSS from /proc/PID/status, summed the same way.
"""

import json
import re
import os
import resource
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
            "-z", f"{args.open_duration}s", "-q", str(args.rate), "--latency-correction",
            "-c", str(args.connections), url]
    stdout = _run(argv, out.with_suffix(".txt"), args.open_duration + 60)
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
    secs = float(summary.get("total") or args.open_duration)
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


SYSCALLS = ("raw_syscalls:sys_enter", "syscalls:sys_enter_epoll_wait",
            "syscalls:sys_enter_sendto", "syscalls:sys_enter_sendmsg",
            "syscalls:sys_enter_sendmmsg")


def syscalls(pid: int, url: str, args, seconds: int, out: Path) -> dict | None:
    """System calls per request of `pid` (and its children) under closed-loop load, counted by
    `perf stat` on the syscall tracepoints: exact counts, not samples, so not disturbed by other
    load on the machine. None when perf or the tracepoints are not available."""
    pids = ",".join(str(p) for p in _tree(pid))
    wrk_argv = [*pin(args.load_cpus), args.wrk, "-t1", f"-c{args.connections}", f"-d{seconds}s",
                "-s", str(BENCH / "wrk-report.lua"), url]
    argv = ["perf", "stat", "-x", ",", "-e", ",".join(SYSCALLS), "-p", pids, "--", *wrk_argv]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except (OSError, subprocess.SubprocessError):
        return None
    out.write_text(f"$ {' '.join(argv)}\n{p.stdout}\n--- stderr ---\n{p.stderr}")
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if p.returncode != 0 or line is None:
        return None
    requests = json.loads(line[len("WRK_JSON "):])["requests"]
    counts = {}
    for ln in p.stderr.splitlines():
        parts = ln.split(",")
        if len(parts) > 2 and parts[2] in SYSCALLS:
            try:
                counts[parts[2].split(":")[1].replace("sys_enter_", "")] = int(parts[0])
            except ValueError:
                return None  # "<not supported>" or "<not counted>"
    if "sys_enter" not in counts or not requests:
        return None
    per = {k: v / requests for k, v in counts.items()}
    per["all"] = per.pop("sys_enter")
    return per


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


def combine(runs: list[dict]) -> dict:
    """The closed-loop runs of one configuration together: the median req/s, and CPU per request
    over all of them."""
    rps = sorted(r["rps"] for r in runs)
    n = len(rps)
    median = rps[n // 2] if n % 2 else (rps[n // 2 - 1] + rps[n // 2]) / 2
    requests = sum(r["requests"] for r in runs)
    cpu_s = sum(r["cpu_s"] for r in runs)
    return {
        "runs": n,
        "rps": median,
        "rps_min": rps[0],
        "rps_max": rps[-1],
        "requests": requests,
        "seconds": sum(r["seconds"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "error_detail": [r["error_detail"] for r in runs if r["errors"]],
        "cpu_s": cpu_s,
        "cpu_us_per_req": cpu_s * 1e6 / requests if requests else None,
        "busy": sum(r["busy"] for r in runs) / n,
        "foreign_cores": max(r.get("foreign_cores", 0.0) for r in runs),
        "steal": sum(r["steal"] for r in runs) / n,
    }


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def combine_open(runs: list[dict]) -> dict:
    """The open-loop runs of one configuration: the median of each percentile over the runs, the
    CPU per request over all of them."""
    out = {"runs": len(runs)}
    for k in ("p50_us", "p90_us", "p99_us", "p99.9_us", "rps"):
        vals = [r[k] for r in runs if r.get(k) is not None]
        out[k] = _median(vals) if vals else None
    for k in ("p50_us", "p99_us"):
        vals = [r[k] for r in runs if r.get(k) is not None]
        out[k + "_range"] = [min(vals), max(vals)] if vals else None
    for k in ("requests", "ok", "errors", "seconds", "cpu_s"):
        out[k] = sum(r[k] for r in runs)
    out["max_us"] = max(r["max_us"] for r in runs)
    out["cpu_us_per_req"] = out["cpu_s"] * 1e6 / out["requests"] if out["requests"] else None
    out["foreign_cores"] = max(r.get("foreign_cores", 0.0) for r in runs)
    out["error_detail"] = [r["error_detail"] for r in runs if r["errors"]]
    return out


def steal(cpus: str | None) -> tuple[int, int]:
    """(steal, total) jiffies of the given CPUs ("1", "0-1", "0,1"), or of all when None."""
    wanted = None
    if cpus:
        wanted = set()
        for part in cpus.split(","):
            lo, _, hi = part.partition("-")
            wanted.update(range(int(lo), int(hi or lo) + 1))
    st = tot = 0
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *vals = line.split()
            if wanted is None and name != "cpu":
                continue
            if wanted is not None and (name == "cpu" or int(name[3:]) not in wanted):
                continue
            nums = [int(v) for v in vals[:8]]
            st += nums[7]
            tot += sum(nums)
    return st, tot


def steal_share(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Share of the CPUs' time the hypervisor gave to others between two readings."""
    total = b[1] - a[1]
    return (b[0] - a[0]) / total if total > 0 else 0.0


def _busy_jiffies() -> int:
    """user + nice + system of all CPUs (irq and softirq time is not charged to processes either)."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:4]]
    return sum(vals)


def activity(pids: list[int]) -> dict:
    """A reading for `foreign_cores`: the machine's busy time, and ours."""
    ours = 0
    for pid in pids:
        for p in _tree(pid):
            try:
                ours += _ticks(p)
            except (OSError, ValueError, IndexError):
                pass
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return {"busy": _busy_jiffies(), "ours": ours,
            "reaped": ch.ru_utime + ch.ru_stime + me.ru_utime + me.ru_stime,
            "t": time.monotonic()}


def foreign_cores(a: dict, b: dict) -> float:
    """CPU used by processes that are not the benchmark's, in cores, between two readings.

    The benchmark's own: its servers (`pids` and their children), the load generators (finished
    children of this script, counted by RUSAGE_CHILDREN) and this script.
    """
    wall = b["t"] - a["t"]
    if wall <= 0:
        return 0.0
    busy = (b["busy"] - a["busy"]) / TICKS
    ours = (b["ours"] - a["ours"]) / TICKS + (b["reaped"] - a["reaped"])
    return max(0.0, busy - ours) / wall


def wait_quiet(pids: list[int], limit: float, max_wait: float) -> float:
    """Waits (at most `max_wait` s) until other processes use under `limit` cores over 1 s;
    returns the last reading."""
    deadline = time.monotonic() + max_wait
    while True:
        a = activity(pids)
        time.sleep(1.0)
        f = foreign_cores(a, activity(pids))
        if f < limit or time.monotonic() >= deadline:
            return f


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


def idle_connections(pid: int, port: int, count: int, out: Path, settle: float) -> dict | None:
    """RSS per idle keep-alive connection: opens `count` connections to the proxy, makes one
    request on each (so that each has served a request and holds whatever a served connection
    keeps), leaves them idle for `settle` seconds, and divides the growth of the proxy's RSS by `count`. Needs
    `count` + a few hundred file descriptors (raised by raise_fd_limit)."""
    import asyncio

    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"

    async def one(conns: list, failures: list):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(request)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            if not head.startswith(b"HTTP/1.1 200"):
                # A refused connection (a connection cap, a 503) holds nothing: not an idle one.
                raise OSError("answered " + head.split(b"\r\n", 1)[0].decode("latin-1"))
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if length:
                await asyncio.wait_for(r.readexactly(int(length.group(1))), 10)
            conns.append(w)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            failures.append(repr(e))

    async def run():
        before = memory(pid)["rss_mb"] * 1024
        conns: list = []
        failures: list = []
        for start in range(0, count, 250):
            await asyncio.gather(*(one(conns, failures) for _ in range(min(250, count - start))))
        # Idle, as a pod's keep-alive connections sit between requests: the sidecar hands an idle
        # connection's buffers back after 1-2 s, and its allocator the freed pages to the system
        # about a second after they fall idle.
        await asyncio.sleep(settle)
        after = memory(pid)["rss_mb"] * 1024
        for w in conns:
            w.close()
        return before, after, len(conns), failures

    before, after, opened, failures = asyncio.run(run())
    result = {"connections": opened, "asked": count, "rss_before_kb": before, "rss_after_kb": after,
              "kb_per_connection": (after - before) / opened if opened else None,
              "failures": len(failures)}
    out.write_text(json.dumps({**result, "first_failures": failures[:5]}, indent=2))
    return result


def raise_fd_limit() -> int:
    """Raises this process's open-file limit (inherited by the servers it starts) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


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
        "rounds": args.rounds,
        "quiet_limit": args.quiet_limit,
        "open_duration_s": args.open_duration,
        "open_rounds": args.open_rounds,
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
