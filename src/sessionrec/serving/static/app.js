// sessionrec web page: plain JavaScript over the JSON API, no build step, no CDN.
"use strict";

const K = 10;
const store = window.localStorage;
const $ = (id) => document.getElementById(id);

const state = {
  session: store.getItem("sessionrec.session") || newSessionId(),
  model: store.getItem("sessionrec.model") || "",
  suggestions: [],
  active: -1,
  searchSeq: 0,
};
store.setItem("sessionrec.session", state.session);

function newSessionId() {
  const rnd = (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
    : Date.now().toString(36) + Math.random().toString(36).slice(2);
  return "web-" + rnd;
}

function excludeSeen() { return $("exclude-seen").checked; }

async function api(method, path, body) {
  const t0 = performance.now();
  const res = await fetch(path, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const ms = performance.now() - t0;
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  return { ok: res.ok, status: res.status, data, ms };
}

function say(text, isError) {
  const m = $("message");
  m.textContent = text || "";
  m.className = isError ? "error" : "muted";
}

function describe(item) {
  const year = item.year ? ` · ${item.year}` : "";
  const genres = item.genres && item.genres.length ? ` · ${item.genres.join(", ")}` : "";
  return `${year}${genres}`;
}

// -- models --------------------------------------------------------------------------------
async function loadModels() {
  const r = await api("GET", "/v1/models");
  const sel = $("model");
  sel.innerHTML = "";
  if (!r.ok) { say("could not list the models", true); return; }
  for (const m of r.data.models) {
    const opt = document.createElement("option");
    opt.value = m.name;
    opt.textContent = `${m.name} (${m.model})`;
    sel.appendChild(opt);
  }
  const names = r.data.models.map((m) => m.name);
  if (!names.includes(state.model)) state.model = r.data.default;
  sel.value = state.model;
  sel.disabled = names.length < 2;
  showModelInfo(r.data.models.find((m) => m.name === state.model));
  sel.onchange = async () => {
    state.model = sel.value;
    store.setItem("sessionrec.model", state.model);
    showModelInfo(r.data.models.find((m) => m.name === state.model));
    await refresh();
  };
}

function showModelInfo(m) {
  if (!m) return;
  const ev = (m.evaluations || [])[0];
  const fig = ev && ev.metrics && ev.metrics["recall@20"] !== undefined
    ? ` · Recall@20 ${ev.metrics["recall@20"].toFixed(3)}` : "";
  $("model-info").textContent = `${m.n_items.toLocaleString()} items${fig}`;
}

// -- search with autocomplete (ARIA combobox) ------------------------------------------------
let timer = null;
function onInput() {
  clearTimeout(timer);
  timer = setTimeout(search, 120);
}

async function search() {
  const q = $("search").value.trim();
  const seq = ++state.searchSeq;
  if (!q) { closeList(); return; }
  const params = new URLSearchParams({ q, limit: "8", model: state.model });
  const r = await api("GET", "/v1/items?" + params);
  if (seq !== state.searchSeq) return; // a newer query is on its way
  if (!r.ok) { closeList(); return; }
  state.suggestions = r.data.items;
  state.active = state.suggestions.length ? 0 : -1;
  renderList();
}

function renderList() {
  const ul = $("suggestions");
  ul.innerHTML = "";
  state.suggestions.forEach((item, i) => {
    const li = document.createElement("li");
    li.id = `opt-${i}`;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", i === state.active ? "true" : "false");
    li.textContent = item.title || String(item.item_id);
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = describe(item);
    li.appendChild(meta);
    li.addEventListener("mousedown", (e) => { e.preventDefault(); pick(item); });
    ul.appendChild(li);
  });
  const open = state.suggestions.length > 0;
  ul.hidden = !open;
  $("search").setAttribute("aria-expanded", open ? "true" : "false");
  if (state.active >= 0) {
    $("search").setAttribute("aria-activedescendant", `opt-${state.active}`);
    const el = $(`opt-${state.active}`);
    if (el && el.scrollIntoView) el.scrollIntoView({ block: "nearest" });
  } else {
    $("search").removeAttribute("aria-activedescendant");
  }
  if (!open && $("search").value.trim()) say("no title matches");
  else say("");
}

function closeList() {
  state.suggestions = [];
  state.active = -1;
  renderList();
}

function onKey(e) {
  const n = state.suggestions.length;
  if (e.key === "ArrowDown" && n) { state.active = (state.active + 1) % n; renderList(); e.preventDefault(); }
  else if (e.key === "ArrowUp" && n) { state.active = (state.active - 1 + n) % n; renderList(); e.preventDefault(); }
  else if (e.key === "Enter") {
    if (n && state.active >= 0) { pick(state.suggestions[state.active]); e.preventDefault(); }
  } else if (e.key === "Escape") { closeList(); }
}

// -- the session -----------------------------------------------------------------------------
async function pick(item) {
  $("search").value = "";
  closeList();
  const r = await api("POST", `/v1/sessions/${encodeURIComponent(state.session)}/events`, {
    item: item.item_id, k: K, exclude_seen: excludeSeen(), model: state.model,
  });
  if (!r.ok) { say((r.data && r.data.detail) || `error ${r.status}`, true); return; }
  showLatency(r.ms);
  await showSession();
  renderRecs(r.data.recommendations);
  $("search").focus();
}

async function showSession() {
  const r = await api("GET", `/v1/sessions/${encodeURIComponent(state.session)}?` +
    new URLSearchParams({ model: state.model }));
  const ol = $("session");
  ol.innerHTML = "";
  const items = r.ok ? r.data.items : [];
  for (const item of items) {
    const li = document.createElement("li");
    li.textContent = item.title || String(item.item_id);
    ol.appendChild(li);
  }
  $("session-empty").hidden = items.length > 0;
  $("session-count").textContent = items.length ? `(${items.length})` : "";
  $("session-id").textContent = state.session;
  return items.length;
}

async function refresh() {
  const n = await showSession();
  if (!n) { renderRecs([]); return; }
  const params = new URLSearchParams({ k: String(K), exclude_seen: String(excludeSeen()), model: state.model });
  const r = await api("GET", `/v1/sessions/${encodeURIComponent(state.session)}/recommendations?` + params);
  if (r.ok) { showLatency(r.ms); renderRecs(r.data.recommendations); }
  else renderRecs([]);
}

function renderRecs(recs) {
  const body = document.querySelector("#recs tbody");
  body.innerHTML = "";
  for (const rec of recs) {
    const tr = document.createElement("tr");
    const cells = [
      [String(rec.rank), "num"],
      [null, "title"],
      [rec.year ? String(rec.year) : "", "num"],
      [(rec.genres || []).join(", "), ""],
      [rec.score.toPrecision(4), "num"],
      [rec.because && rec.because.length
        ? "because of " + rec.because.map((b) => b.title || b.item_id).join(", ") : "", "why"],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      if (cls) td.className = cls;
      if (cls === "title") {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "add";
        b.textContent = rec.title || String(rec.item_id);
        b.title = "Add to the session";
        b.addEventListener("click", () => pick(rec));
        td.appendChild(b);
      } else {
        td.textContent = text;
      }
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function showLatency(ms) {
  $("latency").textContent = `last request: ${ms.toFixed(1)} ms`;
}

async function reset() {
  await api("DELETE", `/v1/sessions/${encodeURIComponent(state.session)}`);
  state.session = newSessionId();
  store.setItem("sessionrec.session", state.session);
  say("new session");
  await refresh();
  $("search").focus();
}

window.addEventListener("DOMContentLoaded", async () => {
  $("search").addEventListener("input", onInput);
  $("search").addEventListener("keydown", onKey);
  $("search").addEventListener("blur", () => setTimeout(closeList, 150));
  $("reset").addEventListener("click", reset);
  $("exclude-seen").addEventListener("change", refresh);
  await loadModels();
  await refresh();
  document.body.dataset.ready = "1";
});
