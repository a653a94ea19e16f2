// lapidar ui front end: vanilla ES2020, no build step, nothing fetched from outside this server.
// All state that matters lives on the server (workspace on disk); the URL hash only holds the tab and the run.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const S = { info: null, schema: null, fields: {}, runs: [], jobs: [], dataFiles: [], inspected: null,
            split: null, run: null, poll: null, model: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

// ---- errors: every API error is shown as its one line; the page keeps working
function showError(message) {
  $("#error-text").textContent = String(message).split("\n")[0];
  $("#error").hidden = false;
}
function clearError() { $("#error").hidden = true; }
async function act(fn) {
  try { return await fn(); } catch (e) { showError(e.message || e); return undefined; }
}
async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const res = await fetch("/api" + path, opts);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : {}; } catch { data = { error: text }; }
  if (!res.ok) {
    let msg = data && (data.error || data.detail || data.message);
    if (Array.isArray(msg)) msg = msg.map((d) => d.msg || JSON.stringify(d)).join("; ");
    if (typeof msg === "object" && msg) msg = msg.error || JSON.stringify(msg);
    throw new Error(msg || `${res.status} ${res.statusText}`);
  }
  return data;
}
const fmt = (x, d = 4) => (typeof x === "number" ? (Number.isInteger(x) ? x.toLocaleString() : x.toFixed(d)) : x ?? "");
function duration(s) {
  if (typeof s !== "number" || !isFinite(s)) return "";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${sec}s` : `${sec}s`;
}
const badge = (text, cls = text) => el("span", { class: `badge ${cls || ""}`, "data-status": text }, text);

// ---- tabs and the URL hash (#tab or #tab/run)
function route() {
  const [tab, run] = (location.hash.slice(1) || "start").split("/");
  const name = $(`#tab-${tab}`) ? tab : "start";
  for (const sec of $$(".tab")) sec.hidden = sec.id !== `tab-${name}`;
  for (const b of $$("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
  if (run) selectRun(decodeURIComponent(run));
  if (name === "runs") refreshRuns();
  if (name === "chat") refreshFeedback();
}
function go(tab, run) { location.hash = run ? `${tab}/${encodeURIComponent(run)}` : tab; }

// ---- a small SVG line chart: series [{name, color, dash, points:[[x, y]]}]
const COLORS = ["#2f6fdb", "#e07a1f", "#137a3f", "#9b3fd1", "#b42318", "#0f8a8a"];
function lineChart(series, { width = 860, height = 260, ylabel = "loss" } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const mk = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n); return n;
  };
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const pts = series.flatMap((s) => s.points).filter((p) => isFinite(p[0]) && isFinite(p[1]));
  svg.setAttribute("data-points", String(pts.length));
  const L = 52, R = 16, T = 12, B = 30;
  if (!pts.length) { mk("text", { x: L, y: height / 2 }, "waiting for the first numbers…"); return svg; }
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.06; y0 -= pad; y1 += pad;
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (width - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (height - T - B);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    mk("line", { class: "grid", x1: L, x2: width - R, y1: Y(y), y2: Y(y) });
    mk("text", { x: L - 6, y: Y(y) + 4, "text-anchor": "end" }, y.toFixed(y1 - y0 < 1 ? 3 : 2));
  }
  for (let i = 0; i <= 4; i++) {
    const x = x0 + ((x1 - x0) * i) / 4;
    mk("text", { x: X(x), y: height - 10, "text-anchor": "middle" }, String(Math.round(x)));
  }
  mk("line", { class: "axis", x1: L, x2: L, y1: T, y2: height - B });
  mk("line", { class: "axis", x1: L, x2: width - R, y1: height - B, y2: height - B });
  mk("text", { x: width - R, y: height - 10, "text-anchor": "end" }, "step");
  mk("text", { x: 4, y: T + 8 }, ylabel);
  let lx = L + 10;
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const p = s.points.filter((q) => isFinite(q[0]) && isFinite(q[1]));
    if (p.length) {
      mk("polyline", { points: p.map((q) => `${X(q[0]).toFixed(1)},${Y(q[1]).toFixed(1)}`).join(" "), fill: "none",
        stroke: color, "stroke-width": 2, "stroke-dasharray": s.dash ? "5 4" : "none", "data-series": s.name });
      if (p.length < 30) for (const q of p) mk("circle", { cx: X(q[0]), cy: Y(q[1]), r: 2.5, fill: color });
    }
    mk("rect", { x: lx, y: T, width: 14, height: 3, fill: color });
    const t = mk("text", { x: lx + 18, y: T + 5 }, s.name);
    lx += 26 + s.name.length * 6.5;
    void t;
  });
  return svg;
}

// ---- start tab
function renderStart() {
  const tasks = S.info.tasks || [];
  const taskSel = $("#start-task");
  taskSel.replaceChildren(...tasks.map((t, i) => el("option", { value: i }, typeof t === "string" ? t : t.title || t.name)));
  const taskHelp = () => {
    const t = tasks[+taskSel.value];
    $("#start-task-help").textContent = t && typeof t === "object" ? t.description || "" : "";
  };
  taskSel.onchange = taskHelp; taskHelp();
  const presets = S.info.presets || [];
  const modelSel = $("#start-model");
  modelSel.replaceChildren(...presets.map((p) => el("option", { value: p.name }, p.name)));
  const modelHelp = () => {
    const p = presets.find((q) => q.name === modelSel.value);
    $("#start-model-help").textContent = p ? p.description || "" : "";
  };
  modelSel.onchange = modelHelp; modelHelp();
  $("#start-step1").onclick = () => {
    const t = tasks[+taskSel.value];
    applyPreset(modelSel.value);
    if (t && typeof t === "object" && t.config) setValues(t.config);
    go("data");
    if (t && t.example) act(() => inspect(t.example));
  };
  $("#start-step2").onclick = () => go("data");
  $("#start-step3").onclick = () => go("train");
  $("#start-step4").onclick = () => go("chat");
}

// ---- data tab
async function refreshData() {
  const d = await api("GET", "/data");
  S.dataFiles = d.files || [];
  const examples = d.examples || S.info.examples || [];
  $("#data-examples").replaceChildren(el("div", { class: "list" }, examples.map((ex) => el("button", {
    "data-testid": "example", title: ex.description || "", onclick: () => act(() => inspect(ex.path || ex.name)),
  }, ex.name))));
  $("#data-files").replaceChildren(S.dataFiles.length ? el("div", { class: "list" }, S.dataFiles.map((f) =>
    el("button", { "data-testid": "data-file", onclick: () => act(() => inspect(f.path)) }, f.path))) :
    el("p", { class: "muted" }, "No files yet."));
  for (const sel of $$(".data-select")) {
    const keep = sel.value;
    sel.replaceChildren(...S.dataFiles.map((f) => el("option", { value: f.path }, f.path)));
    if (keep) sel.value = keep;
  }
  const dl = $("#data-files-list") || document.body.appendChild(el("datalist", { id: "data-files-list" }));
  dl.replaceChildren(...S.dataFiles.map((f) => el("option", { value: f.path })));
}
async function upload(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const r = await api("POST", "/data/upload", form);
  await refreshData();
  await inspect(r.path);
}
async function inspect(path, columns) {
  const body = { path };
  if (columns) body.columns = columns;
  const r = await api("POST", "/data/inspect", body);
  clearError();
  S.inspected = { ...r, path: r.path || path }; S.split = null;
  $("#inspect").hidden = false;
  $("#inspect-title").textContent = S.inspected.path;
  $("#data-format").textContent = r.format || "?";
  $("#data-rows").textContent = fmt(r.rows);
  const cols = r.columns && typeof r.columns === "object" ?
    Object.entries(r.columns).map(([k, v]) => `${k}=${v}`).join(",") : r.columns || "";
  $("#data-columns").value = columns || cols;
  $("#data-examples-rendered").replaceChildren(...(r.examples || []).map((ex) => el("div", { class: "example",
    "data-testid": "rendered-example" }, (ex.segments || []).map((s) => el("span", { class: s.learned ? "learned" : "" }, s.text)))));
  renderReport(r.report || {});
  const fixes = r.fixes || [];
  $("#data-fixes").replaceChildren(fixes.length ? el("div", {},
    el("h3", {}, "Safe fixes"),
    fixes.map((f) => el("label", {}, el("input", { type: "checkbox", value: f.key, "data-testid": `fix-${f.key}` }), " ", f.label)),
    el("button", { "data-testid": "data-clean", onclick: () => act(clean) }, "Apply the selected fixes")) : "");
  $("#data-changes").hidden = true;
  $("#split-result").textContent = "";
}
function renderReport(report) {
  const findings = report.findings || [];
  const box = $("#data-report");
  if (!findings.length) { box.replaceChildren(el("p", {}, badge("ok"), " No problems found.")); return; }
  box.replaceChildren(...findings.map((f) => {
    const rows = f.rows || f.row_numbers || [];
    return el("div", { class: `finding ${f.severity || ""}`, "data-testid": "finding" },
      el("div", {}, badge(f.severity || "note"), " ", el("strong", {}, f.title || f.message || f.code || "")),
      f.explanation ? el("div", {}, f.explanation) : null,
      f.fix ? el("div", { class: "help" }, "Fix: ", f.fix) : null,
      rows.length ? rowLinks(rows) : null);
  }));
}
// each row a finding names opens below it, as the file holds it and as the model sees it
function rowLinks(refs) {
  const shown = el("div", { class: "row-views" });
  const open = (ref) => act(async () => {
    const r = await api("POST", "/data/rows", { path: S.inspected.path, refs: [ref], columns: $("#data-columns").value.trim() || undefined });
    for (const row of r.rows) shown.append(el("div", { class: "example", "data-testid": "finding-row" },
      el("strong", {}, row.ref), el("pre", { class: "log" }, JSON.stringify(row.value, null, 2)),
      (row.segments || []).map((s) => el("span", { class: s.learned ? "learned" : "" }, s.text))));
  });
  return el("div", { class: "rows" }, "rows: ", refs.slice(0, 20).map((ref) => el("button", { class: "small link",
    "data-testid": "finding-row-link", onclick: () => open(ref) }, ref)), refs.length > 20 ? ` … (${refs.length})` : "", shown);
}
async function clean() {
  const fixes = $$("#data-fixes input:checked").map((i) => i.value);
  if (!fixes.length) throw new Error("pick at least one fix first");
  const r = await api("POST", "/data/clean", { path: S.inspected.path, fixes });
  await refreshData();
  await inspect(r.path);
  $("#data-changes").hidden = false;
  $("#data-changes").textContent = (r.changes || []).join("\n") || "nothing changed";
}
async function split() {
  const r = await api("POST", "/data/split", { path: S.inspected.path, fraction: +$("#split-fraction").value });
  S.split = r;
  $("#split-result").textContent = `train: ${r.train} · validation: ${r.validation}`;
  await refreshData();
}
function useData() {
  if (!S.inspected) return;
  const values = { data: S.split ? S.split.train : S.inspected.path };
  if (S.split) values.val_data = S.split.validation;
  const cols = $("#data-columns").value.trim();
  if (cols && S.fields.columns) values.columns = cols;
  setValues(values);
  go("train");
}

// ---- train tab: the form is generated from /api/schema
function fieldInput(f) {
  const id = `f-${f.name}`;
  let input;
  if (f.type === "bool") input = el("input", { type: "checkbox", id });
  else if (f.type === "choice" || (f.choices && f.choices.length)) {
    input = el("select", { id }, (f.default === null || f.default === undefined) ? el("option", { value: "" }, "(default)") : null,
      (f.choices || []).map((c) => el("option", { value: c }, String(c))));
  } else if (f.type === "int" || f.type === "float") {
    input = el("input", { type: "number", id, step: f.type === "int" ? 1 : "any", min: f.min, max: f.max });
  } else input = el("input", { type: "text", id, list: ["data", "val_data", "test_data"].includes(f.name) ? "data-files-list" : null,
    placeholder: f.type === "list" ? "comma, separated" : "" });
  input.dataset.field = f.name;
  input.setAttribute("data-testid", `field-${f.name}`);
  input.addEventListener(f.type === "bool" || input.tagName === "SELECT" ? "change" : "input", formChanged);
  return el("label", { class: "field" }, el("span", {}, f.title || f.name.replaceAll("_", " ")), input,
    f.help ? el("span", { class: "help" }, f.help) : null);
}
function renderForm() {
  const basic = $("#form-basic"), adv = $("#form-advanced");
  basic.replaceChildren(); adv.replaceChildren();
  for (const g of S.schema.groups || []) {
    const b = (g.fields || []).filter((f) => f.basic), a = (g.fields || []).filter((f) => !f.basic);
    for (const f of g.fields || []) S.fields[f.name] = f;
    b.forEach((f) => basic.append(fieldInput(f)));
    if (a.length) adv.append(el("fieldset", { class: "group" }, el("legend", {}, g.title || g.key), a.map(fieldInput)));
  }
  setValues({}, true);
  renderPresets();
  $("#f-method")?.addEventListener("change", methodWhen);
  methodWhen();
}
function toInput(f, v) {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return v.join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
function setValues(values, reset = false) {
  for (const f of Object.values(S.fields)) {
    const input = $(`#f-${CSS.escape(f.name)}`);
    if (!input) continue;
    if (!(f.name in values) && !reset) continue;
    const v = f.name in values ? values[f.name] : f.default;
    if (f.type === "bool") input.checked = Boolean(v);
    else input.value = toInput(f, v);
  }
  formChanged();
}
function readValue(f) {
  const input = $(`#f-${CSS.escape(f.name)}`);
  if (!input) return undefined;
  if (f.type === "bool") return input.checked;
  const raw = input.value.trim();
  if (raw === "") return f.type === "list" && Array.isArray(f.default) ? [] : null;
  if (f.type === "int") return Number.parseInt(raw, 10);
  if (f.type === "float") return Number(raw);
  if (f.type === "list") return raw.split(",").map((s) => s.trim()).filter(Boolean);
  if (typeof f.default === "number" && !isNaN(Number(raw))) return Number(raw);
  return raw;
}
function config() {
  // only what differs from the defaults: the YAML stays short and reads like one a person would write
  const out = {};
  for (const f of Object.values(S.fields)) {
    const v = readValue(f);
    if (v === undefined || (v === null && (f.default === null || f.default === undefined))) continue;
    if (JSON.stringify(v) === JSON.stringify(f.default ?? null)) continue;
    out[f.name] = v;
  }
  return out;
}
function renderPresets() {
  const current = readValue(S.fields.model || { name: "model" });
  const button = (p) => el("button", {
    class: `preset ${p.name === current ? "selected" : ""}`, "data-testid": `preset-${p.name}`,
    onclick: () => applyPreset(p.name) }, el("strong", {}, p.name), el("small", {}, p.description || ""));
  // The general models first; the Coder and Math families (same sizes, specialised) folded away.
  const all = S.info.presets || [], special = (p) => /-(coder|math)-/.test(p.name);
  const more = all.filter(special);
  const open = $("#presets details")?.open || more.some((p) => p.name === current);
  $("#presets").replaceChildren(el("div", { class: "presets-grid" }, all.filter((p) => !special(p)).map(button)),
    more.length ? el("details", { open }, el("summary", {}, `Coder and Math models (${more.length})`),
      el("div", { class: "presets-grid" }, more.map(button))) : "");
}
function applyPreset(name) {
  const p = (S.info.presets || []).find((q) => q.name === name);
  setValues({ model: name, ...((p && p.params && typeof p.params === "object") ? p.params : {}) });
}
function methodWhen() {
  const m = readValue(S.fields.method || { name: "method" });
  const info = (S.info.methods || []).find((q) => q.name === m);
  $("#method-when").textContent = info ? `${info.name}: ${info.when}` : "";
}
let debounce = null;
function formChanged() {
  if (!S.schema) return;
  renderPresets(); methodWhen();
  clearTimeout(debounce);
  debounce = setTimeout(() => { refreshEstimate(); refreshYaml(); }, 400);
}
let estimateSeq = 0;
async function refreshEstimate() {
  const seq = ++estimateSeq, box = $("#estimate");
  const cfg = config();
  if (!cfg.data && !(S.fields.data && S.fields.data.default)) {
    box.replaceChildren(el("span", { class: "muted" }, "Pick a data file to get an estimate."));
    return;
  }
  try {
    const r = await api("POST", "/estimate", { config: cfg });
    if (seq !== estimateSeq) return;
    box.replaceChildren(
      el("p", {}, el("span", { class: `badge ${r.verdict}`, "data-testid": "estimate-badge", "data-verdict": r.verdict }, r.verdict),
        ` peak ${fmt(r.peak_gib, 2)} GiB of ${fmt(r.capacity_gib, 2)} GiB`, r.seconds ? ` · about ${duration(r.seconds)}` : ""),
      (r.fixes || []).length ? el("div", { class: "buttons" }, r.fixes.map((fx) => el("button", { class: "small",
        "data-testid": "estimate-fix", onclick: () => setValues(fx.changes || {}) }, fx.label))) : "");
  } catch (e) {
    if (seq === estimateSeq) box.replaceChildren(el("span", { class: "badge error" }, "error"), " ", e.message);
  }
}
let yamlSeq = 0;
async function refreshYaml() {
  const seq = ++yamlSeq;
  try {
    const r = await api("POST", "/config/yaml", { config: config() });
    if (seq !== yamlSeq) return;
    $("#yaml").textContent = r.yaml;
    const a = $("#yaml-download");
    if (a.href.startsWith("blob:")) URL.revokeObjectURL(a.href);
    a.href = URL.createObjectURL(new Blob([r.yaml], { type: "text/yaml" }));
    a.download = `${$("#run-name").value.trim() || "config"}.yaml`;
  } catch (e) { if (seq === yamlSeq) $("#yaml").textContent = `error: ${e.message}`; }
}
async function loadYaml(file) {
  const r = await api("POST", "/config/parse", { yaml: await file.text() });
  setValues(r.config || {}, true);
}
async function startTraining() {
  const body = { kind: "train", config: config() };
  const name = $("#run-name").value.trim();
  if (name) body.name = name;
  const r = await api("POST", "/jobs", body);
  clearError();
  await refreshJobs();
  go("train", r.job.run);
}
function jobFor(run) {
  return S.jobs.filter((j) => j.run === run && (j.status === "running" || j.status === "queued")).pop();
}
async function stopRun() {
  await refreshJobs();
  const job = S.run && jobFor(S.run);
  if (!job) throw new Error(S.run ? `no running job for ${S.run}` : "no run selected");
  await api("POST", `/jobs/${job.id}/stop`);
  await refreshJobs();
}
async function resumeRun() {
  if (!S.run) throw new Error("no run selected: open one from the Runs tab");
  await api("POST", "/jobs", { kind: "resume", run: S.run });
  await refreshJobs();
  selectRun(S.run, true);
}

// ---- following a run: /api/runs/{name} polled incrementally every second
function selectRun(name, force = false) {
  for (const sel of $$(".run-select")) if ([...sel.options].some((o) => o.value === name)) sel.value = name;
  if (S.run === name && S.poll && !force) return;
  clearTimeout(S.poll);
  S.run = name;
  S.mon = { metrics: [], metricsFrom: 0, logFrom: 0, log: "" };
  $("#monitor").hidden = false;
  $("#mon-name").textContent = name;
  $("#mon-log").textContent = "";
  $("#mon-diagnosis").replaceChildren();
  $("#mon-chart").replaceChildren(lineChart([]));
  $("#run-name").value = $("#run-name").value || "";
  pollRun();
}
async function pollRun() {
  const name = S.run, mon = S.mon;
  let r;
  try {
    r = await api("GET", `/runs/${encodeURIComponent(name)}?metrics_from=${mon.metricsFrom}&log_from=${mon.logFrom}`);
  } catch (e) {
    showError(e.message);
    S.poll = setTimeout(pollRun, 3000);
    return;
  }
  if (name !== S.run) return;
  mon.metrics.push(...(r.metrics || []));
  mon.metricsFrom = r.next_metrics ?? mon.metrics.length;
  if (r.log) {
    mon.log += r.log;
    const pre = $("#mon-log"), atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
    pre.textContent = mon.log.length > 200000 ? mon.log.slice(-200000) : mon.log;
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }
  mon.logFrom = r.next_log ?? mon.logFrom;
  S.lastRun = r;
  renderMonitor(r);
  const live = r.status === "running" || r.status === "queued";
  S.poll = setTimeout(pollRun, live ? 1000 : 5000);
}
function curves(rows) {
  return [
    { name: "train loss", points: rows.filter((m) => m.train_loss !== undefined && m.train_loss !== null).map((m) => [m.step, m.train_loss]) },
    { name: "validation loss", points: rows.filter((m) => m.val_loss !== undefined && m.val_loss !== null).map((m) => [m.step, m.val_loss]) },
  ];
}
function renderMonitor(r) {
  const st = $("#mon-status");
  st.textContent = r.status; st.className = `badge ${r.status}`; st.dataset.status = r.status;
  const p = r.progress || {};
  const total = p.total || r.summary?.total_steps;
  $("#mon-bar").style.width = total ? `${Math.min(100, (100 * (p.step || 0)) / total)}%` : "0";
  $("#mon-stats").textContent = [
    total ? `step ${fmt(p.step || 0)} / ${fmt(total)}` : null,
    p.tokens_per_s ? `${fmt(Math.round(p.tokens_per_s))} tokens/s` : null,
    p.eta_s && r.status === "running" ? `about ${duration(p.eta_s)} left` : null,
    r.summary?.best_val_loss !== undefined ? `best validation loss ${fmt(r.summary.best_val_loss)}` : null,
    (r.checkpoints || []).length ? `${r.checkpoints.length} checkpoint(s) kept` : null,
  ].filter(Boolean).join(" · ");
  $("#mon-chart").replaceChildren(lineChart(curves(S.mon.metrics)));
  const diag = r.diagnosis || [];
  const box = $("#mon-diagnosis");
  if (!diag.length) { box.replaceChildren(); return; }
  const change = (c) => Object.entries(c).map(([k, v]) => `${k} ${v}`).join(", ");
  box.replaceChildren(el("h3", {}, "Diagnosis"), ...diag.map((d) => el("div", { class: `finding ${d.severity}`, "data-testid": "diagnosis-item" },
    el("div", {}, badge(d.severity), " ", el("strong", {}, d.title)),
    d.evidence ? el("div", { class: "help" }, d.evidence) : null,
    d.suggestion ? el("div", {}, "→ ", d.suggestion) : null,
    d.next_step && Object.keys(d.next_step).length ? el("button", { class: "small", "data-testid": "next-step", onclick: () => {
      setValues({ ...(r.config || {}), ...d.next_step });
      $("#run-name").value = `${r.name}-next`;
      formChanged();
      window.scrollTo({ top: 0, behavior: "smooth" });
    } }, `Set up a new run with ${change(d.next_step)}`) : null)));
}

// ---- runs and jobs
async function refreshRuns() {
  const r = await act(() => api("GET", "/runs"));
  if (!r) return;
  S.runs = r.runs || [];
  const tbody = $("#runs-table tbody");
  tbody.replaceChildren(...S.runs.map((run) => el("tr", { "data-testid": "run-row", "data-run": run.name },
    el("td", {}, el("input", { type: "checkbox", value: run.name, "data-testid": "run-select" })),
    el("td", {}, el("a", { href: `#train/${encodeURIComponent(run.name)}` }, run.name)),
    el("td", {}, badge(run.status)), el("td", {}, run.model), el("td", {}, run.method || run.objective || ""),
    el("td", {}, run.data), el("td", { class: "num" }, fmt(run.best_val_loss)),
    el("td", { class: "num" }, run.total ? `${fmt(run.steps)} / ${fmt(run.total)}` : fmt(run.steps)),
    el("td", {}, duration(run.elapsed)))));
  for (const sel of $$(".run-select")) {
    const keep = sel.value || S.run;
    sel.replaceChildren(...S.runs.map((x) => el("option", { value: x.name }, `${x.name} (${x.status})`)));
    if (keep && S.runs.some((x) => x.name === keep)) sel.value = keep;
  }
  $("#chat-run-label").textContent = $("#chat-run").value;
}
async function refreshJobs() {
  const r = await api("GET", "/jobs");
  S.jobs = r.jobs || [];
  $("#jobs-table tbody").replaceChildren(...S.jobs.slice().reverse().map((j) => el("tr", { "data-testid": "job-row", "data-job": j.id },
    el("td", { class: "mono" }, j.id), el("td", {}, j.kind), el("td", {}, j.run ? el("a", { href: `#train/${encodeURIComponent(j.run)}` }, j.run) : ""),
    el("td", {}, badge(j.status)), el("td", {}, j.created ? new Date(typeof j.created === "number" ? j.created * 1000 : j.created).toLocaleString() : ""),
    el("td", {}, j.status === "running" || j.status === "queued" ? el("button", { class: "small", onclick: () => act(async () => {
      await api("POST", `/jobs/${j.id}/stop`); await refreshJobs(); }) }, "Stop") : ""))));
  return S.jobs;
}
async function compare() {
  const names = $$("#runs-table tbody input:checked").map((i) => i.value);
  if (names.length < 2) throw new Error("select two or more runs to compare");
  const r = await api("GET", `/compare?runs=${names.map(encodeURIComponent).join(",")}`);
  $("#compare").hidden = false;
  const series = [];
  Object.entries(r.curves || {}).forEach(([run, rows], i) => {
    const color = COLORS[i % COLORS.length];
    const [tr, va] = curves(rows);
    series.push({ name: `${run} val`, color, points: va.points }, { name: `${run} train`, color, dash: true, points: tr.points });
  });
  $("#compare-chart").replaceChildren(lineChart(series));
  $("#compare-diff").replaceChildren(el("thead", {}, el("tr", {}, el("th", {}, "setting"), names.map((n) => el("th", {}, n)))),
    el("tbody", {}, (r.config_diff || []).map((d) => el("tr", {}, el("td", {}, d.field), names.map((n) => el("td", {}, toInput(null, d.values[n])))))));
}

// ---- evaluate
async function startEval() {
  const run = $("#eval-run").value, data = $("#eval-data").value;
  if (!run || !data) throw new Error("pick a run and a test file (upload one in the Data tab)");
  await api("POST", "/jobs", { kind: "eval", run, data });
  $("#eval-status").replaceChildren(badge("queued"), " evaluation started; results appear here when it ends");
  await refreshJobs();
  followEval(run);
}
async function followEval(run) {
  await refreshJobs().catch(() => {});
  const r = await act(() => api("GET", `/runs/${encodeURIComponent(run)}?metrics_from=999999999&log_from=999999999999`));
  if (!r) return;
  const busy = jobFor(run);
  if (busy) { $("#eval-status").replaceChildren(badge(busy.status), ` ${busy.kind} job for ${run}`); setTimeout(() => followEval(run), 2000); }
  else $("#eval-status").replaceChildren();
  renderEval(r.eval, r.eval_rows);
}
function renderEval(ev, rows) {
  const box = $("#eval-result");
  if (!ev) { box.replaceChildren(); return; }
  const parts = [];
  const desc = ev.metric_descriptions || {};
  // comparison: {metric: {base, model, change}} with --compare-base; else the trained model's scores alone
  const cmp = ev.comparison || Object.fromEntries(Object.entries(ev.model?.scores || {}).map(([k, v]) => [k, { model: v }]));
  const lowerIsBetter = (k) => ["loss", "perplexity", "answer_length"].includes(k);
  const metricRows = Object.entries(cmp).map(([k, v]) => {
    const d = typeof v.change === "number" ? v.change : null;
    const cls = d === null || Math.abs(d) < 1e-12 || k === "answer_length" ? "" : (d > 0) !== lowerIsBetter(k) ? "better" : "worse";
    return el("tr", {}, el("td", { title: desc[k] || "" }, k, k === ev.primary_metric ? " (main)" : ""),
      el("td", { class: "num" }, fmt(v.base)), el("td", { class: "num" }, fmt(v.model)),
      el("td", { class: `num ${cls}` }, d === null ? "" : (d > 0 ? "+" : "") + fmt(d)));
  });
  parts.push(el("div", { class: "card" }, el("h2", {}, `Before / after on ${ev.data} (${fmt(ev.rows)} rows)`),
    ev.note ? el("p", { class: "help" }, ev.note) : null,
    el("table", { "data-testid": "eval-metrics" },
      el("thead", {}, el("tr", {}, el("th", {}, "metric"), el("th", {}, "before training"), el("th", {}, "trained"), el("th", {}, "change"))),
      el("tbody", {}, metricRows))));
  if (ev.probe && ev.probe.verdict) parts.push(el("div", { class: "card", "data-testid": "eval-probe" },
    el("h3", {}, "General knowledge (forgetting probe)"), el("p", {}, ev.probe.verdict)));
  const changes = ev.row_changes || {};
  for (const [key, title] of [["better", "Got better"], ["worse", "Got worse"]]) {
    const list = changes[key] || [];
    if (!list.length) continue;
    parts.push(el("div", { class: "card" }, el("h2", {}, `${title} (${list.length})`), el("table", { class: "side-by-side", "data-testid": `eval-${key}` },
      el("thead", {}, el("tr", {}, ["question", "reference", "before", "trained"].map((c) => el("th", {}, c)))),
      el("tbody", {}, list.slice(0, 20).map((r) => el("tr", {}, [r.prompt, r.reference, r.base_prediction, r.prediction].map((c) => el("td", {}, c ?? ""))))))));
  }
  if ((rows || []).length) parts.push(el("div", { class: "card" }, el("h2", {}, "Answers side by side"),
    el("table", { class: "side-by-side", "data-testid": "eval-rows" },
      el("thead", {}, el("tr", {}, ["question", "reference", "before training", "trained"].map((c) => el("th", {}, c)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, [r.question, r.reference, r.base, r.trained].map((c) => el("td", {}, c ?? ""))))))));
  box.replaceChildren(...parts);
}

// ---- chat: the run and its base side by side, streamed over SSE (fetch + ReadableStream)
const chats = { run: [], base: [] };
async function stream(run, side, messages, onDelta) {
  const res = await fetch("/api/chat", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ run, side, messages, max_tokens: +$("#chat-max").value || 32 }) });
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { const d = await res.json(); msg = d.error || d.detail || msg; } catch { /* not JSON */ }
    throw new Error(msg);
  }
  const reader = res.body.getReader(), decoder = new TextDecoder();
  let buffer = "", answer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      const msg = JSON.parse(data);
      if (msg.error) throw new Error(msg.error);
      if (msg.model) $(side === "run" ? "#chat-run-label" : "#chat-base-label").textContent = msg.model;
      if (msg.delta) { answer += msg.delta; onDelta(answer); }
    }
  }
  return answer;
}
function chatMessage(role, text) {
  return el("div", { class: `msg ${role}`, "data-testid": `msg-${role}` }, el("div", { class: "text" }, text));
}
async function ask(side, run, prompt) {
  const log = side === "run" ? $("#chat-run-log") : $("#chat-base-log");
  const history = chats[side];
  history.push({ role: "user", content: prompt });
  log.append(chatMessage("user", prompt));
  const bubble = chatMessage("assistant", "…");
  log.append(bubble);
  const messages = history.slice();
  try {
    const answer = await stream(run, side, messages, (t) => { bubble.firstChild.textContent = t; log.scrollTop = log.scrollHeight; });
    bubble.firstChild.textContent = answer || "(empty answer)";
    history.push({ role: "assistant", content: answer });
    if (answer.trim()) bubble.append(rateBox(run, side, messages, answer));
  } catch (e) {
    bubble.firstChild.textContent = `error: ${e.message}`;
    history.pop();
    showError(e.message);
  }
}
let answerCount = 0;
function rateBox(run, side, messages, answer) {
  const id = `${Date.now().toString(36)}-${side}-${++answerCount}`;  // a second vote on this answer replaces the first
  const correction = el("input", { type: "text", placeholder: "better answer (optional)", "data-testid": "correction", size: 30 });
  const send = (label, btn) => act(async () => {
    const body = { run, id, side, messages, answer, label };
    if (correction.value.trim()) body.correction = correction.value.trim();
    const r = await api("POST", "/feedback", body);
    for (const b of box.querySelectorAll("button.rating")) b.classList.toggle("on", b === btn);
    btn.dataset.saved = "1";
    showCounts(r);
  });
  const up = el("button", { class: "small rating", "data-testid": "thumb-up", title: "good answer", onclick: () => send(true, up) }, "👍 good");
  const down = el("button", { class: "small rating", "data-testid": "thumb-down", title: "bad answer", onclick: () => send(false, down) }, "👎 bad");
  const box = el("div", { class: "rate" }, up, down, correction);
  return box;
}
function showCounts(c) {
  if (!c) return;
  $("#feedback-counts").textContent = `feedback saved for ${c.run}: ${c.up} 👍, ${c.down} 👎, ${c.corrections} corrected`;
  $("#feedback-counts").dataset.up = c.up; $("#feedback-counts").dataset.down = c.down;
}
async function refreshFeedback() {
  const run = $("#chat-run").value;
  if (!run) return;
  const r = await act(() => api("GET", `/feedback?run=${encodeURIComponent(run)}`));
  if (r) showCounts(r);
}
async function sendChat() {
  const run = $("#chat-run").value, prompt = $("#chat-input").value.trim();
  if (!run) throw new Error("no run yet: train one first (Train tab)");
  if (!prompt) return;
  $("#chat-input").value = "";
  $("#chat-send").disabled = true;
  try { await Promise.all([ask("run", run, prompt), ask("base", run, prompt)]); }
  finally { $("#chat-send").disabled = false; }
}
async function trainOnFeedback() {
  const run = $("#chat-run").value;
  if (!run) throw new Error("pick the run to continue from");
  const r = await api("POST", "/jobs", { kind: "feedback", run, objective: $("#chat-objective").value });
  await refreshJobs();
  go("train", r.job.run);
}

// ---- export
async function startExport() {
  const run = $("#export-run").value;
  if (!run) throw new Error("no run yet: train one first");
  const format = $("input[name=export-format]:checked").value;
  const body = { kind: "export", run, format };
  if (format !== "merged") body.quant = $("#export-quant").value;
  await api("POST", "/jobs", body);
  await refreshJobs();
  followExport(run);
}
async function followExport(run) {
  await refreshJobs().catch(() => {});
  const r = await act(() => api("GET", `/runs/${encodeURIComponent(run)}?metrics_from=999999999&log_from=999999999999`));
  if (!r) return;
  const busy = jobFor(run);
  if (busy) { $("#export-status").replaceChildren(badge(busy.status), ` ${busy.kind} job`); setTimeout(() => followExport(run), 2000); }
  else $("#export-status").replaceChildren();
  $("#export-result").replaceChildren(...(r.exports || []).map((x) => el("div", { class: "card", "data-testid": "export-item", "data-format": x.format },
    el("h3", {}, `${x.format}${x.quant ? " " + x.quant : ""} `, el("code", {}, x.path)),
    !x.complete ? el("p", {}, badge("running"), " being written") : el("p", {},
      badge(x.passed ? "passed" : "failed"), x.passed ? " answers like the run's model:" : " does not answer like the run's model:"),
    (x.checks || []).length ? el("table", { "data-testid": "export-checks" },
      el("thead", {}, el("tr", {}, el("th", {}, "check"), el("th", {}, "measured"), el("th", {}, "expected"), el("th", {}, ""))),
      el("tbody", {}, x.checks.map((c) => el("tr", {}, el("td", {}, c.name), el("td", { class: "num" }, c.value),
        el("td", {}, c.expected), el("td", {}, c.ok ? "✓" : c.required === false ? "⚠ (informative)" : "✗"))))) : null,
    x.complete && x.download ? el("p", {}, el("a", { href: `/api/files/${x.download}`, "data-testid": "export-download" },
      x.download.endsWith("?zip=1") ? "Download the folder (.zip)" : `Download ${x.download.split("/").pop()}`)) : null)));
}

// ---- wiring
function wire() {
  window.addEventListener("hashchange", route);
  for (const b of $$("#tabs button")) b.onclick = () => go(b.dataset.tab, b.dataset.tab === "train" ? S.run : undefined);
  $("#error-close").onclick = clearError;
  const dz = $("#dropzone");
  dz.addEventListener("dragover", (e) => { e.preventDefault(); dz.classList.add("over"); });
  dz.addEventListener("dragleave", () => dz.classList.remove("over"));
  dz.addEventListener("drop", (e) => { e.preventDefault(); dz.classList.remove("over");
    if (e.dataTransfer.files[0]) act(() => upload(e.dataTransfer.files[0])); });
  $("#data-file").onchange = (e) => { if (e.target.files[0]) act(() => upload(e.target.files[0])); e.target.value = ""; };
  $("#data-reinspect").onclick = () => act(() => inspect(S.inspected.path, $("#data-columns").value.trim()));
  $("#data-split").onclick = () => act(split);
  $("#data-use").onclick = useData;
  $("#run-name").addEventListener("input", formChanged);
  $("#yaml-upload").onchange = (e) => { if (e.target.files[0]) act(() => loadYaml(e.target.files[0])); e.target.value = ""; };
  $("#train-start").onclick = () => act(startTraining);
  $("#train-stop").onclick = () => act(stopRun);
  $("#train-resume").onclick = () => act(resumeRun);
  $("#runs-compare").onclick = () => act(compare);
  $("#eval-start").onclick = () => act(startEval);
  $("#eval-run").onchange = () => followEval($("#eval-run").value);
  $("#chat-send").onclick = () => act(sendChat);
  $("#chat-input").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); act(sendChat); } });
  $("#chat-clear").onclick = () => { chats.run = []; chats.base = []; $("#chat-run-log").replaceChildren(); $("#chat-base-log").replaceChildren(); };
  $("#chat-run").onchange = () => { $("#chat-run-label").textContent = $("#chat-run").value; $("#chat-clear").onclick(); refreshFeedback(); };
  $("#chat-train-feedback").onclick = () => act(trainOnFeedback);
  $("#export-start").onclick = () => act(startExport);
  $("#export-run").onchange = () => followExport($("#export-run").value);
}
async function main() {
  wire();
  const [info, schema] = await Promise.all([api("GET", "/info"), api("GET", "/schema")]);
  S.info = info; S.schema = schema;
  $("#version").textContent = info.version || "";
  const m = info.machine || {};
  $("#machine").textContent = [m.device, m.memory_gib ? `${fmt(m.memory_gib, 1)} GiB` : null, info.workspace].filter(Boolean).join(" · ");
  renderStart();
  renderForm();
  await Promise.all([refreshData(), refreshRuns(), refreshJobs()]);
  // a running job is shown again after a reload or a restart of `lapidar ui`: the server is the memory
  if (!location.hash.includes("/")) {
    // else the last job's run, finished while nobody watched
    const live = S.jobs.filter((j) => j.status === "running").pop() || S.jobs.filter((j) => j.status === "queued")[0]
      || S.jobs[S.jobs.length - 1];
    if (live && live.run) selectRun(live.run);
  }
  route();
  setInterval(() => { refreshJobs().catch(() => {}); }, 3000);
  setInterval(() => { if (!$("#tab-runs").hidden) refreshRuns(); }, 5000);
  document.body.dataset.ready = "1";
}
main().catch((e) => showError(e.message || e));
