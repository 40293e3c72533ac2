"use strict";
// The Tessera console: plain JS over the console's JSON API, charts by Vega-Lite.
// Every POST carries this session's CSRF token; nothing here ever sees a private key.

const state = { csrf: null, unlocked: false, quote: null, quoted: null, job: null };
window.tessera = { view: null, chart: null, result: null, charts: {}, data: {} };

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
  for (const v of VIEWS) {
    $(`view-${v}`).hidden = v !== name;
    $(`nav-${v}`).classList.toggle("active", v === name);
  }
  if (name === "ledger") { loadParticipants(); loadEvents(); loadCommittees(); }
  if (name === "market") { search(); loadTrends(); }
  if (name === "provider") loadProviders();
  if (name === "training") loadTrainings();
  if (name === "telemetry") loadTelemetry();
}
const VIEWS = ["analyst", "ledger", "market", "provider", "training", "telemetry"];

// a chart of its own: its data the named dataset "values", its Vega view kept by key
async function embed(key, target, spec, values) {
  window.tessera.charts[key] = null;
  window.tessera.data[key] = values;
  spec.$schema = "https://vega.github.io/schema/vega-lite/v6.json";
  spec.data = { name: "values" };
  spec.datasets = { values };
  const r = await vegaEmbed(target, spec, { actions: false, renderer: "svg" });
  window.tessera.charts[key] = r.view;
  return r.view;
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
  if (kind === "regression") {
    body.table = $("reg-table").value.trim();
    body.y = $("reg-y").value.trim();
    body.x = $("reg-x").value.split(",").map((s) => s.trim()).filter(Boolean);
  }
  if (kind === "kaplan_meier") {
    body.table = $("km-table").value.trim();
    body.time_column = $("km-time").value.trim();
    body.event_column = $("km-event").value.trim();
    const parts = $("km-edges").value.split(",").map((s) => s.trim()).filter(Boolean);
    body.edges = parts.map(Number);
    if (body.edges.some((x) => !Number.isFinite(x))) body.edges = parts; // let the server say why
  }
  const listings = $("listings").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (listings.length) body.datasets = listings.map((x) => (/^\d+$/.test(x) ? Number(x) : x)); // the server says why not
  return body;
}

function onKind() {
  for (const k of ["sql", "histogram", "kaplan_meier", "regression"]) {
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
  if (chart.type === "coefficients") {
    // one row per coefficient, each on its own scale (an intercept beside a slope)
    return { $schema: base.$schema, data: base.data, title: "coefficients: 95% confidence interval (±1.96 SE, black), 95% interval of the noise (grey)",
      facet: { row: { field: "name", type: "nominal", sort: null, title: null, header: { labelAngle: 0, labelAlign: "left" } } },
      resolve: { scale: { x: "independent" } },
      spec: { width: 460, height: 26, layer: [
        { mark: { type: "rule", color: "#bbb", strokeWidth: 8 }, encoding: { x: { field: "noise_lo", type: "quantitative", title: null, scale: { zero: false } }, x2: { field: "noise_hi" } } },
        { mark: { type: "rule", color: "black", strokeWidth: 2 }, encoding: { x: { field: "lo", type: "quantitative" }, x2: { field: "hi" } } },
        { mark: { type: "point", filled: true, size: 60, color: "#c33" }, encoding: { x: { field: "value", type: "quantitative" } } },
      ] } };
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
  $("verify-result").textContent = "";
  delete $("verify-result").dataset.state;
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
      v.cheaters.length ? ` naming ${v.cheaters.map(short).join(", ")}` : "",
      v.withheld.length ? `; withheld (unpaid): ${v.withheld.map(short).join(", ")}` : "")) : [el("li", {}, "no verdict yet")]));
    const s = t.settlement;
    $("trail-slashing").textContent = (s ? `settled at block ${s.block}: ${s.passed ? "passed" : "failed"}, paid ${s.paid}, refunded ${s.refunded}, slashed ${s.slashed}. ` : "not settled yet. ")
      + (t.cheaters.length ? `slashed: ${t.cheaters.map((c) => c.name || c.address).join(", ")}` : "nobody slashed");
  } catch (err) {
    showError("trail-error", err);
  }
}

async function verifyQuery() {
  const out = $("verify-result");
  out.dataset.state = "running";
  out.textContent = "re-checking the query's record here…";
  try {
    const v = await api("/api/verify", { query_id: $("trail-qid").value.trim() });
    const r = v.rechecked_here;
    out.dataset.state = v.verified ? "passed" : "failed";
    out.replaceChildren("re-checked here: ", el("strong", { id: "verify-verdict" }, v.verified ? "passed" : "FAILED"),
      ` · ledger ${v.status}`, r.passed === null || r.passed === undefined ? ` · ${r.error}` :
        ` · ${r.proofs_checked} proofs checked, record from ${r.from}` + (r.failures.length ? ` · ${r.failures.join("; ")}` : ""),
      ` · ${v.seconds} s`);
  } catch (err) {
    out.dataset.state = "error";
    out.textContent = err.message;
  }
}

async function loadEvents() {
  try {
    const e = await api("/api/ledger/events");
    const qlink = (q) => el("a", { href: "#ledger", class: "qid", title: q, onclick: () => openTrail(q) }, short(q));
    $("events-verdicts").tBodies[0].replaceChildren(...e.verdicts.map((v) => el("tr", {},
      el("td", {}, v.block), el("td", {}, qlink(v.query_id)), el("td", {}, v.name || short(v.verifier)),
      el("td", {}, v.passed ? "pass" : "fail"), el("td", {}, v.cheaters.map(short).join(", ")),
      el("td", {}, v.withheld.map(short).join(", ")))));
    $("events-settlements").tBodies[0].replaceChildren(...e.settlements.map((s) => el("tr", { "data-query": s.query_id },
      el("td", {}, s.block), el("td", {}, qlink(s.query_id)), el("td", {}, s.event), el("td", {}, s.passed ? "yes" : "no"),
      el("td", { class: "num" }, s.paid), el("td", { class: "num" }, s.refunded), el("td", { class: "num" }, s.slashed))));
    $("events-slashes").tBodies[0].replaceChildren(...(e.slashes.length ? e.slashes.map((s) => el("tr", {},
      el("td", {}, s.block), el("td", {}, s.name || s.account), el("td", { class: "num" }, s.amount)))
      : [el("tr", {}, el("td", { colSpan: 3 }, "nobody slashed on this chain"))]));
  } catch (err) { showError("trail-error", err); }
}

async function loadCommittees() {
  try {
    const cs = await api("/api/committees");
    window.tessera.committees = cs;
    $("committees").tBodies[0].replaceChildren(...cs.map((c) => el("tr", { "data-committee": String(c.committee_id) },
      el("td", {}, c.committee_id), el("td", {}, `${c.threshold} of ${c.size}`),
      el("td", { title: c.public_key }, el("code", {}, short(c.public_key))),
      el("td", {}, c.origin === "drawn" ? `drawn for epoch ${c.epoch} (seed ${short(c.seed)}) at ${c.time}` : `endorsed by its members after their DKG, ${c.time}`),
      el("td", {}, c.members.map((m) => `${m.index}. ${m.name || short(m.address)} (${m.stake} · ${m.reputation})`).join(", ")))));
  } catch (err) { showError("trail-error", err); }
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
    state.buying = d;
    $("buy").hidden = false;
    $("buy-title").textContent = `dataset ${d.dataset_id} (${d.provider_name || short(d.provider)}), ${d.price_per_query} credits a query`;
    invalidateBuy();
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

// -- buying from a listing ----------------------------------------------------------------------
function buyBody() {
  return { kind: "sql", sql: $("buy-sql").value, epsilon: Number($("buy-epsilon").value), datasets: [state.buying.dataset_id] };
}

function invalidateBuy() {
  state.buyQuote = null;
  $("buy-btn").disabled = true;
  $("buy-quote").textContent = "";
}

async function buyQuote() {
  showError("buy-error", null);
  invalidateBuy();
  const body = buyBody();
  try {
    const q = await api("/api/quote", body);
    state.buyQuote = q;
    state.buyQuoted = JSON.stringify(body);
    const d = q.datasets[0];
    $("buy-quote").replaceChildren("price ", el("strong", { id: "buy-price" }, q.price), " credits · ε ",
      el("strong", { id: "buy-eps" }, q.epsilon), ` (${q.privacy_cost_micro_rho.toLocaleString()} µρ of the ${d.budget_remaining.toLocaleString()} µρ left)`);
    $("buy-btn").disabled = q.over_budget;
    if (q.over_budget) showError("buy-error", new Error(q.message));
  } catch (err) { showError("buy-error", err); }
}

async function buy() {
  showError("buy-error", null);
  const body = buyBody();
  if (!state.buyQuote || JSON.stringify(body) !== state.buyQuoted) {
    showError("buy-error", new Error("the query changed since its quote: quote it again"));
    invalidateBuy();
    return;
  }
  $("buy-btn").disabled = true;
  $("buy-payment").textContent = "";
  $("buy-result").tBodies[0].replaceChildren();
  try {
    const r = await api("/api/run", { ...body, accepted_price: state.buyQuote.price });
    pollBuy(r.job_id);
  } catch (err) { showError("buy-error", err); }
}

async function pollBuy(jobId) {
  let j;
  try { j = await api(`/api/jobs/${jobId}`); } catch (err) { showError("buy-error", err); return; }
  const last = j.progress.length ? j.progress[j.progress.length - 1].message : "";
  $("buy-status").textContent = `${j.status}: ${last}`;
  $("buy-status").dataset.status = j.status;
  if (j.status === "running") { setTimeout(() => pollBuy(jobId), 400); return; }
  invalidateBuy();
  loadHistory();
  if (j.status === "failed") { showError("buy-error", new Error(`${j.error_kind}: ${j.error}`)); return; }
  const res = j.result;
  $("buy-result").tBodies[0].replaceChildren(...res.rows.map((r) => el("tr", {},
    el("td", {}, r.statistic), el("td", {}, r.key),
    el("td", { class: "num", "data-value": String(r.value) }, fmt(r.value)),
    el("td", { class: "num" }, r.lo === null ? "—" : `[${fmt(r.lo)}, ${fmt(r.hi)}]`))));
  try {
    const t = await api(`/api/queries/${res.query_id}`);
    const s = t.settlement;
    $("buy-payment").replaceChildren("query ", el("a", { href: "#ledger", id: "buy-qid", onclick: () => openTrail(res.query_id) }, res.query_id),
      ` · ledger ${t.status} · price ${t.price} · `,
      s ? el("span", { id: "buy-paid", "data-paid": String(s.paid), "data-refunded": String(s.refunded) },
        `settled at block ${s.block}: paid ${s.paid}, refunded ${s.refunded}`) : "not settled yet");
  } catch (err) { showError("buy-error", err); }
  search();
  showListing(state.buying.dataset_id);
  loadTrends();
}

// -- market trends --------------------------------------------------------------------------------
async function loadTrends() {
  window.tessera.charts["trends-queries"] = window.tessera.charts["trends-top"] = null;
  try {
    const t = await api("/api/market/trends");
    window.tessera.trends = t;
    const when = { field: "time", type: "temporal", title: "time (UTC, the block's)" };
    await embed("trends-queries", "#trends-queries", { width: 560, height: 180, title: "queries submitted (running total) over time",
      layer: [
        { mark: { type: "bar", opacity: 0.4 }, encoding: { x: when, y: { field: "queries", type: "quantitative", title: "queries" }, tooltip: [{ field: "block" }, { field: "time" }] } },
        { mark: { type: "line", point: true, interpolate: "step-after" }, encoding: { x: when, y: { field: "total", type: "quantitative" } } },
      ] }, t.queries);
    await embed("trends-top", "#trends-top", { width: 560, height: 24 * Math.max(2, t.top.length), title: "top datasets (distinct paying analysts, then revenue)",
      mark: "bar", encoding: { y: { field: "label", type: "nominal", sort: null, title: null }, x: { field: "revenue", type: "quantitative" }, tooltip: [{ field: "buyers" }, { field: "queries" }] } }, t.top);
  } catch (err) { showError("market-error", err); }
}

// -- providers -----------------------------------------------------------------------------------
async function loadProviders() {
  try {
    const ps = await api("/api/providers");
    const sel = $("provider-name");
    const was = sel.value;
    sel.replaceChildren(...ps.map((p) => el("option", { value: p.name }, `${p.name} (datasets ${p.datasets.join(", ")})`)));
    if (was) sel.value = was;
    await showProvider();
  } catch (err) { showError("provider-error", err); }
}

async function showProvider(ev) {
  if (ev) ev.preventDefault();
  showError("provider-error", null);
  window.tessera.charts["provider-budget"] = window.tessera.charts["provider-revenue"] = null;
  try {
    const p = await api(`/api/providers/${encodeURIComponent($("provider-name").value)}`);
    window.tessera.provider = p;
    $("provider").hidden = false;
    $("provider-meta").textContent = `${p.name} · ${p.address} · revenue ${p.revenue} credits · ${p.queries.length} queries of its data`;
    $("provider-datasets").tBodies[0].replaceChildren(...p.datasets.map((d) => el("tr", { "data-dataset": String(d.dataset_id) },
      el("td", {}, d.dataset_id), el("td", {}, d.tags.join(", ")), el("td", {}, d.operations.join(", ")),
      el("td", { class: "num" }, d.min_cohort), el("td", {}, d.allow_exact ? "yes" : "no"),
      el("td", { class: "num" }, d.price_per_query), el("td", { class: "num budget" }, d.budget_remaining), el("td", { class: "num revenue" }, d.revenue))));
    const series = p.datasets.flatMap((d) => d.series.map((s) => ({ ...s, dataset: `dataset ${d.dataset_id}` })));
    const x = { field: "time", type: "temporal", title: "time (UTC, the block's)" };
    await embed("provider-budget", "#provider-budget", { width: 560, height: 180, title: "privacy budget left (µρ) over time",
      mark: { type: "line", point: true, interpolate: "step-after" }, encoding: { x, y: { field: "budget_remaining", type: "quantitative", title: "µρ left", scale: { zero: false } }, color: { field: "dataset", type: "nominal" } } }, series);
    await embed("provider-revenue", "#provider-revenue", { width: 560, height: 180, title: "revenue (credits) over time",
      mark: { type: "line", point: true, interpolate: "step-after" }, encoding: { x, y: { field: "revenue", type: "quantitative", title: "credits" }, color: { field: "dataset", type: "nominal" } } }, series);
    $("provider-queries").tBodies[0].replaceChildren(...p.queries.map((q) => el("tr", { "data-query": q.query_id },
      el("td", {}, q.block), el("td", {}, el("a", { href: "#ledger", title: q.query_id, onclick: () => openTrail(q.query_id) }, short(q.query_id))),
      el("td", {}, q.analyst_name || short(q.analyst)), el("td", {}, q.kind), el("td", {}, q.operations.join(", ")),
      el("td", {}, q.datasets.join(", ")), el("td", { class: "num" }, q.privacy_cost_micro_rho), el("td", { class: "num" }, q.price),
      el("td", {}, q.status), el("td", { class: "num" }, q.settlement ? q.settlement.paid : "—"))));
  } catch (err) { showError("provider-error", err); }
}

// -- training ------------------------------------------------------------------------------------
async function loadTrainings() {
  try {
    const ts = await api("/api/trainings");
    $("trainings").tBodies[0].replaceChildren(...(ts.length ? ts.map((t) => el("tr", { "data-training": t.training },
      el("td", {}, el("a", { href: "#training", title: t.training, onclick: () => showTraining(t.training) }, short(t.training))),
      el("td", {}, t.analyst_name || short(t.analyst)), el("td", { class: "num" }, t.rounds),
      el("td", { class: "num" }, fmt(t.epsilon)), el("td", {}, t.local ? "yes" : "no")))
      : [el("tr", {}, el("td", { colSpan: 5, id: "trainings-empty" }, "no training on the model registry yet (tessera train)"))]));
  } catch (err) { showError("training-error", err); }
}

async function showTraining(id) {
  showError("training-error", null);
  window.tessera.charts.training = null;
  try {
    const t = await api(`/api/trainings/${encodeURIComponent(id)}`);
    window.tessera.training = t;
    $("training").hidden = false;
    $("training-meta").textContent = `training ${t.training} · ${t.analyst_name || t.analyst} · committee ${t.committee} · ${t.rounds.length - 1} rounds · ${t.total_rho_micro.toLocaleString()} µρ`;
    const points = t.rounds.flatMap((r) => [
      { round: r.round, measure: "ε spent", value: r.epsilon_spent },
      ...(r.loss === null ? [] : [{ round: r.round, measure: "loss", value: r.loss }]),
      ...(r.accuracy === null ? [] : [{ round: r.round, measure: "accuracy", value: r.accuracy }]),
    ]);
    await embed("training", "#training-chart", { width: 560, height: 220, title: "per round: ε spent so far, loss and accuracy (where measured)",
      mark: { type: "line", point: true }, encoding: { x: { field: "round", type: "quantitative", axis: { tickMinStep: 1 } }, y: { field: "value", type: "quantitative" }, color: { field: "measure", type: "nominal" } } }, points);
    $("training-rounds").tBodies[0].replaceChildren(...t.rounds.map((r) => el("tr", {},
      el("td", {}, r.round), el("td", {}, el("code", { title: r.cid }, short(r.cid))), el("td", { class: "num" }, r.rho_micro),
      el("td", { class: "num", "data-value": String(r.epsilon_spent) }, fmt(r.epsilon_spent)), el("td", { class: "num" }, fmt(r.loss)), el("td", { class: "num" }, fmt(r.accuracy)),
      el("td", {}, r.query_id ? el("a", { href: "#ledger", onclick: () => openTrail(r.query_id) }, short(r.query_id)) : "—"))));
  } catch (err) { showError("training-error", err); }
}

function trainBody() {
  const model = $("train-model").value;
  const body = { model, table: $("train-table").value.trim(), label: $("train-label").value.trim(),
    features: $("train-features").value.split(",").map((s) => s.trim()).filter(Boolean),
    rounds: Number($("train-rounds").value), epsilon: Number($("train-epsilon").value) };
  if (model === "softmax" || model === "mlp") body.classes = Number($("train-classes").value);
  if (model === "mlp") body.hidden = Number($("train-hidden").value);
  return body;
}

function onTrainModel() {
  const model = $("train-model").value;
  for (const e of document.querySelectorAll(".train-classes")) e.hidden = !(model === "softmax" || model === "mlp");
  for (const e of document.querySelectorAll(".train-hidden")) e.hidden = model !== "mlp";
  invalidateTrain();
}

function invalidateTrain() {
  state.trainQuote = null;
  $("train-btn").disabled = true;
}

async function trainQuote() {
  showError("training-error", null);
  invalidateTrain();
  const body = trainBody();
  try {
    const q = await api("/api/train/quote", body);
    state.trainQuote = q;
    state.trainQuoted = JSON.stringify(body);
    $("train-quote").replaceChildren("at most ", el("strong", { id: "train-price" }, q.price), ` credits (${q.price_per_round} a round) · ε `,
      el("strong", { id: "train-eps" }, fmt(q.epsilon)), ` in all over ${q.rounds} rounds · providers ${q.providers.join(", ")}`,
      q.validation ? " · scored on the console's validation table" : " · no validation table: loss and accuracy not measured");
    $("train-btn").disabled = q.over_budget;
    if (q.over_budget) showError("training-error", new Error(q.message));
  } catch (err) { showError("training-error", err); }
}

async function train() {
  showError("training-error", null);
  const body = trainBody();
  if (!state.trainQuote || JSON.stringify(body) !== state.trainQuoted) {
    showError("training-error", new Error("the training changed since its quote: quote it again"));
    invalidateTrain();
    return;
  }
  $("train-btn").disabled = true;
  try {
    const r = await api("/api/train", { ...body, accepted_price: state.trainQuote.price });
    pollTrain(r.job_id);
  } catch (err) { showError("training-error", err); }
}

async function pollTrain(jobId) {
  let j;
  try { j = await api(`/api/jobs/${jobId}`); } catch (err) { showError("training-error", err); return; }
  const last = j.progress.length ? j.progress[j.progress.length - 1].message : "";
  $("train-status").textContent = `${j.status}: ${last}`;
  $("train-status").dataset.status = j.status;
  if (j.status === "running") { setTimeout(() => pollTrain(jobId), 500); return; }
  invalidateTrain();
  if (j.status === "failed") { showError("training-error", new Error(`${j.error_kind}: ${j.error}`)); return; }
  await loadTrainings();
  await showTraining(j.result.training_id);
}

// -- telemetry -----------------------------------------------------------------------------------
async function loadTelemetry() {
  try {
    const t = await api("/api/telemetry");
    window.tessera.telemetry = t;
    $("telemetry-tasks").hidden = $("telemetry-form").hidden = !t.tasks.length;
    $("telemetry-empty").hidden = !!t.tasks.length;
    $("telemetry-empty").textContent = t.tasks.length ? "" : t.message;
    const counts = (k) => k.counts ? Object.entries(k.counts).sort().map(([n, c]) => `${n} ${c}`).join(", ") || "none yet" : `unread: ${k.counts_error}`;
    $("telemetry-tasks").tBodies[0].replaceChildren(...t.tasks.map((k) => el("tr", { "data-task": k.task },
      el("td", { title: k.task }, `${k.name} (${short(k.task)})`),
      el("td", {}, `${k.vdaf} ${Object.entries(k.params).map(([n, v]) => `${n}=${v}`).join(" ")}`),
      el("td", {}, k.dp), el("td", { class: "num" }, k.min_batch_size),
      el("td", {}, k.aggregators.map((a) => `${a.url} ${a.up ? "up" : "DOWN"}`).join(", ")),
      el("td", { class: "counts" }, counts(k)), el("td", { class: "num" }, k.collections.length))));
    const sel = $("telemetry-task");
    const was = sel.value;
    sel.replaceChildren(...t.tasks.map((k) => el("option", { value: k.task }, `${k.name} · ${k.vdaf}`)));
    if (was) sel.value = was;
    onTelemetryTask(t.now);
  } catch (err) { $("telemetry-empty").hidden = false; $("telemetry-empty").textContent = err.message; }
}

function onTelemetryTask(now) {
  const t = window.tessera.telemetry;
  const k = t && t.tasks.find((x) => x.task === $("telemetry-task").value);
  if (!k) return;
  $("telemetry-threshold").disabled = !k.poplar1;
  if (!$("telemetry-duration").value) $("telemetry-duration").value = 86400;
  if (!$("telemetry-start").value && now) {
    const d = Number($("telemetry-duration").value);
    $("telemetry-start").value = Math.floor((now - d) / k.time_precision) * k.time_precision;
  }
}

async function collectTelemetry(ev) {
  ev.preventDefault();
  showError("telemetry-error", null);
  window.tessera.charts["telemetry"] = null;
  const k = window.tessera.telemetry.tasks.find((x) => x.task === $("telemetry-task").value);
  const body = { task: k.task, start: Number($("telemetry-start").value), duration: Number($("telemetry-duration").value) };
  if (k.poplar1) body.threshold = Number($("telemetry-threshold").value);
  $("telemetry-btn").disabled = true;
  try {
    const out = await api("/api/telemetry/collect", body);
    $("telemetry-result").hidden = false;
    $("telemetry-meta").textContent = `${out.vdaf} · batch [${out.start}, ${out.start + out.duration}) · ${out.report_count ?? "—"} reports`;
    let rows;
    const spelled = (k) => `${k} = ${parseInt(k, 2)}`;  // a Poplar1 string and the integer it spells
    if (out.heavy_hitters) rows = Object.entries(out.heavy_hitters).map(([k, v]) => [spelled(k), v]);
    else if (out.counts) rows = Object.entries(out.counts).map(([k, v]) => [spelled(k), v]);
    else if (out.statistics) rows = Object.entries(out.statistics).map(([n, v]) => [n, typeof v === "object" && v !== null ? JSON.stringify(v) : v]);
    else if (Array.isArray(out.result)) rows = out.result.map((v, i) => [i, v]);
    else rows = [["result", out.result]];
    $("telemetry-values").tBodies[0].replaceChildren(...rows.map(([n, v]) => el("tr", {}, el("td", {}, n), el("td", { class: "num" }, fmt(v)))));
    $("telemetry-chart").replaceChildren();
    if (out.chart) {
      await embed("telemetry", "#telemetry-chart", { width: 560, height: 200, title: out.chart.title,
        mark: "bar", encoding: { x: { field: "label", type: "nominal", sort: null, title: null }, y: { field: "count", type: "quantitative" } } }, out.chart.values);
    }
    await loadTelemetry();
    window.tessera.telemetryResult = out;  // drawn, and the tasks' counts read again
  } catch (err) { showError("telemetry-error", err); }
  finally { $("telemetry-btn").disabled = false; }
}

// -- start -------------------------------------------------------------------------------------
window.addEventListener("DOMContentLoaded", async () => {
  $("unlock-form").addEventListener("submit", unlock);
  $("kind").addEventListener("change", onKind);
  $("buy-analyse-btn").addEventListener("click", () => {
    $("listings").value = String(state.buying.dataset_id);
    invalidateQuote();
    location.hash = "#analyst";
  });
  for (const id of ["sql", "epsilon", "listings", "hist-table", "hist-column", "hist-bins", "km-table", "km-time", "km-event", "km-edges", "reg-table", "reg-y", "reg-x"]) {
    $(id).addEventListener("input", invalidateQuote);
  }
  $("quote-btn").addEventListener("click", quote);
  $("run-btn").addEventListener("click", run);
  $("trail-form").addEventListener("submit", loadTrail);
  $("search-form").addEventListener("submit", search);
  $("rate-form").addEventListener("submit", rate);
  $("verify-btn").addEventListener("click", verifyQuery);
  $("buy-quote-btn").addEventListener("click", buyQuote);
  $("telemetry-form").addEventListener("submit", collectTelemetry);
  $("telemetry-task").addEventListener("change", () => onTelemetryTask());
  $("buy-btn").addEventListener("click", buy);
  for (const id of ["buy-sql", "buy-epsilon"]) $(id).addEventListener("input", invalidateBuy);
  $("provider-form").addEventListener("submit", showProvider);
  $("train-quote-btn").addEventListener("click", trainQuote);
  $("train-btn").addEventListener("click", train);
  for (const id of ["train-table", "train-features", "train-label", "train-rounds", "train-epsilon", "train-classes", "train-hidden"]) $(id).addEventListener("input", invalidateTrain);
  $("train-model").addEventListener("change", onTrainModel);
  window.addEventListener("hashchange", route);
  try { await loadSession(); } catch (err) { showError("query-error", err); }
  document.body.dataset.ready = "yes";
  route();
  loadHistory();
});
