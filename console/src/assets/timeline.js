// Draws a trace's timeline (from /api/traces/{id}) and the details of one segment or subsegment.
"use strict";

/** Number and text formatting shared by the page's scripts. */
window.Fmt = {
  duration(seconds) {
    if (seconds === undefined || seconds === null || !isFinite(seconds)) return "–";
    if (seconds === 0) return "0";
    if (seconds < 0.001) return (seconds * 1e6).toFixed(0) + " µs";
    if (seconds < 0.01) return (seconds * 1000).toFixed(1) + " ms";
    if (seconds < 1) return (seconds * 1000).toFixed(0) + " ms";
    if (seconds < 10) return seconds.toFixed(2) + " s";
    if (seconds < 100) return seconds.toFixed(1) + " s";
    return seconds.toFixed(0) + " s";
  },
  rate(perMinute) {
    if (!perMinute) return "0";
    return perMinute < 10 ? perMinute.toFixed(1) : perMinute.toFixed(0);
  },
  percent(share) {
    const p = share * 100;
    return (p > 0 && p < 1 ? p.toFixed(1) : p.toFixed(0)) + "%";
  },
  time(epoch) {
    const d = new Date(epoch * 1000);
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  },
  esc(value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  },
};

/**
 * Overlapping loads of one view (a click, then the live refresh) can answer out of order: only
 * the newest may draw, so a slow answer to an older query never replaces a newer one's. Each call
 * of the returned function starts a load and gives back whether it is still the newest.
 */
window.newestOnly = function () {
  let issued = 0;
  return () => {
    const mine = ++issued;
    return () => mine === issued;
  };
};

window.Timeline = (function () {
  const esc = (v) => Fmt.esc(v);

  function div(cls, parent, html) {
    const d = document.createElement("div");
    d.className = cls;
    if (html !== undefined) d.innerHTML = html;
    if (parent) parent.appendChild(d);
    return d;
  }

  /** Tick offsets (seconds) at a round step, about five across the span. */
  function ticks(span) {
    const raw = span / 5;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let t = 0; t <= span * 1.0001; t += step) out.push(t);
    return out;
  }

  function nameCell(row) {
    const tags = [];
    if (row.Kind === "segment") tags.push("segment");
    if (row.Remote) tags.push("remote");
    if (row.MissingParent) tags.push("parent missing");
    const name = row.Kind === "segment" ? `<span class="svc">${esc(row.Name)}</span>` : esc(row.Name);
    return name + tags.map((t) => ` <span class="tag">${esc(t)}</span>`).join("");
  }

  /** Renders the rows of `timeline` into `container`; clicking a row calls `onSelect(row)`. */
  function render(container, timeline, selectedId, onSelect) {
    container.innerHTML = "";
    const t0 = timeline.StartTime;
    // A trace of only in-progress segments has no length yet: give the axis one millisecond.
    const span = Math.max(timeline.EndTime - t0, 0.001);
    const pct = (t) => Math.min(100, Math.max(0, ((t - t0) / span) * 100));
    const axisRow = div("tl-row axis", container);
    div("tl-name muted", axisRow, "Segment / subsegment");
    const axis = div("tl-axis", axisRow);
    const marks = ticks(span);
    for (const t of marks) {
      const tick = div("tl-tick", axis, esc(Fmt.duration(t)));
      tick.style.left = pct(t0 + t) + "%";
    }
    for (const row of timeline.Rows) {
      const r = div("tl-row" + (row.Id === selectedId ? " selected" : ""), container);
      r.dataset.id = row.Id;
      r.dataset.depth = row.Depth;
      const name = div("tl-name", r, nameCell(row));
      name.style.paddingLeft = 10 + row.Depth * 18 + "px";
      name.title = `${row.Name} (${row.Kind}, ${row.Service})`;
      const track = div("tl-track", r);
      for (const t of marks) div("tl-grid", track).style.left = pct(t0 + t) + "%";
      // In progress: the bar runs to the end of the axis, as far as anything is known.
      const end = row.EndTime ?? t0 + span;
      const cls = row.EndTime === undefined ? "progress" : row.Outcome;
      const bar = div(`tl-bar ${cls} ${row.Kind}`, track);
      bar.style.left = pct(row.StartTime) + "%";
      bar.style.width = Math.max(pct(end) - pct(row.StartTime), 0) + "%";
      const status = row.HttpStatus ? ` · ${row.HttpStatus}` : "";
      const label = row.EndTime === undefined ? "in progress" : Fmt.duration(row.EndTime - row.StartTime) + status;
      const tag = div("tl-label", track, esc(label));
      // After the bar when there is room, else before it, else inside a bar that spans the axis:
      // the label never runs off the track nor over the names.
      if (pct(end) <= 80) {
        tag.style.left = pct(end) + "%";
      } else if (pct(row.StartTime) >= 20) {
        tag.classList.add("before");
        tag.style.right = 100 - pct(row.StartTime) + "%";
      } else {
        tag.classList.add("inside");
        tag.style.right = 100 - pct(end) + "%";
      }
      r.addEventListener("click", () => onSelect(row));
    }
  }

  function table(pairs) {
    const rows = pairs
      .filter(([, v]) => v !== undefined && v !== null && v !== "")
      .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(typeof v === "object" ? JSON.stringify(v) : v)}</td></tr>`);
    return rows.length ? `<table>${rows.join("")}</table>` : `<p class="muted">none</p>`;
  }

  /** The details panel of one row: its fields, HTTP, annotations, cause and the rest as JSON. */
  function details(row, timeline) {
    const d = row.Details || {};
    const http = d.http || {};
    const req = http.request || {};
    const resp = http.response || {};
    let html = `<h2>${esc(row.Name)}</h2><p class="muted">${esc(row.Kind)} of ${esc(row.Service)}</p>`;
    html += table([
      ["Id", row.Id],
      ["Parent", row.ParentId ? row.ParentId + (row.MissingParent ? " (not received)" : "") : undefined],
      ["Start", `${Fmt.time(row.StartTime)} (+${Fmt.duration(row.StartTime - timeline.StartTime)})`],
      ["Duration", row.EndTime === undefined ? "in progress" : Fmt.duration(row.EndTime - row.StartTime)],
      ["Outcome", row.Outcome],
      ["Namespace", d.namespace],
      ["Origin", d.origin],
    ]);
    if (http.request || http.response) {
      html += "<h3>HTTP</h3>" + table([
        ["Method", req.method], ["URL", req.url], ["Status", resp.status], ["Client IP", req.client_ip],
        ["X-Forwarded-For", req.x_forwarded_for], ["User agent", req.user_agent],
        ["Content length", resp.content_length], ["Traced", req.traced ?? d.traced],
      ]);
    }
    if (d.annotations) html += "<h3>Annotations</h3>" + table(Object.entries(d.annotations));
    if (d.cause) {
      const ex = (d.cause.exceptions || []).map((e) => [e.type || "exception", e.message || e.id]);
      html += "<h3>Cause</h3>" + table([["Working directory", d.cause.working_directory], ...ex]);
      if (typeof d.cause === "string") html += table([["Exception id", d.cause]]);
    }
    const known = new Set(["name", "id", "trace_id", "parent_id", "start_time", "end_time", "in_progress",
      "http", "annotations", "cause", "namespace", "origin", "type", "error", "fault", "throttle", "traced"]);
    const rest = Object.fromEntries(Object.entries(d).filter(([k]) => !known.has(k)));
    if (Object.keys(rest).length) html += `<h3>Other fields</h3><pre>${esc(JSON.stringify(rest, null, 2))}</pre>`;
    return html;
  }

  return { render, details };
})();
