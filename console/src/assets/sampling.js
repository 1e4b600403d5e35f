// The "Sampling rules" view: the centralized rules in evaluation order with their live statistics
// (what the clients reported over the last minutes), and a form to create, edit or delete a rule.
// It calls the console's X-Ray API, the same calls boto3 and the AWS CLI make.
"use strict";

window.SamplingView = (function () {
  const $ = (id) => document.getElementById(id);
  const esc = (v) => Fmt.esc(v);
  const FIELDS = ["RuleName", "Priority", "ReservoirSize", "FixedRate", "ServiceName", "ServiceType", "Host", "HTTPMethod", "URLPath"];
  const NUMBERS = new Set(["Priority", "ReservoirSize", "FixedRate"]);
  const view = { rules: [], editing: null };
  const rulesLoad = newestOnly();

  async function call(operation, body) {
    const resp = await fetch("/" + operation, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
      cache: "no-store",
    });
    const json = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(`${json.__type || resp.status}: ${json.message || resp.statusText}`);
    return json;
  }

  function showError(message) {
    $("sampling-error").textContent = message || "";
    $("sampling-error").hidden = !message;
  }

  async function load() {
    // The live refresh and a change's reload can answer out of order.
    const current = rulesLoad();
    let rules, stats;
    try {
      [rules, stats] = await Promise.all([call("GetSamplingRules"), call("SamplingStatisticSummaries")]);
    } catch (e) {
      if (current()) showError("Cannot read the rules: " + e.message);
      return;
    }
    if (!current()) return;
    view.rules = rules.SamplingRuleRecords.map((r) => r.SamplingRule);
    const byName = new Map(stats.SamplingStatisticSummaries.map((s) => [s.RuleName, s]));
    const minutes = stats.SamplingStatisticSummaries.length ? Math.round(stats.SamplingStatisticSummaries[0].Seconds / 60) : 5;
    $("sampling-meta").textContent = `${view.rules.length} rules, evaluated top to bottom; statistics over the last ${minutes} minutes, as the clients report them every 10 s`;
    $("sampling-table").tBodies[0].innerHTML = view.rules.map((r) => row(r, byName.get(r.RuleName) || {})).join("");
    for (const button of $("sampling-table").querySelectorAll("button[data-edit]")) {
      button.addEventListener("click", () => edit(button.dataset.edit));
    }
    for (const button of $("sampling-table").querySelectorAll("button[data-delete]")) {
      button.addEventListener("click", () => remove(button.dataset.delete));
    }
  }

  function row(r, s) {
    const requests = s.RequestCount || 0;
    // As the SDKs report them, borrowed requests are not in SampledCount: both were recorded.
    const share = requests ? Fmt.percent(((s.SampledCount || 0) + (s.BorrowCount || 0)) / requests) : "–";
    const isDefault = r.RuleName === "Default";
    return `<tr data-rule="${esc(r.RuleName)}">
      <td><b>${esc(r.RuleName)}</b></td>
      <td>${isDefault ? "last" : esc(r.Priority)}</td>
      <td>${esc(r.ServiceName)}</td><td>${esc(r.ServiceType)}</td><td>${esc(r.Host)}</td>
      <td>${esc(r.HTTPMethod)}</td><td class="mono">${esc(r.URLPath)}</td>
      <td>${esc(r.ReservoirSize)}/s</td><td>${esc(Fmt.percent(r.FixedRate))}</td>
      <td class="num" data-stat="requests">${requests}</td>
      <td class="num" data-stat="sampled">${s.SampledCount || 0}</td>
      <td class="num" data-stat="borrowed">${s.BorrowCount || 0}</td>
      <td class="num" data-stat="share">${share}</td>
      <td class="num">${s.Clients || 0}</td>
      <td class="actions"><button type="button" class="secondary" data-edit="${esc(r.RuleName)}">Edit</button>
        ${isDefault ? "" : `<button type="button" class="secondary danger" data-delete="${esc(r.RuleName)}">Delete</button>`}</td>
    </tr>`;
  }

  /** Fills the form with a rule to change it (`Default`: only its reservoir and rate), or empties it. */
  function edit(name) {
    const form = $("rule-form");
    const rule = view.rules.find((r) => r.RuleName === name);
    view.editing = rule ? name : null;
    const blank = { RuleName: "", Priority: 100, ReservoirSize: 1, FixedRate: 0.05, ServiceName: "*", ServiceType: "*", Host: "*", HTTPMethod: "*", URLPath: "*" };
    for (const f of FIELDS) {
      form.elements[f].value = (rule || blank)[f];
      form.elements[f].disabled = Boolean(rule) && (f === "RuleName" || (name === "Default" && !["ReservoirSize", "FixedRate"].includes(f)));
    }
    $("rule-form-title").textContent = rule ? `Edit rule ${name}` : "New rule";
    $("rule-submit").textContent = rule ? "Save" : "Create";
    showError("");
  }

  async function submit(ev) {
    ev.preventDefault();
    const form = $("rule-form");
    const values = {};
    for (const f of FIELDS) {
      if (form.elements[f].disabled) continue;
      const raw = form.elements[f].value.trim();
      values[f] = NUMBERS.has(f) ? Number(raw) : raw;
    }
    try {
      if (view.editing) {
        await call("UpdateSamplingRule", { SamplingRuleUpdate: Object.assign({ RuleName: view.editing }, values) });
      } else {
        await call("CreateSamplingRule", { SamplingRule: Object.assign({ ResourceARN: "*", Version: 1, Attributes: {} }, values) });
      }
    } catch (e) {
      showError(e.message);
      return;
    }
    edit(null);
    load();
  }

  async function remove(name) {
    try {
      await call("DeleteSamplingRule", { RuleName: name });
    } catch (e) {
      showError(e.message);
      return;
    }
    if (view.editing === name) edit(null);
    load();
  }

  $("rule-form").addEventListener("submit", submit);
  $("rule-cancel").addEventListener("click", () => edit(null));
  edit(null);
  return { load };
})();
