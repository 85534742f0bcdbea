// The operator console: a small single-page app over /api/v1 (hash routes,
// no build step). Every page re-renders from the API every 5 seconds.
"use strict";

const app = document.getElementById("app");
const REFRESH_MS = 5000;

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function enc(v) { return encodeURIComponent(v); }
function badge(status, id) {
  const label = status.replace(/_/g, " ");
  return `<span class="badge ${esc(status)}"${id ? ` data-testid="${esc(id)}"` : ""}>${esc(label)}</span>`;
}
function ago(t) {
  if (!t) return '<span class="muted">—</span>';
  const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
  const txt = s < 60 ? `${Math.round(s)} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago`
    : s < 172800 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86400)} days ago`;
  return `<span title="${esc(t)}">${txt}</span>`;
}
function age(secs) {
  if (secs == null) return "—";
  return secs < 3600 ? `${Math.round(secs / 60)} min` : secs < 172800 ? `${Math.round(secs / 3600)} h` : `${Math.round(secs / 86400)} days`;
}

function clock(t) {
  const d = new Date(t);
  return d.toDateString() === new Date().toDateString()
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}
// A freshness badge: "late by 3 h", "fails since 10:00, blocked by d2".
function freshBadge(f, id) {
  if (!f) return "";
  const tid = id ? ` data-testid="${esc(id)}"` : "";
  const blocked = f.blocking && f.blocking.length ? `, blocked by ${f.blocking.map(esc).join(", ")}` : "";
  const since = f.overdueSince ? clock(f.overdueSince) : clock(f.since);
  const text = {
    late: `late by ${age(f.overdueSeconds)}`,
    fail: `fails since ${since}${blocked}`,
    warn: `warns since ${since}${blocked}`,
    on_time: "on time",
    pass: "fresh",
    unknown: "no data yet",
  }[f.state] ?? f.state;
  return `<span class="badge fresh-${esc(f.state)}"${tid} title="${esc(f.state)} since ${esc(f.since)}">${text}</span>`;
}

// With API_AUTH=all the reads need the API token too: the console asks for
// it once and keeps it for this tab only (sessionStorage).
const TOKEN_KEY = "orchestrator.apiToken";
class NeedsToken extends Error {}
let awaitingToken = false;

async function api(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(path, { headers });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) throw new NeedsToken(body.error ? body.error.message : "this API needs a token");
  if (!r.ok) throw new Error(body.error ? `${body.error.message}` : `HTTP ${r.status}`);
  return body;
}

function tokenForm(message) {
  app.innerHTML = `<h1>Sign in</h1>
    <div class="sub">This server's API needs its token (API_AUTH=all): ${esc(message)}</div>
    <form class="token" data-testid="token-form">
      <input type="password" name="token" autocomplete="off" placeholder="API token" aria-label="API token">
      <button type="submit">Use this token</button>
    </form>`;
  app.querySelector("form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, ev.target.token.value.trim());
    awaitingToken = false;
    render();
  });
}

function route() {
  const h = location.hash.replace(/^#\/?/, "") || "metrics";
  const [path, query = ""] = h.split("?");
  const parts = path.split("/").map(decodeURIComponent);
  return { parts, query: new URLSearchParams(query) };
}

function setNav(name) {
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === name));
}

// ---------- pages ----------

async function metricsPage(q) {
  setNav("metrics");
  const status = q.get("status") || "";
  const dataset = q.get("dataset") || "";
  const params = new URLSearchParams({ limit: "200" });
  if (status) params.set("status", status);
  if (dataset) params.set("dataset", dataset);
  const [page, counts] = await Promise.all([api(`/api/v1/metrics?${params}`), statusCounts(dataset)]);
  const cards = ["ok", "pending", "stale", "failing", "disabled"].map((s) =>
    `<div class="card ${s === status ? "sel" : ""}" data-status="${s}" data-testid="card-${s}">
       ${badge(s)}<div class="n">${counts[s] ?? 0}</div></div>`).join("");
  const rows = page.items.map((m) => `
    <tr data-testid="metric-row-${esc(m.code)}">
      <td><a href="#/metrics/${enc(m.code)}">${esc(m.code)}</a><div class="muted">${esc(m.expressionType)}</div></td>
      <td>${badge(m.status, `status-${m.code}`)}
          ${m.pendingRun ? `<div class="why" data-testid="why-${esc(m.code)}">${esc(m.pendingRun.summary)}</div>` : ""}
          ${m.held ? `<div class="why" data-testid="held-${esc(m.code)}">held by ${esc(m.held.by)} ${ago(m.held.since)}</div>` : ""}
          ${freshBadge(m.freshness, `fresh-${m.code}`)}</td>
      <td>${m.requiredDatasets.map((d) => `<a href="#/datasets/${enc(d)}">${esc(d)}</a>`).join(", ")}</td>
      <td>${m.lastRun ? `<a href="#/runs/${enc(m.lastRun.id)}">${badge(m.lastRun.status)}</a> ${ago(m.lastRun.finishedAt)}` : '<span class="muted">never run</span>'}</td>
      <td>${ago(m.lastSuccessAt)}</td>
    </tr>`).join("");
  app.innerHTML = `
    <h1>Metrics</h1><div class="sub">What each metric is doing, and why it is not running yet.</div>
    <div class="cards">${cards}</div>
    <div class="filters">
      <select id="f-status"><option value="">any status</option>${["ok", "pending", "stale", "failing", "disabled"].map((s) => `<option ${s === status ? "selected" : ""}>${s}</option>`).join("")}</select>
      <input id="f-dataset" placeholder="requires dataset…" value="${esc(dataset)}">
      <button id="f-apply">Filter</button>
    </div>
    <table><thead><tr><th>Metric</th><th>Status</th><th>Requires</th><th>Last run</th><th>Last success</th></tr></thead>
    <tbody>${rows || '<tr><td colspan="5" class="muted">No metric matches.</td></tr>'}</tbody></table>
    ${page.nextCursor ? '<div class="more muted">Showing the first 200; narrow the filters to see more.</div>' : ""}`;
  const go = () => {
    const p = new URLSearchParams();
    const s = document.getElementById("f-status").value, d = document.getElementById("f-dataset").value.trim();
    if (s) p.set("status", s);
    if (d) p.set("dataset", d);
    location.hash = `#/metrics${p.toString() ? "?" + p : ""}`;
  };
  document.getElementById("f-apply").onclick = go;
  document.querySelectorAll(".card").forEach((c) => c.onclick = () => {
    document.getElementById("f-status").value = c.dataset.status === status ? "" : c.dataset.status; go();
  });
}

async function statusCounts(dataset) {
  const counts = {};
  await Promise.all(["ok", "pending", "stale", "failing", "disabled"].map(async (s) => {
    // A page of 100 per status is enough for a count: beyond it, "100+".
    const p = new URLSearchParams({ status: s, limit: "100" });
    if (dataset) p.set("dataset", dataset);
    const page = await api(`/api/v1/metrics?${p}`);
    counts[s] = page.items.length + (page.nextCursor ? "+" : "");
  }));
  return counts;
}

function runRows(items) {
  return items.map((r) => `
    <tr data-testid="run-row-${esc(r.id)}">
      <td><a class="mono" href="#/runs/${enc(r.id)}">${esc(r.id)}</a></td>
      <td><a href="#/metrics/${enc(r.metricCode)}">${esc(r.metricCode)}</a></td>
      <td>${badge(r.status)}${r.error ? `<div class="why">${esc(r.error)}</div>` : ""}</td>
      <td>${r.attempt}</td>
      <td data-testid="run-version-${esc(r.id)}">${r.definitionVersion ? "v" + r.definitionVersion : '<span class="muted">—</span>'}${r.codeVersion ? `<div class="why mono">${esc(r.codeVersion)}</div>` : ""}</td>
      <td>${ago(r.createdAt)}</td><td>${ago(r.finishedAt)}</td>
    </tr>`).join("");
}
const RUN_HEAD = "<tr><th>Run</th><th>Metric</th><th>Status</th><th>Attempt</th><th>Definition</th><th>Created</th><th>Finished</th></tr>";

// The output badge (current, stale, no output) and why it is stale.
function outputBadge(o, id) {
  const label = { current: "output current", stale: "output stale", no_output: "no output yet" }[o.status] ?? o.status;
  return `<span class="badge output-${esc(o.status)}" data-testid="${esc(id)}">${esc(label)}</span>`;
}
function outputPanel(m) {
  const o = m.output;
  const reasons = o.reasons.map((r) => `<li data-testid="stale-reason-${esc(r.reason)}">${esc(r.text)}</li>`).join("");
  const made = o.runId ? `made by <a class="mono" href="#/runs/${enc(o.runId)}">${esc(o.runId)}</a> with definition v${o.definitionVersion}` : "no run has succeeded";
  return `<div class="panel" data-testid="output-panel">Newest output ${outputBadge(o, "output-status")}: ${made}; the definition is at v${m.definitionVersion ?? "—"}.
    ${reasons ? `<ul class="reasons">${reasons}</ul>` : ""}</div>`;
}

async function metricPage(code) {
  setNav("metrics");
  const [m, lineage] = await Promise.all([api(`/api/v1/metrics/${enc(code)}`), api(`/api/v1/lineage?around=${enc(code)}`)]);
  const inputs = m.inputs.map((i) => `
    <tr><td><a href="#/datasets/${enc(i.datasetId)}">${esc(i.datasetId)}</a></td>
        <td class="mono">${esc(i.updateId ?? "none yet")}</td><td>${ago(i.receivedAt)}</td><td>${age(i.ageSeconds)}</td>
        <td>${i.fresh ? '<span class="fresh">fresh</span>' : '<span class="notfresh">stale</span>'}</td></tr>`).join("");
  const pending = m.pendingRun ? `
    <div class="panel" data-testid="pending-panel">Pending run <a class="mono" data-testid="pending-run-link" href="#/runs/${enc(m.pendingRun.id)}">${esc(m.pendingRun.id)}</a>:
      <strong>${esc(m.pendingRun.summary)}</strong>
      ${m.next ? `<div data-testid="next-decision">Next: ${esc(m.next.text)}</div>` : ""}</div>` : "";
  const held = m.held ? `
    <div class="panel" data-testid="held-panel">Held by <strong>${esc(m.held.by)}</strong> ${ago(m.held.since)}: updates are recorded, no run is requested until it is resumed.</div>` : "";
  app.innerHTML = `
    <h1>${esc(m.code)} ${badge(m.status, "metric-status")}</h1>
    <div class="sub">${esc(m.description ?? "")} ${m.enabled ? "" : "· disabled in the catalog"}</div>
    ${outputPanel(m)}${held}${pending}
    <h2>Lineage</h2>${lineageSvg(lineage, `metric:${m.code}`)}
    <div class="grid2">
      <div><h2>Inputs (newest update of each required dataset)</h2>
        <table><thead><tr><th>Dataset</th><th>Update</th><th>Received</th><th>Age</th><th>Fresh (${m.requiredDays} days)</th></tr></thead><tbody>${inputs || '<tr><td colspan="5" class="muted">No required dataset.</td></tr>'}</tbody></table></div>
      <div><h2>Definition</h2><div class="panel kv">
        <div>Expression type</div><div>${esc(m.expressionType)}</div>
        <div>Series</div><div>${m.series.map((s) => `${esc(s.code)} <span class="muted">(${s.datasets.map(esc).join(", ") || "no dataset"})</span>`).join("<br>")}</div>
        <div>Required days</div><div>${m.requiredDays}</div><div>Max attempts</div><div>${m.maxAttempts}</div>
        <div>Run timeout</div><div>${m.runTimeoutSecs ? m.runTimeoutSecs + " s" : "—"}</div>
        <div>Trigger policy</div><div data-testid="trigger-policy">${esc(m.triggerPolicy ?? "default: all inputs")}</div>
      </div><pre>${esc(JSON.stringify(m.expressionJson, null, 2))}</pre></div>
    </div>
    <h2>Recent runs</h2>
    <table><thead>${RUN_HEAD}</thead><tbody>${runRows(m.runs) || '<tr><td colspan="7" class="muted">No run yet.</td></tr>'}</tbody></table>
    <div class="more"><a href="#/runs?metric=${enc(m.code)}">All runs of ${esc(m.code)} →</a></div>`;
}

let runsExtra = [];
async function runsPage(q) {
  setNav("runs");
  const params = new URLSearchParams({ limit: "50" });
  for (const k of ["status", "metric", "since"]) if (q.get(k)) params.set(k, q.get(k));
  const page = await api(`/api/v1/runs?${params}`);
  const statuses = ["pending_dependencies", "queued", "dispatched", "running", "succeeded", "failed", "timed_out", "canceled"];
  app.innerHTML = `
    <h1>Runs</h1><div class="sub">Newest first.</div>
    <div class="filters">
      <select id="r-status"><option value="">any status</option>${statuses.map((s) => `<option ${s === q.get("status") ? "selected" : ""}>${s}</option>`).join("")}</select>
      <input id="r-metric" placeholder="metric code" value="${esc(q.get("metric") ?? "")}">
      <input id="r-since" placeholder="since (RFC 3339)" value="${esc(q.get("since") ?? "")}">
      <button id="r-apply">Filter</button>
    </div>
    <table><thead>${RUN_HEAD}</thead><tbody id="run-body">${runRows(page.items.concat(runsExtra)) || '<tr><td colspan="7" class="muted">No run matches.</td></tr>'}</tbody></table>
    <div class="more">${page.nextCursor ? `<button id="r-more" data-cursor="${esc(page.nextCursor)}">Load more</button>` : ""}</div>`;
  document.getElementById("r-apply").onclick = () => {
    const p = new URLSearchParams();
    for (const [k, id] of [["status", "r-status"], ["metric", "r-metric"], ["since", "r-since"]]) {
      const v = document.getElementById(id).value.trim(); if (v) p.set(k, v);
    }
    runsExtra = [];
    location.hash = `#/runs${p.toString() ? "?" + p : ""}`;
  };
  const more = document.getElementById("r-more");
  if (more) more.onclick = async () => {
    params.set("cursor", more.dataset.cursor);
    const next = await api(`/api/v1/runs?${params}`);
    runsExtra = runsExtra.concat(next.items);
    document.getElementById("run-body").insertAdjacentHTML("beforeend", runRows(next.items));
    if (next.nextCursor) more.dataset.cursor = next.nextCursor; else more.remove();
  };
}

async function runPage(id) {
  setNav("runs");
  const r = await api(`/api/v1/runs/${enc(id)}`);
  const t = r.timeline;
  const step = (label, at) => `<li class="${at ? "done" : ""}"><strong>${label}</strong> ${at ? `<span class="mono">${esc(at)}</span> · ${ago(at)}` : '<span class="muted">not yet</span>'}</li>`;
  const inputs = r.inputs.map((i) => `<tr><td><a href="#/datasets/${enc(i.datasetId)}">${esc(i.datasetId)}</a></td><td class="mono">${esc(i.updateId)}</td><td class="mono">${esc(i.manifestPath)}</td><td>${ago(i.receivedAt)}</td></tr>`).join("");
  app.innerHTML = `
    <h1><span class="mono">${esc(r.id)}</span> ${badge(r.status, "run-status")}</h1>
    <div class="sub">Run of <a href="#/metrics/${enc(r.metricCode)}" data-testid="run-metric-link">${esc(r.metricCode)}</a> · attempt ${r.attempt}
      ${r.definitionVersion ? ` · <span data-testid="run-definition">definition v${r.definitionVersion}</span>` : ""}${r.codeVersion ? ` · code <span class="mono">${esc(r.codeVersion)}</span>` : ""}
      ${r.retryOf ? ` · retry of <a class="mono" href="#/runs/${enc(r.retryOf)}">${esc(r.retryOf)}</a>` : ""}
      ${r.retries.length ? ` · retried as ${r.retries.map((x) => `<a class="mono" href="#/runs/${enc(x)}">${esc(x)}</a>`).join(", ")}` : ""}</div>
    ${r.waitingFor.length ? `<div class="panel" data-testid="waiting-for">Waiting for an update of <strong>${r.waitingFor.map(esc).join(", ")}</strong></div>` : ""}
    ${r.error ? `<div class="error">${esc(r.error)}</div>` : ""}
    ${r.degraded ? `<div class="panel" data-testid="degraded">Degraded: requested by its trigger policy${r.degraded.stale.length ? ` with <strong>${r.degraded.stale.map(esc).join(", ")}</strong> stale` : ""}${r.degraded.missing.length ? ` without <strong>${r.degraded.missing.map(esc).join(", ")}</strong>` : ""}</div>` : ""}
    <div class="grid2">
      <div><h2>Timeline</h2><div class="panel"><ul class="timeline">
        ${step("Created", t.created)}${step("Requested", t.requested)}${step("Dispatched", t.dispatched)}
        ${step("Started", t.started)}${step("Last heartbeat", t.lastHeartbeat)}${step("Finished", t.finished)}
      </ul>${r.progress != null ? `<div>Progress: <strong>${r.progress.toFixed(0)} %</strong></div>` : ""}</div></div>
      <div><h2>Result</h2><div class="panel kv">
        <div>Version</div><div class="mono">${esc(r.result.versionTs ?? "—")}</div>
        <div>Output manifest</div><div class="mono">${esc(r.result.outputManifest ?? "—")}</div>
        <div>Rows</div><div>${r.result.rowCount ?? "—"}</div></div></div>
    </div>
    <h2>Inputs (the dataset updates this run uses)</h2>
    <table><thead><tr><th>Dataset</th><th>Update</th><th>Manifest</th><th>Received</th></tr></thead><tbody>${inputs || '<tr><td colspan="4" class="muted">None yet.</td></tr>'}</tbody></table>
    <h2>Run request, as published</h2>${r.request ? `<pre data-testid="run-request">${esc(JSON.stringify(r.request, null, 2))}</pre>` : '<div class="panel muted">Not requested yet.</div>'}`;
}

async function datasetsPage() {
  setNav("datasets");
  const page = await api("/api/v1/datasets?limit=500");
  const rows = page.items.map((d) => `
    <tr data-testid="dataset-row-${esc(d.id)}"><td><a href="#/datasets/${enc(d.id)}">${esc(d.id)}</a> ${freshBadge(d.freshness, `fresh-${d.id}`)}<div class="muted">${esc(d.name ?? "")}${d.expectation ? ` · expected ${esc(d.expectation)}` : ""}</div></td>
        <td>${d.series.map(esc).join(", ")}</td><td>${d.metricCount}</td><td>${ago(d.newestUpdateAt)}</td><td class="mono">${esc(d.bucket ?? "")}</td></tr>`).join("");
  app.innerHTML = `<h1>Datasets</h1><div class="sub">Announced by producers; metrics wait for their updates.</div>
    <table><thead><tr><th>Dataset</th><th>Series</th><th>Metrics</th><th>Newest update</th><th>Bucket</th></tr></thead><tbody>${rows || '<tr><td colspan="5" class="muted">No dataset yet.</td></tr>'}</tbody></table>`;
}

// What needs attention: late datasets, failing and warning metrics.
// A backfill's progress: a bar and its counts.
function backfillBar(b) {
  const p = b.progress;
  const eta = p.etaSeconds != null ? ` · about ${age(p.etaSeconds)} left` : "";
  return `<div class="bfbar" data-testid="backfill-progress-${esc(b.id)}">
    <progress max="${p.total}" value="${p.done + p.failed + p.canceled}" aria-label="points settled"></progress>
    <span>${p.done} / ${p.total} done · ${p.running} running · ${p.failed} failed · ${p.left} left
      · ${p.perMinute.toFixed(1)} runs/min${eta}</span></div>`;
}

async function backfillsPage() {
  setNav("backfills");
  const page = await api("/api/v1/backfills?limit=100");
  const rows = page.items.map((b) => `<tr data-testid="backfill-row-${esc(b.id)}">
      <td><a href="#/backfills/${enc(b.id)}" class="mono">${esc(b.id)}</a><div class="muted">${ago(b.createdAt)} by ${esc(b.createdBy)}</div></td>
      <td>${badge(b.status, `backfill-status-${b.id}`)}</td>
      <td>${b.metricCodes.map((m) => `<a href="#/metrics/${enc(m)}">${esc(m)}</a>`).join(", ")}${b.downstream ? ' <span class="muted">and downstream</span>' : ""}
          <div class="muted">${esc(b.points)} · reprocess ${esc(b.reprocess)}</div></td>
      <td>${backfillBar(b)}</td></tr>`).join("");
  app.innerHTML = `<h1>Backfills</h1><div class="sub">Metrics computed over a past range, each point with the inputs of its moment (orchestrator backfill create).</div>
    <table><thead><tr><th>Backfill</th><th>Status</th><th>Metrics</th><th>Progress</th></tr></thead>
    <tbody>${rows || '<tr><td colspan="4" class="muted" data-testid="no-backfills">No backfill yet.</td></tr>'}</tbody></table>`;
}

async function backfillPage(id) {
  setNav("backfills");
  const b = await api(`/api/v1/backfills/${enc(id)}?limit=500`);
  const points = b.pointsPage.map((p) => `<tr data-testid="point-${esc(p.metricCode)}-${esc(p.asOf)}">
      <td><a href="#/metrics/${enc(p.metricCode)}">${esc(p.metricCode)}</a></td>
      <td title="${esc(p.asOf)}">${esc(new Date(p.asOf).toISOString().replace(".000Z", "Z"))}</td>
      <td>${badge(p.found)}</td><td>${badge(p.status, `point-status-${p.metricCode}-${p.asOf}`)}</td>
      <td>${p.runId ? `<a href="#/runs/${enc(p.runId)}" class="mono">${esc(p.runId.slice(0, 13))}…</a>` : '<span class="muted">—</span>'}</td>
      <td class="muted">${esc(p.detail ?? "")}</td></tr>`).join("");
  app.innerHTML = `<h1>Backfill <span class="mono">${esc(b.id)}</span> ${badge(b.status, "backfill-status")}</h1>
    <div class="sub">${b.metricCodes.map(esc).join(", ")}${b.downstream ? " and downstream" : ""} · ${esc(b.from)} → ${esc(b.to)}
      · points ${esc(b.points)} · reprocess ${esc(b.reprocess)} · at most ${b.maxInFlight} at once · by ${esc(b.createdBy)}${b.reason ? ` · ${esc(b.reason)}` : ""}</div>
    <div class="panel">${backfillBar(b)}</div>
    <h2>Points${b.progress.total > b.pointsPage.length ? ` (first ${b.pointsPage.length} of ${b.progress.total})` : ""}</h2>
    <table><thead><tr><th>Metric</th><th>As of</th><th>Plan found</th><th>Status</th><th>Run</th><th>Detail</th></tr></thead>
    <tbody>${points || '<tr><td colspan="6" class="muted">No point in the range.</td></tr>'}</tbody></table>`;
}

async function attentionPage() {
  setNav("attention");
  const [late, fail, warn] = await Promise.all([
    api("/api/v1/datasets?freshness=late&limit=500"),
    api("/api/v1/metrics?freshness=fail&limit=500"),
    api("/api/v1/metrics?freshness=warn&limit=500"),
  ]);
  const ds = late.items.map((d) => `<tr data-testid="attention-dataset-${esc(d.id)}"><td><a href="#/datasets/${enc(d.id)}">${esc(d.id)}</a></td>
      <td>${freshBadge(d.freshness)}</td><td>${esc(d.expectation ?? "")}</td><td>${ago(d.newestUpdateAt)}</td></tr>`).join("");
  const ms = fail.items.concat(warn.items).map((m) => `<tr data-testid="attention-metric-${esc(m.code)}"><td><a href="#/metrics/${enc(m.code)}">${esc(m.code)}</a></td>
      <td>${freshBadge(m.freshness)}</td><td>${esc(m.expectation ?? "")}</td><td>${ago(m.lastSuccessAt)}</td></tr>`).join("");
  app.innerHTML = `<h1>Needs attention</h1><div class="sub">Datasets past their deadline and metrics whose output is too old (freshness expectations in the catalog).</div>
    <h2>Late datasets</h2><table><thead><tr><th>Dataset</th><th>State</th><th>Expected</th><th>Newest update</th></tr></thead>
    <tbody>${ds || '<tr><td colspan="4" class="muted" data-testid="no-late">No dataset is late.</td></tr>'}</tbody></table>
    <h2>Failing and warning metrics</h2><table><thead><tr><th>Metric</th><th>State</th><th>Expected</th><th>Last success</th></tr></thead>
    <tbody>${ms || '<tr><td colspan="4" class="muted">Every metric with an expectation is fresh.</td></tr>'}</tbody></table>`;
}

async function datasetPage(id) {
  setNav("datasets");
  const [d, lineage] = await Promise.all([api(`/api/v1/datasets/${enc(id)}`), api(`/api/v1/lineage?around=${enc(id)}`)]);
  const ups = d.updates.map((u) => `<tr><td class="mono">${esc(u.id)}</td><td class="mono">${esc(u.versionManifestPath)}</td><td>${ago(u.receivedAt)}</td></tr>`).join("");
  app.innerHTML = `<h1>${esc(d.id)}</h1><div class="sub">${esc(d.name ?? "")} · series ${d.series.map(esc).join(", ") || "none"}</div>
    <h2>Lineage</h2>${lineageSvg(lineage, `dataset:${d.id}`)}
    <h2>Metrics that require it</h2><div class="panel">${d.metrics.map((m) => `<a href="#/metrics/${enc(m)}">${esc(m)}</a>`).join(" · ") || '<span class="muted">none</span>'}</div>
    <h2>Recent updates</h2><table><thead><tr><th>Update</th><th>Manifest</th><th>Received</th></tr></thead><tbody>${ups || '<tr><td colspan="3" class="muted">No update yet.</td></tr>'}</tbody></table>`;
}

async function lineagePage(q) {
  setNav("lineage");
  const around = q.get("around");
  const g = await api(`/api/v1/lineage${around ? `?around=${enc(around)}` : ""}`);
  app.innerHTML = `<h1>Lineage</h1><div class="sub">Datasets → the metrics that require them${g.truncated ? " (first part only: open a metric or dataset for its own graph)" : ""}.</div>
    ${lineageSvg(g, around ? (g.nodes.find((n) => n.label === around || n.id.endsWith(":" + around)) || {}).id : null)}`;
}

// Datasets in the left column, metrics in the right, edges as curves.
function lineageSvg(g, focus) {
  const ds = g.nodes.filter((n) => n.kind === "dataset"), ms = g.nodes.filter((n) => n.kind === "metric");
  if (!g.nodes.length) return '<div class="panel muted">No edge: nothing requires a dataset here.</div>';
  const W = 900, BW = 260, BH = 30, GAP = 14, rows = Math.max(ds.length, ms.length);
  const H = rows * (BH + GAP) + GAP;
  const pos = {};
  const place = (list, x) => list.forEach((n, i) => {
    const off = (H - list.length * (BH + GAP) + GAP) / 2;
    pos[n.id] = { x, y: off + i * (BH + GAP) };
  });
  place(ds, 20); place(ms, W - BW - 20);
  const edges = g.edges.map((e) => {
    const a = pos[e.from], b = pos[e.to]; if (!a || !b) return "";
    const x1 = a.x + BW, y1 = a.y + BH / 2, x2 = b.x, y2 = b.y + BH / 2, mx = (x1 + x2) / 2;
    return `<path d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"/>`;
  }).join("");
  const node = (n) => {
    const p = pos[n.id], href = n.kind === "dataset" ? `#/datasets/${enc(n.id.slice(8))}` : `#/metrics/${enc(n.id.slice(7))}`;
    const label = n.label.length > 34 ? n.label.slice(0, 33) + "…" : n.label;
    return `<a href="${href}" class="node ${n.kind} ${n.id === focus ? "focus" : ""}" data-testid="node-${esc(n.id)}">
      <rect x="${p.x}" y="${p.y}" width="${BW}" height="${BH}"></rect>
      <text x="${p.x + 10}" y="${p.y + 19}">${n.kind === "dataset" ? "▤ " : "ƒ "}${esc(label)}</text></a>`;
  };
  return `<svg class="lineage" data-testid="lineage" viewBox="0 0 ${W} ${H}" height="${Math.min(H, 640)}">${edges}${g.nodes.map(node).join("")}</svg>`;
}

// ---------- router and refresh ----------

let rendering = false;
async function render() {
  if (rendering) return;
  rendering = true;
  const { parts, query } = route();
  const y = window.scrollY;
  try {
    if (parts[0] === "metrics" && parts[1]) await metricPage(parts.slice(1).join("/"));
    else if (parts[0] === "runs" && parts[1]) await runPage(parts[1]);
    else if (parts[0] === "runs") await runsPage(query);
    else if (parts[0] === "datasets" && parts[1]) await datasetPage(parts.slice(1).join("/"));
    else if (parts[0] === "datasets") await datasetsPage();
    else if (parts[0] === "lineage") await lineagePage(query);
    else if (parts[0] === "attention") await attentionPage();
    else if (parts[0] === "backfills" && parts[1]) await backfillPage(parts[1]);
    else if (parts[0] === "backfills") await backfillsPage();
    else await metricsPage(query);
    document.getElementById("live").classList.remove("stale");
    document.body.dataset.loaded = location.hash || "#/metrics";
  } catch (e) {
    if (e instanceof NeedsToken) {
      sessionStorage.removeItem(TOKEN_KEY);
      awaitingToken = true;
      tokenForm(e.message);
      return;
    }
    app.innerHTML = `<div class="error" data-testid="error">${esc(e.message)}</div>`;
    document.getElementById("live").classList.add("stale");
  } finally {
    rendering = false;
    window.scrollTo(0, y);
  }
}

window.addEventListener("hashchange", () => { runsExtra = []; window.scrollTo(0, 0); render(); });
setInterval(() => { if (!document.hidden && !awaitingToken && !document.querySelector("input:focus, select:focus")) render(); }, REFRESH_MS);
render();
