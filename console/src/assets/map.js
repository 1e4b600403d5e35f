// Draws the service map as SVG from /api/service-graph: client on the left, callees to the right.
"use strict";

window.ServiceMap = (function () {
  const NS = "http://www.w3.org/2000/svg";
  const R = 40;          // node radius
  const COL = 300;       // distance between call depths
  const ROW = 190;       // distance between nodes of one depth
  const PAD_X = 110;
  const PAD_Y = 80;

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, cls, x, y, content) {
    const t = el("text", { class: cls, x: x, y: y }, parent);
    t.textContent = content;
    return t;
  }

  /** The key that keeps a node selected across refreshes. */
  function keyOf(service) {
    return service.Type + "\u0000" + service.Name;
  }

  /** Columns by longest call depth from the clients; a cycle cannot loop (bounded relaxation). */
  function layout(services) {
    const incoming = new Map(services.map((s) => [s.ReferenceId, 0]));
    for (const s of services) {
      for (const e of s.Edges) {
        if (e.ReferenceId !== s.ReferenceId) incoming.set(e.ReferenceId, (incoming.get(e.ReferenceId) || 0) + 1);
      }
    }
    const hasClient = services.some((s) => s.Type === "client");
    const level = new Map();
    for (const s of services) {
      const source = incoming.get(s.ReferenceId) === 0;
      level.set(s.ReferenceId, s.Type === "client" ? 0 : source && hasClient ? 1 : 0);
    }
    for (let pass = 0; pass < services.length; pass++) {
      let changed = false;
      for (const s of services) {
        for (const e of s.Edges) {
          const want = level.get(s.ReferenceId) + 1;
          if (e.ReferenceId !== s.ReferenceId && level.get(e.ReferenceId) < want && want <= services.length) {
            level.set(e.ReferenceId, want);
            changed = true;
          }
        }
      }
      if (!changed) break;
    }
    const columns = new Map();
    for (const s of services) {
      const l = level.get(s.ReferenceId);
      if (!columns.has(l)) columns.set(l, []);
      columns.get(l).push(s);
    }
    const levels = [...columns.keys()].sort((a, b) => a - b);
    const maxRows = Math.max(...[...columns.values()].map((c) => c.length));
    const pos = new Map();
    levels.forEach((l, col) => {
      const nodes = columns.get(l).sort((a, b) => a.Name.localeCompare(b.Name));
      const offset = ((maxRows - nodes.length) * ROW) / 2;
      nodes.forEach((s, row) => pos.set(s.ReferenceId, { x: PAD_X + col * COL, y: PAD_Y + offset + row * ROW }));
    });
    return { pos, width: PAD_X * 2 + (levels.length - 1) * COL, height: PAD_Y * 2 + (maxRows - 1) * ROW + 30 };
  }

  /** Shares of ok, error, throttle and fault, for the ring. */
  function shares(stats) {
    const total = stats ? stats.TotalCount : 0;
    if (!total) return [];
    return [
      ["ok", stats.OkCount / total],
      ["error", stats.ErrorStatistics.OtherCount / total],
      ["throttle", stats.ErrorStatistics.ThrottleCount / total],
      ["fault", stats.FaultStatistics.TotalCount / total],
    ];
  }

  function drawNode(layer, s, p, selected, onSelect) {
    const client = s.Type === "client";
    const g = el("g", { class: "node" + (client ? " client" : "") + (selected ? " selected" : ""),
      transform: `translate(${p.x},${p.y})`, "data-name": s.Name, "data-type": s.Type }, layer);
    el("circle", { class: "body", r: R }, g);
    el("circle", { class: "ring-bg", r: R, "stroke-width": 7 }, g);
    let start = 0;
    for (const [kind, share] of shares(s.SummaryStatistics)) {
      if (share <= 0) continue;
      el("circle", { class: "ring", r: R, "stroke-width": 7, pathLength: 100, stroke: `var(--${kind})`,
        "stroke-dasharray": `${share * 100} ${100 - share * 100}`, "stroke-dashoffset": -start * 100,
        transform: "rotate(-90)" }, g);
      start += share;
    }
    if (client) {
      text(g, "stat", 0, 4, "clients");
    } else {
      text(g, "stat", 0, -3, Fmt.duration(s.AverageResponseTime));
      text(g, "stat", 0, 13, Fmt.rate(s.RequestsPerMinute) + " t/min");
    }
    text(g, "name", 0, R + 20, s.Name);
    text(g, "type", 0, R + 35, client ? "" : s.Type + (s.Inferred ? " (inferred)" : ""));
    g.addEventListener("click", () => onSelect({ kind: "node", key: keyOf(s), service: s }));
  }

  function drawEdge(edgeLayer, labelLayer, from, to, e, a, b, selected, onSelect) {
    const cls = e.FaultRate > 0 ? " fault" : e.ErrorRate > 0 ? " error" : "";
    const g = el("g", { class: "edge" + cls + (selected ? " selected" : ""), "data-from": from.Name, "data-to": to.Name }, edgeLayer);
    let d, mid;
    if (b.x > a.x) {
      const mx = (a.x + b.x) / 2;
      d = `M${a.x + R},${a.y} C${mx},${a.y} ${mx},${b.y} ${b.x - R - 6},${b.y}`;
      mid = { x: mx, y: (a.y + b.y) / 2 };
    } else {
      // Same depth or a call back: loop below both nodes.
      const low = Math.max(a.y, b.y) + R + 70;
      d = `M${a.x},${a.y + R} C${a.x},${low} ${b.x},${low} ${b.x},${b.y + R + 6}`;
      mid = { x: (a.x + b.x) / 2, y: low - 18 };
    }
    el("path", { class: "line", d: d, "marker-end": `url(#arrow${cls.trim() || "ok"})` }, g);
    const hit = el("path", { class: "hit", d: d }, g);
    const label = el("g", { class: "edge-label" + cls, "data-from": from.Name, "data-to": to.Name }, labelLayer);
    const lines = [`${Fmt.duration(e.AverageResponseTime)} avg · ${Fmt.rate(e.RequestsPerMinute)}/min`];
    const bad = [];
    if (e.ErrorRate > 0) bad.push(`${Fmt.percent(e.ErrorRate)} err`);
    if (e.FaultRate > 0) bad.push(`${Fmt.percent(e.FaultRate)} fault`);
    if (bad.length) lines.push(bad.join(" · "));
    const rect = el("rect", {}, label);
    lines.forEach((line, i) => text(label, "", mid.x, mid.y + 4 + (i - (lines.length - 1) / 2) * 14, line));
    const box = label.getBBox();
    rect.setAttribute("x", box.x - 5);
    rect.setAttribute("y", box.y - 2);
    rect.setAttribute("width", box.width + 10);
    rect.setAttribute("height", box.height + 4);
    const select = () => onSelect({ kind: "edge", key: keyOf(from) + "\u0001" + keyOf(to), from, to, edge: e });
    hit.addEventListener("click", select);
    label.addEventListener("click", select);
    label.style.cursor = "pointer";
  }

  function defs(svg) {
    const d = el("defs", {}, svg);
    for (const kind of ["ok", "error", "fault"]) {
      const m = el("marker", { id: "arrow" + kind, viewBox: "0 0 10 10", refX: 2, refY: 5,
        markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" }, d);
      el("path", { d: "M0,0 L10,5 L0,10 z", fill: kind === "ok" ? "#879596" : `var(--${kind})` }, m);
    }
  }

  /** Draws `graph` into `svg`; `selected` is the key of the selected node or edge. */
  function render(svg, graph, selected, onSelect) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const services = graph.Services || [];
    if (!services.length) return false;
    const { pos, width, height } = layout(services);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.style.maxWidth = width + "px";
    svg.style.margin = "0 auto";
    defs(svg);
    const edgeLayer = el("g", {}, svg);
    const nodeLayer = el("g", {}, svg);
    const labelLayer = el("g", {}, svg);
    const byId = new Map(services.map((s) => [s.ReferenceId, s]));
    for (const s of services) {
      for (const e of s.Edges) {
        const to = byId.get(e.ReferenceId);
        if (!to) continue;
        const key = keyOf(s) + "\u0001" + keyOf(to);
        drawEdge(edgeLayer, labelLayer, s, to, e, pos.get(s.ReferenceId), pos.get(to.ReferenceId), key === selected, onSelect);
      }
    }
    for (const s of services) drawNode(nodeLayer, s, pos.get(s.ReferenceId), keyOf(s) === selected, onSelect);
    return true;
  }

  return { render, keyOf };
})();
