// The loop page: polls the /ui/api routes of this server, draws with the Plotly bundle it serves, and acts
// through the admin API (/v1/admin/...) with the token typed in. Data goes into the page as text, never HTML.
"use strict";

const ROOT = document.body.dataset.root || "";
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local";
const POLL_MS = 5000;
const PLOT = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["toImage", "sendDataToCloud"] };
const $ = (id) => document.getElementById(id);
let latest = null;

// -- formatting: times in the viewer's zone (named), numbers with their units ---------------------------
const timeFmt = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  timeZoneName: "short",
});
function when(iso) { return iso ? timeFmt.format(new Date(iso)) : "–"; }
function pct(x, digits = 1) { return x === null || x === undefined ? "–" : (100 * x).toFixed(digits) + " %"; }
function ms(x) { return x === null || x === undefined ? "–" : x.toFixed(x < 10 ? 2 : 0) + " ms"; }
function num(x, digits = 4) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }
function ago(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) { dl.append(el("dt", k), el("dd", v === null || v === undefined ? "–" : v)); }
}
function tone(kind) {
  if (/rollback|rolled|fail|alert|error|rejected/.test(kind)) return "bad";
  if (/promot|finished|advance|registered|passed/.test(kind)) return "ok";
  if (/trigger|skipped|hold|started/.test(kind)) return "warn";
  return "info";
}

async function getJSON(path) {
  const r = await fetch(ROOT + path, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) throw new Error(`${r.status}: ${body.detail || r.statusText}`);
  return body;
}

// -- Now ------------------------------------------------------------------------------------------------
function versionFacts(v) {
  if (!v) return [];
  return [
    ["family", v.family], ["data", v.data_version],
    ["CV " + (v.metric || ""), v.cv === null ? "–" : num(v.cv)], ["gate", v.gate], ["run", v.run_id],
  ];
}
function renderNow(now) {
  const d = now.deployment;
  $("model-name").textContent = now.model_name;
  $("champion-version").textContent = d.champion ? "v" + d.champion : "none";
  facts($("champion-facts"), versionFacts(now.champion));
  $("challenger-version").textContent = d.challenger ? "v" + d.challenger : "none";
  facts($("challenger-facts"), versionFacts(now.challenger));
  const share = d.challenger ? (d.strategy === "shadow" ? 0 : d.challenger_weight) : 0;
  $("strategy").textContent = d.strategy + (d.strategy === "shadow" ? " (mirrored, not served)" : "");
  $("weights").children[0].style.width = pct(1 - share, 3).replace(" ", "");
  $("weights").children[1].style.width = pct(share, 3).replace(" ", "");
  $("weights-text").textContent = `champion ${pct(1 - share)} · challenger ${pct(share)} of requests`;
  $("deployment-reason").textContent = `rev ${d.revision}, ${when(d.updated_at)}: ${d.reason} (${d.actor})`;

  const pool = now.pool;
  const status = $("pool-status");
  if (pool) {
    status.textContent = pool.status;
    status.className = "big " + ({ ok: "", degraded: "warn", not_ready: "bad" }[pool.status] || "");
    status.style.color = pool.status === "ok" ? "var(--ok)" : pool.status === "degraded" ? "var(--warn)" : "var(--bad)";
    const served = pool.deployment || {};
    facts($("pool-facts"), [
      ["serving", served.champion ? "v" + served.champion + (served.challenger ? " + v" + served.challenger : "") : "–"],
      ["store", pool.store && pool.store.reachable ? "reachable" : "unreachable: " + ((pool.store && pool.store.error) || "")],
      ["last swap error", pool.last_swap_error || "none"],
    ]);
  } else {
    status.textContent = "no server";
    status.style.color = "var(--muted)";
    facts($("pool-facts"), [["", "this page runs under `driftloop ui`: start `driftloop serve` for the pool"]]);
  }

  const canary = now.canary;
  $("canary-none").hidden = !!canary;
  $("canary-body").hidden = !canary;
  if (canary) {
    const steps = $("canary-steps");
    steps.replaceChildren(...canary.steps.map((w, i) =>
      el("li", pct(w, 0), i < canary.step ? "done" : i === canary.step ? "current" : "")));
    const dec = $("canary-decision");
    dec.textContent = canary.decision.action;
    dec.className = "pill " + ({ hold: "warn", advance: "ok", promote: "ok", rollback: "bad" }[canary.decision.action] || "");
    $("canary-reason").textContent =
      `${canary.decision.reason} — step ${canary.step + 1} of ${canary.steps.length} for ${ago(canary.dwell_seconds)}, since ${when(canary.step_started_at)}`;
    $("canary-metric").textContent = canary.rules.metric;
    const body = $("canary-arms").tBodies[0];
    body.replaceChildren(...["champion", "challenger"].map((arm) => {
      const a = canary.arms[arm];
      const tr = el("tr");
      tr.append(el("td", arm), el("td", "v" + a.version), el("td", a.requests, "num"), el("td", a.errors, "num"),
        el("td", pct(a.error_rate, 2), "num"), el("td", ms(a.p95_latency_ms), "num"), el("td", a.labeled, "num"),
        el("td", num(a.metric), "num"));
      return tr;
    }));
    const r = canary.rules;
    $("canary-rules").textContent =
      `Advances after ≥ ${r.min_requests} requests, ≥ ${r.min_dwell_seconds} s and ≥ ${r.min_labels} labels per arm; ` +
      `rolls back on an error rate above the champion's + ${pct(r.max_error_rate_increase)}, ` +
      `p95 latency over ${r.max_p95_latency_ratio}× the champion's, or a worse ${r.metric} (one-sided tests at ${pct(r.confidence, 0)} confidence).`;
  }
  const pill = $("status");
  const bad = pool && pool.status !== "ok";
  const rolling = canary && canary.decision.action === "rollback";
  pill.textContent = bad ? "serving " + pool.status : rolling ? "canary failing" : canary ? "canary running" : "serving";
  pill.className = "pill " + (bad || rolling ? "bad" : canary ? "warn" : "ok");
  $("act-note").textContent = now.admin
    ? "Each action calls this server's admin API with the token below, after a confirmation naming what changes."
    : "This origin has no admin API (no serving.admin_token, or the page runs under `driftloop ui`): actions are refused.";
}

// -- Over time --------------------------------------------------------------------------------------------
function layout(title, extra) {
  return Object.assign({
    title: { text: title + " · " + ZONE, font: { size: 14 } }, margin: { l: 55, r: 20, t: 36, b: 50 }, height: 260,
    legend: { orientation: "h", x: 0, y: -0.18, yanchor: "top" },
  }, extra || {});
}
// Plotly draws ISO strings with offsets in UTC: hand it the viewer's wall-clock time instead.
function local(iso) {
  const t = new Date(iso);
  return new Date(t.getTime() - t.getTimezoneOffset() * 60000).toISOString().slice(0, 23);
}
function draw(id, traces, lay) {
  if (!window.Plotly) return;
  window.Plotly.react($(id), traces, lay, PLOT);
}

function renderHistory(hist, now) {
  const rows = hist.changes;
  if (!rows.length) return;
  const x = rows.map((r) => local(r.at)), y = rows.map((r) => 100 * r.challenger_share);
  x.push(local(now)); y.push(y[y.length - 1]);
  const text = rows.map((r) => `rev ${r.revision}: ${r.strategy}, champion v${r.champion || "–"}, challenger v${r.challenger || "–"}<br>${r.reason}`);
  draw("chart-staircase", [
    { x, y, type: "scatter", mode: "lines", line: { shape: "hv", color: "#bf3989" }, name: "challenger share", hoverinfo: "skip" },
    { x: x.slice(0, -1), y: y.slice(0, -1), type: "scatter", mode: "markers", marker: { size: 8, color: "#24292f" },
      name: "deployment change", text, hovertemplate: "%{text}<extra></extra>" },
  ], layout("Challenger share of traffic and deployment changes", { yaxis: { title: { text: "share (%)" }, range: [0, 105] } }));
}

function renderTraffic(tr) {
  const s = tr.series;
  const x = s.map((b) => local(b.minute));
  draw("chart-traffic", [
    { x, y: s.map((b) => b.rows_per_second), type: "scatter", mode: "lines+markers", name: "rows/s", line: { color: "#0969da" } },
    { x, y: s.map((b) => (b.error_rate === null ? null : 100 * b.error_rate)), type: "scatter", mode: "lines+markers",
      name: "error rate (%)", yaxis: "y2", line: { color: "#cf222e" } },
  ], layout(`Request rate and error rate (last ${tr.minutes} min)`, {
    yaxis: { title: { text: "rows/s" }, rangemode: "tozero" },
    yaxis2: { title: { text: "errors (%)" }, overlaying: "y", side: "right", rangemode: "tozero" },
  }));
  draw("chart-latency", [
    { x, y: s.map((b) => b.p99_latency_ms), type: "scatter", mode: "lines+markers", name: "p99 latency", line: { color: "#9a6700" } },
  ], layout("p99 latency per minute (server-side)", { yaxis: { title: { text: "ms" }, rangemode: "tozero" } }));
}

function renderMonitoring(mon) {
  const w = mon.windows;
  const x = w.map((r) => local(r.window_end || r.ts));
  const thr = w.map((r) => (r.drift_share_threshold === null ? null : 100 * r.drift_share_threshold));
  draw("chart-share", [
    { x, y: w.map((r) => (r.drift_share === null ? null : 100 * r.drift_share)), type: "scatter", mode: "lines+markers",
      name: "drifted features", marker: { color: w.map((r) => (r.dataset_drift ? "#cf222e" : "#1a7f37")), size: 8 } },
    { x, y: thr, type: "scatter", mode: "lines", name: "dataset drift threshold", line: { dash: "dash", color: "#57606a" } },
  ], layout("Dataset drift share per monitoring window", { yaxis: { title: { text: "features drifted (%)" }, range: [0, 105] } }));

  // Heatmap: each cell is the feature's score over its own threshold (>= 1 drifted), so tests of
  // different kinds (p-values, distances) share one colour scale; the hover names the raw score.
  const features = [...new Set(w.flatMap((r) => Object.keys(r.features)))].sort();
  const z = features.map((f) => w.map((r) => {
    const c = r.features[f];
    if (!c || c.score === null || c.threshold === null || c.drift === null) return null;
    // p-values drift when below the threshold, distances when above: ratio >= 1 means drifted either way.
    return c.score_kind === "p_value" ? c.threshold / Math.max(c.score, 1e-12) : c.score / Math.max(c.threshold, 1e-12);
  }));
  const text = features.map((f) => w.map((r) => {
    const c = r.features[f];
    return c ? `${f}: ${c.method} ${num(c.score)} (threshold ${num(c.threshold, 3)})${c.drift ? " DRIFT" : ""}` : `${f}: not tested`;
  }));
  draw("chart-drift", [{
    x, y: features, z: z.map((row) => row.map((v) => (v === null ? null : Math.min(v, 3)))), text, type: "heatmap",
    hovertemplate: "%{text}<extra></extra>", zmin: 0, zmax: 3,
    colorscale: [[0, "#dafbe1"], [0.33, "#fff8c5"], [0.34, "#ffcecb"], [1, "#a40e26"]],
    colorbar: { title: { text: "score / threshold" }, tickvals: [0, 1, 2, 3], ticktext: ["0", "1 (threshold)", "2", "≥ 3"] },
  }], layout("Drift per feature over monitoring windows (≥ 1 = drifted)", {
    height: Math.max(260, 60 + 22 * features.length), margin: { l: 150, r: 20, t: 36, b: 40 },
  }));

  const series = {};
  for (const r of w) {
    for (const g of r.performance) {
      for (const [metric, v] of Object.entries(g.metrics || {})) {
        // The project's metric only (the one the gate and the canary judge by): one line per version and arm.
        if (v.value === null || v.value === undefined || (r.metric && metric !== r.metric)) continue;
        const key = `v${g.model_version} ${g.arm} · ${metric}`;
        const s = (series[key] = series[key] || { x: [], y: [], lo: [], hi: [], n: [] });
        s.x.push(local(r.window_end || r.ts)); s.y.push(v.value);
        s.hi.push(v.ci_high === null ? 0 : v.ci_high - v.value); s.lo.push(v.ci_low === null ? 0 : v.value - v.ci_low);
        s.n.push(g.n_labeled);
      }
    }
    // The same metric estimated from the outputs alone (before labels arrive): dotted, its band as the bar.
    for (const g of r.estimated || []) {
      const v = (g.metrics || {})[r.metric];
      if (!v || v.value === null) continue;
      const key = `v${g.model_version} ${g.arm} · ${r.metric} (estimated)`;
      const s = (series[key] = series[key] || { x: [], y: [], lo: [], hi: [], n: [], estimated: true });
      s.x.push(local(r.window_end || r.ts)); s.y.push(v.value);
      s.hi.push(v.high === null ? 0 : v.high - v.value); s.lo.push(v.low === null ? 0 : v.value - v.low);
      s.n.push(g.rows);
    }
  }
  draw("chart-perf", Object.entries(series).map(([name, s]) => ({
    x: s.x, y: s.y, name, type: "scatter", mode: "lines+markers", line: { dash: s.estimated ? "dot" : "solid" },
    text: s.n.map((n) => (s.estimated ? `${n} rows, no labels` : `${n} labeled rows`)),
    error_y: { type: "data", symmetric: false, array: s.hi, arrayminus: s.lo, visible: true },
    hovertemplate: "%{y:.4f} (%{text})<extra>" + name + "</extra>",
  })), layout("Performance per version and arm: as labels arrive (solid) and estimated before them (dotted), 95 % intervals", {
    yaxis: { title: { text: (w.length && w[w.length - 1].metric) || "metric" } }, height: 300, margin: { l: 55, r: 20, t: 36, b: 70 },
  }));
}

// -- Why --------------------------------------------------------------------------------------------------
function showDetail(title, obj) {
  $("detail-title").textContent = title;
  $("detail-hint").textContent = "";
  $("detail").textContent = typeof obj === "string" ? obj : JSON.stringify(obj, null, 2);
}
async function showVersion(v) {
  try { showDetail(`Version ${v}: lineage and gate report`, await getJSON(`/ui/api/versions/${encodeURIComponent(v)}`)); }
  catch (e) { showDetail(`Version ${v}`, String(e.message)); }
}
function renderEvents(ev) {
  const body = $("events").tBodies[0];
  const rows = ev.events.slice().reverse();
  body.replaceChildren(...rows.map((e) => {
    const tr = el("tr");
    tr.dataset.kind = e.kind;
    const kind = el("td"); kind.append(el("span", e.kind, "pill " + tone(e.kind)));
    const ver = el("td");
    if (e.model_version) {
      const a = el("a", "v" + e.model_version, "version");
      a.href = "#why";
      a.addEventListener("click", (evt) => { evt.stopPropagation(); evt.preventDefault(); showVersion(e.model_version); });
      ver.append(a);
    }
    tr.append(el("td", when(e.ts)), kind, ver, el("td", e.message));
    tr.addEventListener("click", () => {
      for (const r of body.rows) r.classList.remove("picked");
      tr.classList.add("picked");
      showDetail(`${e.kind} at ${when(e.ts)}`, e);
    });
    return tr;
  }));
  const ab = $("alerts").tBodies[0];
  ab.replaceChildren(...ev.alerts.map((a) => {
    const tr = el("tr");
    const sev = el("td"); sev.append(el("span", a.severity, "pill " + (a.severity === "critical" ? "bad" : "warn")));
    tr.append(el("td", when(a.last_seen)), sev, el("td", a.state), el("td", a.rule), el("td", a.count, "num"), el("td", a.message));
    return tr;
  }));
}
$("explain-form").addEventListener("submit", async (evt) => {
  evt.preventDefault();
  const id = $("explain-id").value.trim();
  if (!id) return;
  try { showDetail(`explain ${id}`, await getJSON(`/ui/api/explain?request_id=${encodeURIComponent(id)}`)); }
  catch (e) { showDetail(`explain ${id}`, String(e.message)); }
});

// -- Act ----------------------------------------------------------------------------------------------------
function actResult(text, ok) { const p = $("act-result"); p.textContent = text; p.className = ok ? "ok" : "bad"; }
async function act(path, body, change) {
  const token = $("token").value.trim();
  if (!token) { actResult("Refused: type the admin token first (serving.admin_token).", false); return; }
  if (!window.confirm(`${change}\n\nProceed?`)) { actResult("Cancelled: nothing changed.", false); return; }
  const r = await fetch(ROOT + path, {
    method: "POST", headers: { "Content-Type": "application/json", Authorization: "Bearer " + token }, body: JSON.stringify(body),
  });
  const answer = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) { actResult(`Refused (${r.status}): ${answer.detail || r.statusText}`, false); return; }
  actResult(`Done: revision ${answer.revision}, champion v${answer.champion}, challenger ${answer.challenger ? "v" + answer.challenger : "none"}, ${answer.strategy}.`, true);
  refresh();
}
function current() { return latest ? latest.deployment : {}; }
$("act-promote").addEventListener("click", () => {
  const d = current();
  if (!d.challenger) { actResult("Nothing to promote: there is no challenger.", false); return; }
  act("/v1/admin/deployment", { strategy: "single", challenger: d.challenger, reason: "promoted from the loop page" },
    `Promote v${d.challenger} to champion: it takes 100 % of traffic and v${d.champion} stops serving.`);
});
$("act-canary").addEventListener("click", () => {
  const d = current();
  const w = Number($("canary-weight").value);
  if (!d.challenger) { actResult("No challenger to canary.", false); return; }
  if (!(w > 0 && w <= 1)) { actResult("canary weight: a share between 0.01 and 1.", false); return; }
  act("/v1/admin/deployment", { strategy: "canary", challenger: d.challenger, challenger_weight: w, reason: "canary from the loop page" },
    `Start a canary: v${d.challenger} gets ${pct(w)} of traffic, champion v${d.champion} the rest; the controller then steps it.`);
});
$("act-rollback").addEventListener("click", () => {
  const d = current();
  act("/v1/admin/rollback", { reason: "rolled back from the loop page" },
    `Roll back: all traffic to champion v${d.champion}` + (d.challenger ? `; challenger v${d.challenger} leaves the deployment.` : "."));
});

// -- polling -------------------------------------------------------------------------------------------------
let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const [now, hist, traffic, mon, ev] = await Promise.all([
      getJSON("/ui/api/now"), getJSON("/ui/api/history"), getJSON("/ui/api/traffic"),
      getJSON("/ui/api/monitoring"), getJSON("/ui/api/events"),
    ]);
    latest = now;
    renderNow(now);
    renderHistory(hist, now.now);
    renderTraffic(traffic);
    renderMonitoring(mon);
    renderEvents(ev);
    $("refreshed").textContent = `updated ${when(now.now)} · times in ${ZONE}`;
  } catch (e) {
    $("status").textContent = "cannot read the stores";
    $("status").className = "pill bad";
    $("refreshed").textContent = String(e.message);
  } finally {
    busy = false;
  }
}
refresh();
setInterval(() => { if ($("auto").checked && !document.hidden) refresh(); }, POLL_MS);
