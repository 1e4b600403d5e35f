"""Turns the benchmark's measurements into the summary: a table, the ratios against the targets,
and warnings where a figure should not be trusted."""

TARGETS = {
    "rps_vs_nginx": (">=", 0.9, "sidecar (100 %) req/s / nginx req/s"),
    "rps_vs_envoy": (">=", 4.0, "sidecar (100 %) req/s / Envoy+X-Ray req/s"),
    "rps_otlp_vs_nginx": (">=", 0.95, "sidecar (100 %, OTLP exporter) req/s / nginx req/s"),
    "added_p50_vs_nginx_us": ("<=", 0.0, "added p50 over direct at the fixed rate, sidecar - nginx, us"),
    "added_p99_vs_nginx_us": ("<=", 0.0, "added p99 over direct at the fixed rate, sidecar - nginx, us"),
    "tracing_cpu_us": ("<=", 3.0, "tracing CPU per request, on - off (closed loop), us"),
    "syscalls_per_req": ("<=", 4.5, "sidecar (100 %) system calls per request (nginx: ~5.1)"),
    "rss_mb": ("<=", 10.0, "sidecar (100 %) VmRSS after the load, MB"),
    "kb_per_idle_connection": ("<=", 4.0, "sidecar (100 %) RSS per idle keep-alive connection, KB"),
    "segments_lost": ("<=", 0.0, "segments lost (sidecar 100 %: requests - segments received)"),
    "spans_lost": ("<=", 0.0, "spans lost (sidecar 100 %, OTLP: requests - spans received)"),
}


def received(sink: dict):
    """What a sink counted: segment datagrams (UDP) or spans (OTLP); None without a count."""
    return sink.get("datagrams", sink.get("spans"))


def fmt(v, spec="{:.0f}"):
    """A figure, or "-" when it is missing."""
    return "-" if v is None else spec.format(v)


def one_line(r: dict) -> str:
    c, o, m = r["closed"], r["open"], r["memory"]
    s = f"{c['rps']:.0f} req/s (busy {c['busy']:.0%}, {fmt(c['cpu_us_per_req'], '{:.1f}')} us CPU/req)"
    s += f"; at {o['rps']:.0f}/s p50 {fmt(o['p50_us'])} us p99 {fmt(o['p99_us'])} us"
    s += f"; RSS {m['rss_mb']:.1f} MB"
    if r.get("traced"):
        s += f"; {r['open']['requests']} requests"
    return s


def _get(results, key):
    return next((r for r in results if r["key"] == key), None)


def summarise(results: list[dict], meta: dict) -> dict:
    by = {r["key"]: r for r in results}
    ratios: dict = {}
    sc, off, ng, ev, d = (by.get(k) for k in ("sidecar", "sidecar_off", "nginx", "envoy", "direct"))
    otlp = by.get("sidecar_otlp")
    if sc and ng:
        ratios["rps_vs_nginx"] = sc["closed"]["rps"] / ng["closed"]["rps"]
    if sc and ev:
        ratios["rps_vs_envoy"] = sc["closed"]["rps"] / ev["closed"]["rps"]
    if otlp and ng:
        ratios["rps_otlp_vs_nginx"] = otlp["closed"]["rps"] / ng["closed"]["rps"]
    if otlp and received(otlp.get("sink") or {}) is not None:
        # Spans may exceed requests as segments do (requests in flight when wrk stops).
        ratios["spans_lost"] = max(0, otlp["requests_sent"] - received(otlp["sink"]))
    if sc and d:
        ratios["added_p50_us"] = sc["open"]["p50_us"] - d["open"]["p50_us"]
        ratios["added_p99_us"] = sc["open"]["p99_us"] - d["open"]["p99_us"]
    # What the rules a pod starts with cost (not a target): most requests unsampled.
    dflt = by.get("sidecar_default")
    if dflt and ng:
        ratios["rps_default_vs_nginx"] = dflt["closed"]["rps"] / ng["closed"]["rps"]
    if dflt and off:
        ratios["default_sampling_cpu_us"] = (dflt["closed"]["cpu_us_per_req"]
                                             - off["closed"]["cpu_us_per_req"])
    if sc and off:
        ratios["tracing_cpu_us"] = sc["closed"]["cpu_us_per_req"] - off["closed"]["cpu_us_per_req"]
        ratios["tracing_cpu_us_open"] = sc["open"]["cpu_us_per_req"] - off["open"]["cpu_us_per_req"]
    if sc and ng and d:
        ratios["added_p50_vs_nginx_us"] = sc["open"]["p50_us"] - ng["open"]["p50_us"]
        ratios["added_p99_vs_nginx_us"] = sc["open"]["p99_us"] - ng["open"]["p99_us"]
    if sc:
        ratios["rss_mb"] = sc["memory"]["rss_mb"]
        if (sc.get("syscalls") or {}).get("all") is not None:
            ratios["syscalls_per_req"] = sc["syscalls"]["all"]
        if (sc.get("idle") or {}).get("kb_per_connection") is not None:
            ratios["kb_per_idle_connection"] = sc["idle"]["kb_per_connection"]
        if (sc.get("sink") or {}).get("datagrams") is not None:
            # Segments may exceed requests (wrk does not count requests in flight at its end).
            ratios["segments_lost"] = max(0, sc["requests_sent"] - sc["sink"]["datagrams"])
    # The same comparisons per proxy core (1 / CPU per request): what each would do alone on a core.
    for k, other in (("nginx", ng), ("envoy", ev)):
        if sc and other:
            ratios[f"per_core_vs_{k}"] = (other["closed"]["cpu_us_per_req"]
                                          / sc["closed"]["cpu_us_per_req"])
    # CPU per request above the floor (bench/floor.rs): what each proxy's own machinery costs on
    # top of what the kernel and the runtime take from any proxy.
    fl = by.get("floor")
    for k in ("sidecar", "sidecar_off", "nginx"):
        if fl and by.get(k):
            ratios[f"{k}_above_floor_us"] = (by[k]["closed"]["cpu_us_per_req"]
                                             - fl["closed"]["cpu_us_per_req"])
    # The other proxies' added latency, for context.
    for k in ("sidecar_off", "nginx", "envoy"):
        if by.get(k) and d:
            ratios[f"{k}_added_p50_us"] = by[k]["open"]["p50_us"] - d["open"]["p50_us"]
            ratios[f"{k}_added_p99_us"] = by[k]["open"]["p99_us"] - d["open"]["p99_us"]
    verdicts = {}
    for k, (op, limit, what) in TARGETS.items():
        if k in ratios:
            v = ratios[k]
            ok = v >= limit if op == ">=" else v <= limit
            verdicts[k] = {"value": v, "target": f"{op} {limit:g}", "what": what, "met": ok}
    return {"machine": meta, "results": results, "ratios": ratios, "targets": verdicts,
            "warnings": warnings(results, meta)}


def warnings(results: list[dict], meta: dict) -> list[str]:
    out = []
    for r in results:
        name = r["label"]
        c, o = r["closed"], r["open"]
        if c["errors"]:
            out.append(f"{name}: wrk saw {c['errors']} errors {c['error_detail']}")
        if o["errors"] or o["ok"] != o["requests"]:
            out.append(f"{name}: oha saw {o['errors']} errors and {o['requests'] - o['ok']} non-200")
        if o["rps"] is not None and o["rps"] < 0.95 * meta["rate"]:
            out.append(f"{name}: oha reached {o['rps']:.0f}/s of the {meta['rate']}/s asked")
        for what, v in (("closed", c.get("foreign_cores", 0.0)), ("open", o.get("foreign_cores", 0.0))):
            if v > 2 * meta["quiet_limit"]:
                out.append(f"{name}: other processes used {v:.2f} cores during a {what}-loop run "
                           "(the machine was not quiet): its figures are disturbed")
        if r["measured"] == "proxy" and not r.get("load_bound") and c["busy"] < 0.9:
            out.append(f"{name}: the proxy was only {c['busy']:.0%} busy in the closed loop: "
                       "its req/s is bounded by the load side, not by the proxy")
        sink = r.get("sink") or {}
        if r.get("traced"):
            got, sent = received(sink) or 0, r["requests_sent"]
            if got < 0.99 * sent:
                out.append(f"{name}: only {got} segments for {sent} requests")
            if sink.get("malformed"):
                out.append(f"{name}: the OTLP sink could not parse {sink['malformed']} exports")
            if sink.get("bad_header"):
                out.append(f"{name}: {sink['bad_header']} datagrams without the daemon header")
            if sink.get("bad_document"):
                out.append(f"{name}: {sink['bad_document']} of {sink.get('checked')} checked "
                           "datagrams are not segment documents")
        if sink.get("kernel_drops"):
            out.append(f"{name}: the sink's socket dropped {sink['kernel_drops']} datagrams")
        if r.get("exit_code") not in (None, 0):
            out.append(f"{name}: exited with {r['exit_code']}")
    return out


def markdown(s: dict) -> str:
    m = s["machine"]
    lines = [
        "## Results",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}. Proxy under test on CPU "
        f"{m['proxy_cpus'] or 'any'}; wrk/oha, upstream and the sinks (UDP, OTLP) on CPU {m['load_cpus'] or 'any'}.",
        f"Closed loop: `wrk -t1 -c{m['connections']} -d{m['duration_s']}s`, {m['rounds']} runs per "
        f"configuration in alternating rounds, after {m['warmup_s']} s warm-up; req/s is their "
        f"median (min-max in brackets). Open loop: `oha -q {m['rate']} --latency-correction "
        f"-c{m['connections']} -z {m['open_duration_s']}s`, {m['open_rounds']} runs per "
        f"configuration in alternating rounds; each percentile is the median over the runs.",
        "",
        "| configuration | req/s | proxy busy | CPU us/req | req/s per core | p50 us | p90 us | p99 us | p99.9 us "
        "| CPU us/req @rate | RSS MB (peak) | KB/idle conn | syscalls/req | segments / requests |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in s["results"]:
        c, o, mem = r["closed"], r["open"], r["memory"]
        direct = r["measured"] == "upstream"
        seg = (f"{received(r['sink'])} / {r['requests_sent']}" if r.get("traced")
               else str(received(r["sink"]) or "-"))
        lines.append(
            f"| {r['label']}{' (upstream)' if direct else ''} "
            f"| {c['rps']:.0f} ({c['rps_min']:.0f}-{c['rps_max']:.0f}) | {c['busy']:.0%} "
            f"| {fmt(c['cpu_us_per_req'], '{:.1f}')} "
            f"| {fmt(1e6 / c['cpu_us_per_req'] if c['cpu_us_per_req'] else None)} | {fmt(o['p50_us'])} | {fmt(o['p90_us'])} "
            f"| {fmt(o['p99_us'])} | {fmt(o['p99.9_us'])} | {fmt(o['cpu_us_per_req'], '{:.1f}')} "
            f"| {mem['rss_mb']:.1f} ({mem.get('hwm_mb', 0):.1f}) "
            f"| {fmt((r.get('idle') or {}).get('kb_per_connection'), '{:.2f}')} "
            f"| {fmt((r.get('syscalls') or {}).get('all'), '{:.2f}')} "
            f"| {seg} |")
    lines += ["", "req/s: closed loop (wrk). busy: the proxy's CPU time / wall time during it. "
              "req/s per core: 1 / CPU per request, what the proxy would do with a whole core. "
              "p50..p99.9: open loop at the fixed rate, corrected for coordinated omission. "
              "For direct, busy / CPU / RSS are the upstream's (nginx, master + worker); for "
              "nginx they are master + worker. For the OTLP configuration, segments are the spans the stand-in collector received. Segments may exceed requests by up to the "
              "connections in flight when each wrk run stops (wrk does not count those). "
              "syscalls/req: all system calls of the measured process per request, counted by "
              "perf stat during a separate 2 s wrk run. RSS: VmRSS after the load and the rest that "
              "follows it (peak: VmHWM, the most it held since it started). KB/idle conn: growth of the proxy's RSS "
              "with N idle keep-alive connections open (each served one request), divided by N.", "", "### Against the targets", "",
              "| what | value | target | met |", "|---|---:|---:|:---:|"]
    for v in s["targets"].values():
        val = v["value"]
        lines.append(f"| {v['what']} | {val:.2f} | {v['target']} | {'yes' if v['met'] else 'NO'} |")
    r = s["ratios"]
    extra = []
    for k, label in (("nginx", "nginx"), ("envoy", "Envoy + X-Ray")):
        if f"per_core_vs_{k}" in r:
            extra.append(f"per proxy core (1 / CPU per request), sidecar (100 %) / {label}: "
                         f"{r['per_core_vs_' + k]:.2f}")
    if "sidecar_above_floor_us" in r:
        fl = _get(s["results"], "floor")
        extra.append(f"CPU per request above the floor ({fl['closed']['cpu_us_per_req']:.1f} us): "
                     + ", ".join(f"{label} {r[k + '_above_floor_us']:.1f} us"
                                 for k, label in (("sidecar", "sidecar (100 %)"),
                                                  ("sidecar_off", "sidecar, tracing off"),
                                                  ("nginx", "nginx"))
                                 if k + "_above_floor_us" in r))
    if "rps_default_vs_nginx" in r:
        line = f"sidecar with the default rules (1/s, then 5 %) req/s / nginx req/s: {r['rps_default_vs_nginx']:.2f}"
        if "default_sampling_cpu_us" in r:
            line += f"; its tracing CPU per request (on - off): {r['default_sampling_cpu_us']:.1f} us"
        extra.append(line)
    if "tracing_cpu_us_open" in r:
        extra.append(f"tracing CPU per request at the fixed rate: {r['tracing_cpu_us_open']:.1f} us")
    for k, label in (("sidecar_off", "sidecar, tracing off"), ("nginx", "nginx"),
                     ("envoy", "Envoy + X-Ray")):
        if f"{k}_added_p50_us" in r:
            extra.append(f"{label} adds p50 {r[k + '_added_p50_us']:.0f} us, "
                         f"p99 {r[k + '_added_p99_us']:.0f} us over direct")
    if extra:
        lines += [""] + [f"- {e}" for e in extra]
    if s["warnings"]:
        lines += ["", "### Warnings", ""] + [f"- {w}" for w in s["warnings"]]
    return "\n".join(lines) + "\n"
