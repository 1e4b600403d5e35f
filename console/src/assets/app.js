// The page: routes between map, trace list and timeline, fetches the JSON API, refreshes live.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const esc = (v) => Fmt.esc(v);
  const PAGE = 50;
  const FILTERS = ["status", "grpc_status", "client_ip", "url", "service", "min_duration", "max_duration", "expression"];
  const state = { view: null, selected: null, graph: null, offset: 0, traceId: null, row: null, trace: null };

  const mapLoad = newestOnly(), listLoad = newestOnly(), traceLoad = newestOnly();

  async function getJSON(url) {
    const resp = await fetch(url, { cache: "no-store" });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(body.message || `${resp.status} ${resp.statusText}`);
    return body;
  }

  /** "#/traces?status=500" → { view: "traces", params }; "#/trace/ID" → { view: "trace", id }. */
  function parseHash() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [path, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    if (path.startsWith("trace/")) return { view: "trace", id: decodeURIComponent(path.slice(6)), params };
    if (path === "traces") return { view: "traces", params };
    if (path === "sampling") return { view: "sampling", params };
    return { view: "map", params };
  }

  function show(view) {
    for (const v of ["map", "traces", "trace", "sampling"]) $("view-" + v).hidden = v !== view;
    for (const a of document.querySelectorAll("header nav a")) {
      a.classList.toggle("active", a.dataset.view === view || (view === "trace" && a.dataset.view === "traces"));
    }
    state.view = view;
  }

  async function route() {
    const { view, id, params } = parseHash();
    show(view);
    if (view === "map") return loadMap();
    if (view === "sampling") return SamplingView.load();
    if (view === "traces") {
      state.offset = Number(params.get("offset")) || 0;
      const form = $("filters");
      for (const name of FILTERS) form.elements[name].value = params.get(name) || "";
      return loadTraces();
    }
    state.traceId = id;
    state.row = null;
    return loadTrace();
  }

  // === Counters ===
  async function loadStats() {
    try {
      const s = await getJSON("/api/stats");
      $("stats").innerHTML = `received <b>${s.Received}</b> · malformed <b>${s.Malformed}</b> · ` +
        `traces <b>${s.Traces}</b>/${s.MaxTraces}` + (s.EvictedTraces ? ` · evicted ${s.EvictedTraces}` : "");
      if (s.LastMalformedReason) $("stats").title = "Last malformed datagram: " + s.LastMalformedReason;
    } catch (e) {
      $("stats").textContent = "console unreachable";
    }
  }

  // === Service map ===
  async function loadMap() {
    const range = $("range").value;
    const now = Date.now() / 1000;
    const query = range === "all" ? `start_time=0&end_time=${now}` : `start_time=${now - Number(range)}&end_time=${now}`;
    const current = mapLoad();
    let graph;
    try {
      graph = await getJSON("/api/service-graph?" + query);
    } catch (e) {
      if (current()) $("map-updated").textContent = "update failed: " + e.message;
      return;
    }
    if (!current()) return;
    state.graph = graph;
    drawMap();
    $("map-updated").textContent = "updated " + new Date().toLocaleTimeString([], { hour12: false });
  }

  function drawMap() {
    const drawn = ServiceMap.render($("map-svg"), state.graph, state.selected && state.selected.key, select);
    $("map-empty").hidden = drawn;
    $("map-svg").style.display = drawn ? "block" : "none";
    if (state.selected) refreshSelection();
  }

  function select(item) {
    state.selected = item;
    drawMap();
  }

  /** Re-finds the selected node or edge in the fresh graph, so its panel shows live figures. */
  function refreshSelection() {
    const services = state.graph.Services || [];
    const byKey = new Map(services.map((s) => [ServiceMap.keyOf(s), s]));
    const sel = state.selected;
    if (sel.kind === "node") {
      const s = byKey.get(sel.key);
      $("map-details").innerHTML = s ? nodeDetails(s, services) : `<p class="muted">No longer in this time range.</p>`;
      return;
    }
    const [fromKey, toKey] = sel.key.split("\u0001");
    const from = byKey.get(fromKey);
    const to = byKey.get(toKey);
    const edge = from && to && from.Edges.find((e) => e.ReferenceId === to.ReferenceId);
    $("map-details").innerHTML = edge ? edgeDetails(from, to, edge) : `<p class="muted">No longer in this time range.</p>`;
  }

  function statsTable(x) {
    const s = x.SummaryStatistics;
    const pct = (n) => (s.TotalCount ? ` (${Fmt.percent(n / s.TotalCount)})` : "");
    return `<table>
      <tr><td>Requests per minute</td><td>${Fmt.rate(x.RequestsPerMinute)}</td></tr>
      <tr><td>Average response</td><td>${Fmt.duration(x.AverageResponseTime)}</td></tr>
      <tr><td>p95 response</td><td>${Fmt.duration(x.P95ResponseTime)}</td></tr>
      <tr><td>Requests</td><td>${s.TotalCount}</td></tr>
      <tr><td>OK</td><td>${s.OkCount}${pct(s.OkCount)}</td></tr>
      <tr><td>Errors (4xx)</td><td>${s.ErrorStatistics.TotalCount}${pct(s.ErrorStatistics.TotalCount)}</td></tr>
      <tr><td>Throttles (429)</td><td>${s.ErrorStatistics.ThrottleCount}${pct(s.ErrorStatistics.ThrottleCount)}</td></tr>
      <tr><td>Faults (5xx)</td><td>${s.FaultStatistics.TotalCount}${pct(s.FaultStatistics.TotalCount)}</td></tr>
    </table>` + histogram(x.ResponseTimeHistogram);
  }

  /** A small bar chart of the response time histogram. */
  function histogram(h) {
    if (!h || !h.length) return "";
    const max = Math.max(...h.map((e) => e.Count));
    const w = 300, height = 70, bw = Math.max(2, Math.floor(w / h.length) - 1);
    const bars = h.map((e, i) => {
      const bh = Math.max(1, (e.Count / max) * (height - 14));
      return `<rect x="${i * (bw + 1)}" y="${height - 14 - bh}" width="${bw}" height="${bh}" fill="#0073bb"><title>${esc(Fmt.duration(e.Value))}: ${e.Count}</title></rect>`;
    }).join("");
    const first = esc(Fmt.duration(h[0].Value)), last = esc(Fmt.duration(h[h.length - 1].Value));
    return `<h3>Response time distribution</h3><svg width="${w}" height="${height}">${bars}
      <text x="0" y="${height - 2}" font-size="10" fill="#5f6b7a">${first}</text>
      <text x="${w}" y="${height - 2}" font-size="10" fill="#5f6b7a" text-anchor="end">${last}</text></svg>`;
  }

  function nodeDetails(s, services) {
    let html = `<h2>${esc(s.Name)}</h2><p class="muted">${esc(s.Type)}${s.Inferred ? " · inferred from its callers" : ""}</p>`;
    if (s.SummaryStatistics) html += statsTable(s);
    const byId = new Map(services.map((x) => [x.ReferenceId, x]));
    if (s.Edges.length) {
      html += "<h3>Calls</h3><table>" + s.Edges.map((e) => {
        const to = byId.get(e.ReferenceId);
        return `<tr><td>→ ${esc(to ? to.Name : e.ReferenceId)}</td><td>${Fmt.rate(e.RequestsPerMinute)}/min · ${Fmt.duration(e.AverageResponseTime)} avg</td></tr>`;
      }).join("") + "</table>";
    }
    if (s.Type !== "client") html += `<p><a href="#/traces?service=${encodeURIComponent(s.Name)}">View traces through ${esc(s.Name)} →</a></p>`;
    return html;
  }

  /** A node of the map in a filter expression: `id(name: "…", type: "…")`, quotes escaped. */
  function nodeId(s) {
    const quoted = (v) => '"' + String(v).replace(/["\\]/g, "\\$&") + '"';
    return `id(name: ${quoted(s.Name)}, type: ${quoted(s.Type)})`;
  }

  function edgeDetails(from, to, e) {
    const edge = `edge(${nodeId(from)}, ${nodeId(to)})`;
    return `<h2>${esc(from.Name)} → ${esc(to.Name)}</h2><p class="muted">calls as ${esc(from.Name)} saw them</p>` +
      statsTable(e) +
      `<p><a id="edge-traces" href="#/traces?expression=${encodeURIComponent(edge)}">View traces along this edge →</a></p>` +
      `<p><a id="edge-failures" href="#/traces?expression=${encodeURIComponent(edge + " { !ok }")}">…of them, those where this call failed →</a></p>`;
  }

  // === Trace list ===
  function filterQuery() {
    const { params } = parseHash();
    const q = new URLSearchParams();
    for (const name of FILTERS) if (params.get(name)) q.set(name, params.get(name));
    return q;
  }

  async function loadTraces() {
    const q = filterQuery();
    const shows = q.toString();
    q.set("limit", PAGE);
    if (state.offset) q.set("next_token", state.offset);
    const current = listLoad();
    let page;
    try {
      page = await getJSON("/api/trace-summaries?" + q.toString());
    } catch (e) {
      if (!current()) return;
      $("list-error").textContent = e.message;
      $("list-error").hidden = false;
      return;
    }
    if (!current()) return;
    $("list-error").hidden = true;
    const rows = page.TraceSummaries.map(traceRow).join("");
    $("trace-table").tBodies[0].innerHTML = rows ||
      `<tr><td colspan="9" class="muted">No traces match.</td></tr>`;
    // Which filters the rows answer (the hash's), for whoever reads the table.
    $("trace-table").dataset.filters = shows;
    for (const tr of $("trace-table").tBodies[0].rows) {
      if (tr.dataset.id) tr.addEventListener("click", () => { location.hash = "#/trace/" + encodeURIComponent(tr.dataset.id); });
    }
    const shown = page.TraceSummaries.length;
    $("list-meta").textContent = shown
      ? `Traces ${state.offset + 1}–${state.offset + shown} of ${page.MatchedCount} matching (of ${page.TracesProcessedCount} stored), newest first`
      : `0 of ${page.TracesProcessedCount} stored traces match`;
    $("newer").disabled = state.offset === 0;
    $("older").disabled = !page.NextToken;
    state.nextToken = page.NextToken;
  }

  function statusClass(s) {
    if (s.HasFault) return "fault";
    if (s.HasThrottle) return "throttle";
    if (s.HasError) return "error";
    return s.Http.HttpStatus ? "" : "none";
  }

  function traceRow(s) {
    const h = s.Http || {};
    const services = (s.ServiceIds || []).map((x) => x.Name).join(", ");
    return `<tr data-id="${esc(s.Id)}">
      <td class="mono"><a href="#/trace/${encodeURIComponent(s.Id)}">${esc(s.Id)}</a>${s.IsPartial ? ' <span class="tag">partial</span>' : ""}</td>
      <td>${esc(Fmt.time(s.StartTime))}</td>
      <td>${esc(h.HttpMethod || "")}</td>
      <td><span class="status ${statusClass(s)}">${esc(h.HttpStatus || "–")}${s.GrpcStatus ? ` <span class="grpc">${esc(s.GrpcStatus)}</span>` : ""}</span></td>
      <td>${esc(Fmt.duration(s.ResponseTime))}</td>
      <td>${esc(Fmt.duration(s.Duration))}</td>
      <td class="url" title="${esc(h.HttpURL || "")}">${esc(h.HttpURL || "")}</td>
      <td>${esc(h.ClientIp || "")}</td>
      <td class="services" title="${esc(services)}">${esc(services)}</td>
    </tr>`;
  }

  function goTraces(offset) {
    const q = filterQuery();
    if (offset) q.set("offset", offset);
    location.hash = "#/traces" + (q.toString() ? "?" + q.toString() : "");
  }

  // === One trace ===
  async function loadTrace() {
    const current = traceLoad();
    let body;
    try {
      body = await getJSON("/api/traces/" + encodeURIComponent(state.traceId));
    } catch (e) {
      if (!current()) return;
      $("trace-head").innerHTML = `<h2>Trace ${esc(state.traceId)}</h2><p class="error-box">${esc(e.message)}</p>`;
      $("timeline").innerHTML = "";
      $("raw-docs").textContent = "";
      return;
    }
    if (!current()) return;
    const trace = body.Traces[0];
    state.trace = trace;
    const s = trace.Summary;
    const h = s.Http || {};
    $("trace-head").innerHTML = `<h2>Trace <span class="mono">${esc(trace.Id)}</span>${s.IsPartial ? ' <span class="tag">partial</span>' : ""}</h2>
      <span>${esc(h.HttpMethod || "")} ${esc(h.HttpURL || "")} <span class="status ${statusClass(s)}">${esc(h.HttpStatus || "–")}</span></span>
      <span class="muted">started ${esc(Fmt.time(s.StartTime))}</span>
      <span class="muted">duration ${esc(Fmt.duration(trace.Duration))}</span>
      <span class="muted">${trace.Segments.length} documents · ${trace.Timeline.Rows.length} bars</span>
      <a href="#/traces">← back to traces</a>`;
    drawTimeline();
    const docs = trace.Segments.map((seg) => {
      try { return JSON.stringify(JSON.parse(seg.Document), null, 2); } catch (e) { return seg.Document; }
    });
    $("raw-docs").textContent = docs.join("\n\n");
  }

  function drawTimeline() {
    const tl = state.trace.Timeline;
    Timeline.render($("timeline"), tl, state.row && state.row.Id, (row) => { state.row = row; drawTimeline(); });
    const row = state.row && tl.Rows.find((r) => r.Id === state.row.Id);
    $("row-details").innerHTML = row ? Timeline.details(row, tl) : `<p class="muted">Select a bar to see the segment's details.</p>`;
  }

  // === Wiring ===
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const name of FILTERS) {
      const v = $("filters").elements[name].value.trim();
      if (v) q.set(name, v);
    }
    location.hash = "#/traces" + (q.toString() ? "?" + q.toString() : "");
  });
  $("clear-filters").addEventListener("click", () => { location.hash = "#/traces"; });
  $("newer").addEventListener("click", () => goTraces(Math.max(0, state.offset - PAGE)));
  $("older").addEventListener("click", () => goTraces(Number(state.nextToken) || 0));
  $("range").addEventListener("change", loadMap);
  window.addEventListener("hashchange", route);

  // Live: the map and the first page of the list follow new traffic; a timeline stays put.
  setInterval(() => {
    loadStats();
    if (document.hidden) return;
    if (state.view === "map") loadMap();
    if (state.view === "traces" && state.offset === 0) loadTraces();
    if (state.view === "sampling") SamplingView.load();
  }, 3000);
  loadStats();
  route();
})();
