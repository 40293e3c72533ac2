"use strict";
// The Tessera console: plain JS over the console's JSON API, charts by Vega-Lite.
// Every POST carries this session's CSRF token; nothing here ever sees a private key.

const state = { csrf: null, unlocked: false, quote: null, quoted: null, job: null };
window.tessera = { view: null, chart: null, result: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

async function api(path, body) {
  const opts = body === undefined ? { method: "GET" } : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf || "" },
    body: JSON.stringify(body),
  };
  opts.credentials = "same-origin";
  const resp = await fetch(path, opts);
  let data = null;
  try { data = await resp.json(); } catch (_e) { data = null; }
  if (!resp.ok) {
    const err = new Error((data && data.error) || `${resp.status} ${resp.statusText}`);
    err.kind = data && data.kind;
    err.status = resp.status;
    throw err;
  }
  return data;
}

function showError(id, err) {
  const box = $(id);
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = err.message || String(err);
}

const fmt = (v) => (v === null || v === undefined) ? "—" :
  (typeof v === "number" ? (Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)))) : String(v));
const short = (h) => h ? `${h.slice(0, 10)}…${h.slice(-6)}` : "";

// -- views ------------------------------------------------------------------------------
function route() {
  const name = (location.hash || "#analyst").slice(1);
  for (const v of ["analyst", "ledger", "market"]) {
    $(`view-${v}`).hidden = v !== name;
    $(`nav-${v}`).classList.toggle("active", v === name);
  }
  if (name === "ledger") loadParticipants();
  if (name === "market") search();
}

async function loadSession() {
  const s = await api("/api/session");
  state.csrf = s.csrf_token;
  setUnlocked(s.unlocked, s.account);
}

function setUnlocked(unlocked, account) {
  state.unlocked = unlocked;
  $("account").textContent = `analyst ${short(account)}` + (unlocked ? " · unlocked" : " · locked");
  $("account").dataset.unlocked = unlocked ? "yes" : "no";
  $("unlock-form").hidden = unlocked;
}

async function unlock(ev) {
  ev.preventDefault();
  const msg = $("unlock-msg");
  msg.className = "msg";
  msg.textContent = "unlocking…";
  try {
    const r = await api("/api/unlock", { password: $("password").value });
    $("password").value = "";
    setUnlocked(true, r.account);
    msg.textContent = "key file unlocked here, in the console";
  } catch (err) {
    msg.className = "msg error";
    msg.textContent = err.message;
  }
}

// -- the analyst --------------------------------------------------------------------------
function queryBody() {
  const kind = $("kind").value;
  const body = { kind, epsilon: Number($("epsilon").value) };
  if (kind === "sql") body.sql = $("sql").value;
  if (kind === "histogram") {
    body.table = $("hist-table").value.trim();
    body.column = $("hist-column").value.trim();
    body.bins = Number($("hist-bins").value);
  }
  if (kind === "kaplan_meier") {
    body.table = $("km-table").value.trim();
    body.time_column = $("km-time").value.trim();
    body.event_column = $("km-event").value.trim();
    const parts = $("km-edges").value.split(",").map((s) => s.trim()).filter(Boolean);
    body.edges = parts.map(Number);
    if (body.edges.some((x) => !Number.isFinite(x))) body.edges = parts; // let the server say why
  }
  return body;
}

function onKind() {
  for (const k of ["sql", "histogram", "kaplan_meier"]) {
    for (const e of document.querySelectorAll(`.kind-${k}`)) e.hidden = k !== $("kind").value;
  }
  invalidateQuote();
}

function invalidateQuote() {
  state.quote = null;
  $("run-btn").disabled = true;
  $("quote").hidden = true;
}

async function quote() {
  showError("query-error", null);
  invalidateQuote();
  const body = queryBody();
  try {
    const q = await api("/api/quote", body);
    state.quote = q;
    state.quoted = JSON.stringify(body);
    renderQuote(q);
    $("run-btn").disabled = q.over_budget;
    if (q.over_budget) showError("query-error", new Error(q.message));
  } catch (err) {
    showError("query-error", err);
  }
}

function renderQuote(q) {
  const box = $("quote");
  box.hidden = false;
  box.replaceChildren(
    el("h3", {}, "Quote"),
    el("p", {},
      "price ", el("strong", { id: "quote-price" }, q.price), " credits",
      ` (${q.passes} pass${q.passes > 1 ? "es" : ""}, plus a lock fee of ${q.lock_fee} per committee member) · `,
      "ε ", el("strong", { id: "quote-epsilon" }, q.epsilon),
      ` (δ ${q.delta}, ρ ${fmt(q.rho)} = ${q.privacy_cost_micro_rho.toLocaleString()} µρ on each dataset)`),
    el("table", { id: "quote-datasets" },
      el("thead", {}, el("tr", {}, ...["provider", "dataset", "price", "budget left (µρ)", "enough"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...q.datasets.map((d) => el("tr", {},
        el("td", {}, d.provider), el("td", {}, d.dataset_id), el("td", {}, d.price),
        el("td", {}, d.budget_remaining.toLocaleString()), el("td", {}, d.enough ? "yes" : "NO"))))),
  );
}

async function run() {
  showError("query-error", null);
  const body = queryBody();
  if (!state.quote || JSON.stringify(body) !== state.quoted) {
    showError("query-error", new Error("the query changed since its quote: quote it again"));
    invalidateQuote();
    return;
  }
  $("run-btn").disabled = true;
  $("result").hidden = true;
  $("job-status").textContent = "starting";
  $("job-status").dataset.status = "starting";
  window.tessera.view = null;
  try {
    const r = await api("/api/run", { ...body, accepted_price: state.quote.price });
    state.job = r.job_id;
    $("progress-box").hidden = false;
    $("progress").replaceChildren();
    $("job-status").textContent = "running";
    poll(r.job_id);
  } catch (err) {
    showError("query-error", err);
  }
}

async function poll(jobId) {
  let j;
  try { j = await api(`/api/jobs/${jobId}`); } catch (err) { showError("query-error", err); return; }
  $("progress").replaceChildren(...j.progress.map((p) => el("li", {}, `${p.t.toFixed(1)} s  ${p.message}`)));
  $("job-status").textContent = j.status;
  $("job-status").dataset.status = j.status;
  if (j.status === "running") { setTimeout(() => poll(jobId), 400); return; }
  loadHistory();
  invalidateQuote();
  if (j.status === "failed") { showError("query-error", new Error(`${j.error_kind}: ${j.error}`)); return; }
  renderResult(j.result);
}

function renderResult(res) {
  window.tessera.result = res;
  $("result").hidden = false;
  const cost = res.privacy_cost;
  $("result-meta").replaceChildren(
    "query ", el("a", { href: "#ledger", id: "result-qid", onclick: () => openTrail(res.query_id) }, res.query_id),
    " · verified ", el("strong", { id: "result-verified" }, res.verified ? "yes" : "NO"),
    ` · ledger ${res.ledger ? res.ledger.status : "—"} · price ${res.ledger ? res.ledger.price : "—"}`,
    cost ? ` · ε ${fmt(cost.epsilon)}` : " · exact",
  );
  $("result-table").tBodies[0].replaceChildren(...res.rows.map((r) => el("tr", {},
    el("td", {}, r.statistic), el("td", {}, r.key),
    el("td", { class: "num", "data-value": String(r.value) }, fmt(r.value)),
    el("td", { class: "num" }, r.lo === null ? "—" : `[${fmt(r.lo)}, ${fmt(r.hi)}]`))));
  drawChart(res.chart);
}

function chartSpec(chart) {
  const base = { $schema: "https://vega.github.io/schema/vega-lite/v6.json", width: 560, height: 260,
    data: { name: "values" } };
  if (chart.type === "survival") {
    return { ...base, title: "Kaplan–Meier survival, 95% band", layer: [
      { mark: { type: "area", opacity: 0.25, interpolate: "step-after" },
        encoding: { x: { field: "time", type: "quantitative" }, y: { field: "lo", type: "quantitative", scale: { domain: [0, 1] } }, y2: { field: "hi" } } },
      { mark: { type: "line", interpolate: "step-after", point: true },
        encoding: { x: { field: "time", type: "quantitative", title: "time" }, y: { field: "survival", type: "quantitative", title: "survival" } } },
    ] };
  }
  if (chart.type === "histogram") {
    return { ...base, title: "histogram (noised counts, 95% intervals)", layer: [
      { mark: { type: "rect", opacity: 0.8, stroke: "white" }, encoding: { x: { field: "bin_lo", type: "quantitative", title: "bin" }, x2: { field: "bin_hi" }, y: { field: "value", type: "quantitative", title: "count" }, y2: { datum: 0 } } },
      { mark: { type: "rule", color: "black" }, encoding: { x: { field: "mid", type: "quantitative" }, y: { field: "lo", type: "quantitative" }, y2: { field: "hi" } } },
    ], transform: [{ calculate: "(datum.bin_lo + datum.bin_hi) / 2", as: "mid" }] };
  }
  // one row per value, each with its own scale (a count and a mean side by side)
  return { $schema: base.$schema, data: base.data, title: "released values, 95% intervals",
    facet: { row: { field: "label", type: "nominal", title: null, header: { labelAngle: 0, labelAlign: "left" } } },
    resolve: { scale: { x: "independent" } },
    spec: { width: 460, height: 26, layer: [
      { mark: { type: "bar", opacity: 0.7 }, encoding: { x: { field: "value", type: "quantitative", title: null } } },
      { mark: { type: "rule", color: "black", strokeWidth: 2 }, encoding: { x: { field: "lo", type: "quantitative" }, x2: { field: "hi" } } },
      { mark: { type: "tick", color: "black", thickness: 2 }, encoding: { x: { field: "value", type: "quantitative" } } },
    ] } };
}

async function drawChart(chart) {
  window.tessera.chart = chart;
  window.tessera.view = null;
  const spec = chartSpec(chart);
  spec.datasets = { values: chart.values };
  const r = await vegaEmbed("#chart", spec, { actions: false, renderer: "svg" });
  window.tessera.view = r.view;
}

async function loadHistory() {
  try {
    const rows = await api("/api/history");
    $("history").tBodies[0].replaceChildren(...rows.map((h) => el("tr", {},
      el("td", {}, new Date(h.started * 1000).toLocaleTimeString()),
      el("td", {}, h.query), el("td", {}, h.epsilon), el("td", {}, h.price ?? "—"),
      el("td", {}, h.error ? `failed: ${h.error}` : h.status),
      el("td", {}, h.query_id ? el("a", { href: "#ledger", onclick: () => openTrail(h.query_id) }, short(h.query_id)) : ""))));
  } catch (_e) { /* the next poll tries again */ }
}

// -- the ledger explorer -------------------------------------------------------------------
function openTrail(qid) {
  $("trail-qid").value = qid;
  location.hash = "#ledger";
  loadTrail();
}

async function loadTrail(ev) {
  if (ev) ev.preventDefault();
  showError("trail-error", null);
  $("trail").hidden = true;
  try {
    const t = await api(`/api/queries/${encodeURIComponent($("trail-qid").value.trim())}`);
    $("trail").hidden = false;
    $("trail-status").replaceChildren(
      "status ", el("strong", { id: "trail-query-status" }, t.status),
      ` · price ${t.price} · ${t.privacy_cost_micro_rho.toLocaleString()} µρ on datasets ${t.datasets.join(", ")}`,
      ` · submitted at block ${t.submitted_block}, deadline ${t.deadline}`,
      ` · verifiers drawn: ${t.verifiers.map((v) => v.name || short(v.address)).join(", ") || "none yet"}`);
    $("trail-timeline").replaceChildren(...t.timeline.map((c) => el("li", { class: `c-${c.kind}` },
      el("span", { class: "block" }, `block ${c.block}`), " ",
      el("strong", { class: "kind" }, c.kind), " by ",
      el("span", { class: "author", title: c.author }, c.name || short(c.author)), " ",
      el("code", { class: "digest", title: c.digest }, short(c.digest)))));
    $("trail-verdicts").replaceChildren(...(t.verdicts.length ? t.verdicts.map((v) => el("li", {},
      `block ${v.block}: ${v.name || short(v.verifier)} voted `, el("strong", {}, v.passed ? "pass" : "fail"),
      v.cheaters.length ? ` naming ${v.cheaters.map(short).join(", ")}` : "")) : [el("li", {}, "no verdict yet")]));
    const s = t.settlement;
    $("trail-slashing").textContent = (s ? `settled at block ${s.block}: ${s.passed ? "passed" : "failed"}, paid ${s.paid}, refunded ${s.refunded}, slashed ${s.slashed}. ` : "not settled yet. ")
      + (t.cheaters.length ? `slashed: ${t.cheaters.map((c) => c.name || c.address).join(", ")}` : "nobody slashed");
  } catch (err) {
    showError("trail-error", err);
  }
}

async function loadParticipants() {
  try {
    const ps = await api("/api/participants");
    $("participants").tBodies[0].replaceChildren(...ps.map((p) => el("tr", {},
      el("td", {}, p.name), el("td", {}, el("code", {}, p.address)), el("td", {}, p.roles.join(", ")),
      el("td", { class: "num" }, p.stake), el("td", { class: "num" }, p.reputation))));
  } catch (err) { showError("trail-error", err); }
}

// -- the market ------------------------------------------------------------------------------
async function search(ev) {
  if (ev) ev.preventDefault();
  showError("market-error", null);
  try {
    const ds = await api(`/api/market/search?tag=${encodeURIComponent($("tag").value.trim())}`);
    $("datasets").tBodies[0].replaceChildren(...ds.map((d) => el("tr", { "data-dataset": String(d.dataset_id) },
      el("td", {}, el("a", { href: "#market", onclick: () => showListing(d.dataset_id) }, d.dataset_id)),
      el("td", {}, d.provider_name || short(d.provider)), el("td", {}, d.tags.join(", ")),
      el("td", { class: "num" }, d.price_per_query), el("td", { class: "num" }, d.budget_remaining.toLocaleString()),
      el("td", { class: "rating" }, d.rating === null ? "unrated" : `${d.rating.toFixed(2)} (${d.rating_count})`),
      el("td", { class: "num" }, d.queries))));
  } catch (err) { showError("market-error", err); }
}

async function showListing(id) {
  try {
    const d = await api(`/api/market/datasets/${id}`);
    const box = $("listing");
    box.hidden = false;
    box.replaceChildren(el("h3", {}, `Dataset ${d.dataset_id} · ${d.provider_name || d.provider}`),
      el("dl", {},
        ...[["tags", d.tags.join(", ")], ["operations", d.operations.join(", ")],
          ["minimum cohort", d.min_cohort], ["exact queries", d.allow_exact ? "allowed" : "no"],
          ["price per query", d.price_per_query], ["price per training", d.price_per_training],
          ["budget", `${d.budget_remaining.toLocaleString()} of ${d.budget_cap.toLocaleString()} µρ left`],
          ["rating", d.rating === null ? "unrated" : `${d.rating.toFixed(2)} over ${d.rating_count}`],
          ["queries / revenue / buyers", `${d.queries} / ${d.revenue} / ${d.buyers}`],
          ["bounds", Object.entries(d.bounds).map(([k, v]) => `${k} [${v.join(", ")}]`).join("; ")]]
          .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
    $("rate-dataset").value = d.dataset_id;
  } catch (err) { showError("market-error", err); }
}

async function rate(ev) {
  ev.preventDefault();
  const msg = $("rate-msg");
  msg.className = "msg";
  msg.textContent = "rating…";
  try {
    const r = await api("/api/market/rate", {
      query_id: $("rate-qid").value.trim(), dataset_id: Number($("rate-dataset").value),
      stars: Number($("rate-stars").value),
    });
    msg.textContent = `rated dataset ${r.dataset_id} ${r.stars}★: now ${r.rating.toFixed(2)} over ${r.rating_count} rating(s)`;
    search();
    if (!$("listing").hidden) showListing(r.dataset_id);
  } catch (err) {
    msg.className = "msg error";
    msg.textContent = err.message;
  }
}

// -- start -------------------------------------------------------------------------------------
window.addEventListener("DOMContentLoaded", async () => {
  $("unlock-form").addEventListener("submit", unlock);
  $("kind").addEventListener("change", onKind);
  for (const id of ["sql", "epsilon", "hist-table", "hist-column", "hist-bins", "km-table", "km-time", "km-event", "km-edges"]) {
    $(id).addEventListener("input", invalidateQuote);
  }
  $("quote-btn").addEventListener("click", quote);
  $("run-btn").addEventListener("click", run);
  $("trail-form").addEventListener("submit", loadTrail);
  $("search-form").addEventListener("submit", search);
  $("rate-form").addEventListener("submit", rate);
  window.addEventListener("hashchange", route);
  try { await loadSession(); } catch (err) { showError("query-error", err); }
  document.body.dataset.ready = "yes";
  route();
  loadHistory();
});
