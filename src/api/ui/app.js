// deployd dashboard: plain JavaScript, talks only to this server's public API
// with the signed-in token (kept in sessionStorage, for this tab only).

const TOKEN_KEY = "deployd.token";
const main = document.getElementById("main");
const top = document.getElementById("top");
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const STATUS_ICON = { pending: "○", running: "◐", completed: "✓", failed: "✕", cancelled: "⊘", skipped: "–", succeeded: "✓" };

let caps = null; // "get /api/entities", ... : what this server's OpenAPI document offers
let stopView = () => {}; // ends the current view's live updates

// ---------- small helpers ----------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, path, body, extraHeaders = {}) {
  const headers = { Accept: "application/json", ...extraHeaders };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401 && t && !path.startsWith("/api/openapi")) {
    // the token no longer works: back to sign-in, saying why
    const problem = await res.json().catch(() => ({}));
    sessionStorage.removeItem(TOKEN_KEY);
    render({ signinError: problem.detail || "Your token was refused." });
    throw new ApiError(401, problem);
  }
  if (!res.ok) {
    const problem = await res.json().catch(() => ({ detail: res.statusText }));
    throw new ApiError(res.status, problem);
  }
  if (res.status === 204) return null;
  return res.json();
}

async function loadCaps() {
  if (caps) return caps;
  caps = new Set();
  try {
    const doc = await api("GET", "/api/openapi.json");
    for (const [path, ops] of Object.entries(doc.paths || {})) {
      for (const m of Object.keys(ops)) caps.add(`${m} ${path}`);
    }
  } catch (_) { /* no document: only the deploy API is assumed */ }
  return caps;
}
const has = (op) => caps && caps.has(op);

// A problem in the API's own words: its detail and each field message.
function problemBox(err, where) {
  const p = err.problem || {};
  const box = h("div", { class: "problem", role: "alert" },
    h("strong", {}, p.title || (err.status ? `Error ${err.status}` : "Error")),
    h("span", {}, " ", p.detail || err.message));
  if (Array.isArray(p.errors) && p.errors.length) {
    box.append(h("ul", {}, p.errors.map((e) => h("li", {}, h("code", {}, e.pointer), " ", e.message))));
  }
  if (where) { where.replaceChildren(box); }
  return box;
}

// Puts each field error next to the form control it names (by pointer).
function fieldErrors(form, err) {
  form.querySelectorAll(".field-error").forEach((e) => e.remove());
  form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
  const errors = (err.problem && err.problem.errors) || [];
  const unplaced = [];
  for (const e of errors) {
    // pointers name a query parameter (`entity_id`) or a body member (`body/url`)
    const key = String(e.pointer || "").replace(/^#?\//, "").replace(/^body\//, "").split("/")[0];
    const control = form.querySelector(`[data-param="${CSS.escape(key)}"]`) || form.querySelector(`[data-api="${CSS.escape(key)}"]`);
    if (control) {
      control.setAttribute("aria-invalid", "true");
      const msg = h("p", { class: "field-error", id: `err-${key}` }, e.message);
      control.setAttribute("aria-describedby", msg.id);
      control.closest(".field").append(msg);
    } else unplaced.push(e);
  }
  return unplaced;
}

function fmtTime(s) {
  if (!s) return "—";
  const d = new Date(s);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function ago(s) {
  if (!s) return "—";
  const sec = Math.max(0, (Date.now() - new Date(s).getTime()) / 1000);
  if (sec < 60) return `${Math.floor(sec)}s ago`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m ago`;
  if (sec < 86400) return `${Math.floor(sec / 3600)}h ago`;
  return `${Math.floor(sec / 86400)}d ago`;
}
function duration(from, to) {
  if (!from) return "—";
  const ms = (to ? new Date(to) : new Date()) - new Date(from);
  if (ms < 1000) return `${Math.max(0, ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
}
const badge = (status) => h("span", { class: `badge s-${status}` }, h("span", { "aria-hidden": "true" }, STATUS_ICON[status] || "•"), " ", status);
const link = (href, text, cls) => h("a", { href, class: cls }, text);
const short = (id) => (id && id.length > 14 ? `${id.slice(0, 4)}…${id.slice(-6)}` : id || "—");

// Follows an SSE stream over fetch (EventSource cannot send the token).
// Calls onEvent({id, event, data}); resolves when the stream ends. Returns
// false when the server answered something other than a stream.
async function follow(path, onEvent, signal, lastId) {
  const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token()}` };
  if (lastId) headers["Last-Event-ID"] = lastId;
  const res = await fetch(path, { headers, signal });
  if (!res.ok || !(res.headers.get("content-type") || "").startsWith("text/event-stream")) {
    if (res.body) res.body.cancel().catch(() => {});
    return false;
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return true;
    buf += value;
    let cut;
    while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
      const msg = { data: "" };
      for (const line of block.split(/\r?\n/)) {
        if (!line || line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const k = i < 0 ? line : line.slice(0, i);
        const v = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (k === "data") msg.data += (msg.data ? "\n" : "") + v;
        else msg[k] = v;
      }
      if (msg.event || msg.data) onEvent(msg);
    }
  }
}

// Live updates for a view: SSE where the server streams, else polling.
// `refresh` is called (debounced) on each change; `note` says which it is.
function liveUpdates(path, refresh, note, { pollMs = 3000, until } = {}) {
  const ctl = new AbortController();
  let stopped = false, timer = null, pending = null;
  const kick = () => { clearTimeout(pending); pending = setTimeout(() => refresh(), 150); };
  const poll = () => {
    note.textContent = `Refreshing every ${pollMs / 1000} s (this server has no event stream)`;
    note.dataset.mode = "poll";
    const tick = async () => {
      if (stopped) return;
      await refresh();
      if (until && until()) { note.textContent = "Finished"; note.dataset.mode = "done"; return; }
      timer = setTimeout(tick, pollMs);
    };
    timer = setTimeout(tick, pollMs);
  };
  (async () => {
    let lastId = null;
    for (let attempt = 0; !stopped && attempt < 20; attempt++) {
      let streamed;
      try {
        note.textContent = "Live"; note.dataset.mode = "live";
        streamed = await follow(path, (m) => { if (m.id) lastId = m.id; kick(); }, ctl.signal, lastId);
      } catch (e) {
        if (stopped) return;
        streamed = attempt > 0; // a dropped stream: resume from the last id
      }
      if (stopped) return;
      if (!streamed) { poll(); return; }
      if (until && until()) { await refresh(); note.textContent = "Finished"; note.dataset.mode = "done"; return; }
      if (until) { await refresh(); if (until()) { note.textContent = "Finished"; note.dataset.mode = "done"; return; } }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return () => { stopped = true; ctl.abort(); clearTimeout(timer); clearTimeout(pending); };
}

// A confirmation dialog with an optional reason; resolves to the reason or null.
function confirmDialog({ title, body, action, reason, danger, run }) {
  const d = h("dialog", { class: "confirm", "aria-labelledby": "dlg-title" });
  const errBox = h("div", { class: "dlg-error" });
  const reasonField = reason
    ? h("div", { class: "field" }, h("label", { for: "dlg-reason" }, "Reason"),
        h("textarea", { id: "dlg-reason", rows: "3", "data-param": "reason", placeholder: "Why? It is kept in the event history." }))
    : null;
  const form = h("form", { method: "dialog" },
    h("h2", { id: "dlg-title" }, title), h("p", {}, body), reasonField, errBox,
    h("div", { class: "actions" },
      h("button", { type: "button", class: "ghost", onclick: () => d.close() }, "Keep it"),
      h("button", { type: "submit", class: danger ? "danger" : "primary", id: "dlg-confirm" }, action)));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const btn = form.querySelector("#dlg-confirm");
    btn.disabled = true;
    try {
      const r = reasonField ? form.querySelector("textarea").value.trim() : null;
      await run(r || undefined);
      d.close();
    } catch (e) {
      const rest = fieldErrors(form, e);
      problemBox(e, errBox);
      if (!rest.length && e.problem && e.problem.errors) errBox.replaceChildren();
      btn.disabled = false;
    }
  });
  d.append(form);
  d.addEventListener("close", () => d.remove());
  document.body.append(d);
  d.showModal();
  (form.querySelector("textarea") || form.querySelector("#dlg-confirm")).focus();
}

// ---------- views ----------

function signIn(message) {
  top.hidden = true;
  const err = h("div", { id: "signin-error" });
  if (message) err.append(h("p", { class: "field-error", role: "alert" }, message));
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true, spellcheck: "false", "aria-describedby": "signin-error token-help" });
  const form = h("form", { class: "signin card" },
    h("div", { class: "signin-brand" }, h("img", { src: document.querySelector("link[rel=icon]").href, alt: "", width: 36, height: 36 }), h("span", {}, "deployd")),
    h("h1", {}, "Sign in"),
    h("div", { class: "field" }, h("label", { for: "token" }, "API token"), input,
      h("p", { class: "help", id: "token-help" }, "A token from ", h("code", {}, "deployd token create"), ". It is kept for this browser tab only.")),
    err,
    h("button", { type: "submit", class: "primary wide" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    sessionStorage.setItem(TOKEN_KEY, t);
    try {
      const res = await fetch("/api/deploys?limit=1", { headers: { Authorization: `Bearer ${t}`, Accept: "application/json" } });
      if (!res.ok) {
        const p = await res.json().catch(() => ({}));
        throw new Error(p.detail || `The server answered ${res.status}.`);
      }
      const back = location.pathname === "/ui/" || location.pathname === "/ui" ? "/ui/deploys" : location.pathname + location.search;
      navigate(back, true);
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      input.setAttribute("aria-invalid", "true");
      err.replaceChildren(h("p", { class: "field-error", role: "alert" }, e.message));
      input.focus();
    }
  });
  main.replaceChildren(h("div", { class: "signin-wrap" }, form));
  input.focus();
}

const FILTERS = [
  { key: "status", label: "Status", options: ["pending", "running", "completed", "failed", "cancelled"] },
  { key: "trigger", label: "Trigger", options: ["auto", "manual", "rollback"] },
  { key: "target", label: "Target", options: ["production", "preview"] },
  { key: "app", label: "App or function id", text: true, placeholder: "app_…" },
  { key: "creator", label: "Created by", text: true, placeholder: "alice" },
];

// The address bar's filters → the API's shorthands and `filter`.
function listQuery(q) {
  const p = new URLSearchParams();
  p.set("limit", q.get("limit") || "25");
  if (q.get("status")) p.set("status", q.get("status"));
  if (q.get("trigger")) p.set("trigger", q.get("trigger"));
  if (q.get("app")) p.set("entity_id", q.get("app"));
  if (q.get("creator")) p.set("created_by", q.get("creator"));
  if (q.get("target")) p.set("filter", JSON.stringify({ target: { eq: q.get("target") } }));
  if (q.get("after")) p.set("after", q.get("after"));
  if (q.get("before")) p.set("before", q.get("before"));
  return p;
}
// The filter control → the API parameter it sets (field errors find it by this).
const API_OF = { status: "status", trigger: "trigger", app: "entity_id", creator: "created_by", target: "filter" };

function deployRow(d, names) {
  const tr = h("tr", { "data-id": d.id, "data-status": d.status },
    h("td", {}, badge(d.status)),
    h("td", {}, link(`/ui/deploys/${d.id}`, short(d.id), "mono"), d.live ? h("span", { class: "live" }, h("span", { "aria-hidden": "true" }, "●"), " live") : null),
    h("td", {}, link(`/ui/apps/${d.entityId}`, names.get(d.entityId) || short(d.entityId))),
    h("td", { class: "hide-sm" }, d.trigger),
    h("td", { class: "hide-sm" }, d.target || "—"),
    h("td", { class: "hide-sm" }, d.createdBy),
    h("td", { title: fmtTime(d.createdAt) }, ago(d.createdAt)),
    h("td", { class: "num hide-sm" }, d.startedAt ? duration(d.startedAt, d.completedAt) : "—"));
  return tr;
}

async function entityNames() {
  const names = new Map();
  if (!has("get /api/entities")) return names;
  try {
    const page = await api("GET", "/api/entities?limit=100");
    for (const e of page.data || []) names.set(e.id, e.name || e.id);
  } catch (_) { /* names are a nicety: ids stand in */ }
  return names;
}

async function deploysView(q) {
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter deploys" });
  for (const f of FILTERS) {
    const id = `f-${f.key}`;
    const control = f.text
      ? h("input", { id, name: f.key, "data-param": f.key, "data-api": API_OF[f.key], value: q.get(f.key) || "", placeholder: f.placeholder, spellcheck: "false" })
      : h("select", { id, name: f.key, "data-param": f.key, "data-api": API_OF[f.key] },
          h("option", { value: "" }, "Any"), f.options.map((o) => h("option", { value: o, selected: q.get(f.key) === o }, o)));
    if (!f.text) control.addEventListener("change", () => form.requestSubmit());
    form.append(h("div", { class: "field" }, h("label", { for: id }, f.label), control));
  }
  form.append(h("div", { class: "field buttons" }, h("button", { type: "submit", class: "primary" }, "Apply"),
    h("a", { href: "/ui/deploys", class: "button ghost" }, "Clear")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const f of FILTERS) { const v = form.elements[f.key].value.trim(); if (v) p.set(f.key, v); }
    navigate(`/ui/deploys${p.toString() ? "?" + p : ""}`);
  });

  const note = h("span", { class: "live-note", id: "live-note", "aria-live": "polite" });
  const summary = h("p", { class: "summary", id: "summary", "aria-live": "polite" }, "Loading…");
  const tbody = h("tbody");
  const table = h("table", { class: "list", id: "deploys" },
    h("caption", { class: "sr-only" }, "Deploys, newest first"),
    h("thead", {}, h("tr", {}, ["Status", "Deploy", "App", "Trigger", "Target", "Created by", "Age", "Duration"].map((c, i) =>
      h("th", { scope: "col", class: [3, 4, 5, 7].includes(i) ? "hide-sm" : null }, c)))), tbody);
  const errBox = h("div");
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Deploys"), note),
    form, errBox, summary, h("div", { class: "table-wrap" }, table), pager);

  const names = await entityNames();
  let firstRender = true;
  const refresh = async () => {
    const t0 = performance.now();
    try {
      const page = await api("GET", `/api/deploys?${listQuery(q)}`);
      errBox.replaceChildren();
      tbody.replaceChildren(...page.data.map((d) => deployRow(d, names)));
      if (!page.data.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No deploys match these filters.")));
      const info = page.pageInfo || {};
      summary.textContent = `${page.data.length} shown of ${info.total ?? "?"} deploy${info.total === 1 ? "" : "s"}`;
      const base = new URLSearchParams(q);
      base.delete("after"); base.delete("before");
      const prev = new URLSearchParams(base); prev.set("before", info.startCursor || "");
      const next = new URLSearchParams(base); next.set("after", info.endCursor || "");
      pager.replaceChildren(
        info.hasPreviousPage ? link(`/ui/deploys?${prev}`, "← Newer", "button ghost") : h("span", { class: "button ghost disabled", "aria-disabled": "true" }, "← Newer"),
        info.hasNextPage ? link(`/ui/deploys?${next}`, "Older →", "button ghost") : h("span", { class: "button ghost disabled", "aria-disabled": "true" }, "Older →"));
      if (firstRender) {
        firstRender = false;
        window.__firstRender = { rows: page.data.length, ms: performance.now() - t0, sinceNavigation: performance.now() };
      }
    } catch (e) {
      if (e.status === 401) return;
      const rest = fieldErrors(form, e);
      problemBox(e, errBox);
      if (!rest.length && e.problem.errors) errBox.firstChild.querySelector("ul")?.remove();
      summary.textContent = "";
      tbody.replaceChildren();
    }
  };
  await refresh();
  const streamPath = has("get /api/events") ? "/api/events" : null;
  if (streamPath) return liveUpdates(streamPath, refresh, note);
  note.textContent = "Refreshing every 3 s (this server has no event stream yet)";
  note.dataset.mode = "poll";
  const timer = setInterval(refresh, 3000);
  return () => clearInterval(timer);
}

function reasonOf(ev) {
  const d = ev.data || {};
  return d.reason || (d.cancellation && d.cancellation.reason) || d.error || null;
}

async function deployView(id) {
  const head = h("div", { class: "page-head" });
  const note = h("span", { class: "live-note", id: "live-note", "aria-live": "polite" });
  const body = h("div", { class: "detail" }, h("p", {}, "Loading…"));
  const actionError = h("div", { id: "action-error" });
  main.replaceChildren(h("p", { class: "crumbs" }, link("/ui/deploys", "← Deploys")), head, actionError, body);
  let current = null;

  const refresh = async () => {
    let d, events;
    try {
      [d, events] = await Promise.all([
        api("GET", `/api/deploys/${encodeURIComponent(id)}`),
        api("GET", `/api/deploys/${encodeURIComponent(id)}/events?limit=1000`),
      ]);
    } catch (e) {
      if (e.status !== 401) problemBox(e, body);
      return;
    }
    current = d;
    const actions = h("div", { class: "actions" });
    if (!TERMINAL.has(d.status)) {
      actions.append(h("button", { class: "danger", type: "button", id: "cancel", onclick: () => confirmDialog({
        title: `Cancel ${d.id}?`, body: d.status === "running" ? "The step in flight finishes and its result is discarded." : "It will not run.",
        action: "Cancel deploy", reason: true, danger: true,
        run: async (reason) => { await api("POST", `/api/deploys/${d.id}/cancel`, { reason }); await refresh(); },
      }) }, "Cancel…"));
    }
    const canRollback = has("post /api/deploys/{id}/rollback") && d.status === "completed" && d.target === "production" && !d.live;
    if (canRollback) {
      actions.append(h("button", { class: "secondary", type: "button", id: "rollback", onclick: () => confirmDialog({
        title: `Roll back to ${d.id}?`, body: "A new production deploy of this build goes live and pins production until a promotion or a manual deploy.",
        action: "Roll back", reason: true, danger: true,
        run: async (reason) => { const n = await api("POST", `/api/deploys/${d.id}/rollback`, { reason }); navigate(`/ui/deploys/${n.id}`); },
      }) }, "Roll back…"));
    }
    if (has("post /api/deploys/{id}/promote") && d.status === "completed" && !d.live) {
      actions.append(h("button", { class: "secondary", type: "button", id: "promote", onclick: () => confirmDialog({
        title: `Promote ${d.id} to production?`, body: "A new production deploy of this build goes live and unpins production.",
        action: "Promote", reason: true,
        run: async (reason) => { const n = await api("POST", `/api/deploys/${d.id}/promote`, { reason }); navigate(`/ui/deploys/${n.id}`); },
      }) }, "Promote…"));
    }
    head.replaceChildren(h("div", {}, h("h1", { class: "mono" }, d.id), h("p", { class: "sub" }, badge(d.status),
      d.live ? h("span", { class: "live" }, h("span", { "aria-hidden": "true" }, "●"), " live") : null,
      " ", d.trigger, " deploy", d.target ? ` to ${d.target}` : "", " of ", link(`/ui/apps/${d.entityId}`, d.entityId, "mono"))), h("div", { class: "head-side" }, note, actions));

    const field = (k, v) => [h("dt", {}, k), h("dd", {}, v ?? "—")];
    const url = (u) => (u ? h("a", { href: u, rel: "noreferrer" }, u) : "—");
    const fields = h("dl", { class: "fields" },
      field("Status", badge(d.status)), field("Trigger", d.trigger), field("Target", d.target || "—"),
      field("Live", d.live === undefined ? "—" : d.live ? "yes" : "no"),
      field("App or function", link(`/ui/apps/${d.entityId}`, d.entityId, "mono")),
      field("Build", h("span", { class: "mono" }, d.buildId)), field("Workspace", h("span", { class: "mono" }, d.workspaceId)),
      field("Number", d.sequenceNumber), field("Created by", d.createdBy),
      field("Created", fmtTime(d.createdAt)), field("Started", fmtTime(d.startedAt)), field("Completed", fmtTime(d.completedAt)),
      field("Duration", d.startedAt ? duration(d.startedAt, d.completedAt) : "—"),
      field("Preview URL", url(d.previewUrl)), field("Production URL", url(d.productionUrl)),
      d.rollbackOf ? field("Rollback of", link(`/ui/deploys/${d.rollbackOf}`, d.rollbackOf, "mono")) : null,
      d.promotedFrom ? field("Promoted from", link(`/ui/deploys/${d.promotedFrom}`, d.promotedFrom, "mono")) : null,
      d.supersededBy ? field("Superseded by", link(`/ui/deploys/${d.supersededBy}`, d.supersededBy, "mono")) : null,
      d.sourceEventId ? field("Source event", h("span", { class: "mono" }, d.sourceEventId)) : null,
      d.cancellation ? field("Cancelled", `by ${d.cancellation.cancelledBy} at ${fmtTime(d.cancellation.cancelledAt)}${d.cancellation.reason ? ` — “${d.cancellation.reason}”` : ""}`) : null,
      d.metadata && Object.keys(d.metadata).length ? field("Metadata", h("code", {}, JSON.stringify(d.metadata))) : null);
    const error = d.error ? h("div", { class: "problem", role: "status" }, h("strong", {}, "Failed: "), d.error) : null;

    const steps = h("ol", { class: "timeline", id: "steps" }, (d.steps || []).map((s) =>
      h("li", { class: `step s-${s.status}`, "data-step": s.name },
        h("span", { class: "dot", "aria-hidden": "true" }, STATUS_ICON[s.status] || "•"),
        h("div", {}, h("strong", {}, s.name), " ", h("span", { class: "muted" }, s.status),
          h("div", { class: "muted small" }, s.startedAt ? `${fmtTime(s.startedAt)} · ${duration(s.startedAt, s.completedAt)}${s.completedAt ? "" : " so far"}` : "not started"),
          s.error ? h("p", { class: "step-error" }, s.error) : null))));

    const history = h("table", { class: "list", id: "history" },
      h("caption", { class: "sr-only" }, "Event history"),
      h("thead", {}, h("tr", {}, ["#", "Event", "When", "Actor", "Reason or detail"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, events.map((ev) => h("tr", {},
        h("td", { class: "num" }, ev.sequence), h("td", {}, ev.type), h("td", {}, fmtTime(ev.recordedAt)),
        h("td", {}, ev.actor || "system"), h("td", {}, reasonOf(ev) || (ev.data && ev.data.step ? `step ${ev.data.step}` : ""))))));

    body.replaceChildren(error || "", h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "h-fields" }, h("h2", { id: "h-fields" }, "Details"), fields),
      h("section", { class: "card", "aria-labelledby": "h-steps" }, h("h2", { id: "h-steps" }, "Steps"), steps)),
      h("section", { class: "card", "aria-labelledby": "h-history" }, h("h2", { id: "h-history" }, "Event history"), h("div", { class: "table-wrap" }, history)));
  };
  await refresh();
  if (!current) return () => {};
  if (TERMINAL.has(current.status)) { note.textContent = ""; return () => {}; }
  return liveUpdates(`/api/deploys/${encodeURIComponent(id)}/events`, refresh, note,
    { pollMs: 1000, until: () => current && TERMINAL.has(current.status) });
}

function missing(what, op) {
  return h("div", { class: "card notice", role: "status" }, h("h2", {}, `${what} are not available on this server`),
    h("p", {}, "This deployd does not offer ", h("code", {}, op), " yet, so there is nothing to show here. Deploys are listed under ", link("/ui/deploys", "Deploys"), "."));
}

function deployLatest(appId, where) {
  return h("button", { type: "button", class: "primary", "data-deploy": appId, onclick: async (ev) => {
    ev.target.disabled = true;
    try {
      const d = await api("POST", "/api/deploys", { appId });
      navigate(`/ui/deploys/${d.id}`);
    } catch (e) { if (e.status !== 401) problemBox(e, where); ev.target.disabled = false; }
  } }, "Deploy latest build");
}

async function appsView() {
  main.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Apps and functions")));
  if (!has("get /api/entities")) { main.append(missing("Apps and functions", "GET /api/entities")); return () => {}; }
  const errBox = h("div");
  main.append(errBox);
  try {
    const page = await api("GET", "/api/entities?limit=100");
    main.append(h("p", { class: "summary" }, `${page.data.length} shown of ${page.pageInfo?.total ?? "?"}`),
      h("div", { class: "table-wrap" }, h("table", { class: "list", id: "entities" },
        h("thead", {}, h("tr", {}, ["Name", "Kind", "Live deploy", "Production", "Production URL", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, page.data.map((e) => h("tr", {},
          h("td", {}, link(`/ui/apps/${e.id}`, e.name || e.id)), h("td", {}, e.kind),
          h("td", {}, e.live ? link(`/ui/deploys/${e.live.deployId}`, short(e.live.deployId), "mono") : "none"),
          h("td", {}, e.pinned ? h("span", { class: "badge s-pinned" }, h("span", { "aria-hidden": "true" }, "⚑"), " pinned by ", short(e.pinnedBy)) : "follows deploys"),
          h("td", {}, e.productionUrl ? h("a", { href: e.productionUrl }, e.productionUrl) : "—"),
          h("td", {}, e.kind === "app" ? deployLatest(e.id, errBox) : null)))))));
  } catch (e) { if (e.status !== 401) problemBox(e, errBox); }
  return () => {};
}

async function appView(id) {
  const errBox = h("div");
  main.replaceChildren(h("p", { class: "crumbs" }, link("/ui/apps", "← Apps")), h("div", { class: "page-head" }, h("h1", { class: "mono" }, id), deployLatest(id, errBox)), errBox);
  if (has("get /api/entities/{id}")) {
    try {
      const e = await api("GET", `/api/entities/${encodeURIComponent(id)}`);
      main.querySelector("h1").textContent = e.name || e.id;
      const f = (k, v) => [h("dt", {}, k), h("dd", {}, v ?? "—")];
      main.append(h("section", { class: "card" }, h("h2", {}, "Production"), h("dl", { class: "fields" },
        f("Id", h("span", { class: "mono" }, e.id)), f("Kind", e.kind),
        f("Live deploy", e.live ? link(`/ui/deploys/${e.live.deployId}`, e.live.deployId, "mono") : "none"),
        f("Live since", e.live ? fmtTime(e.live.since) : "—"),
        f("Pinned", e.pinned ? ["yes, by ", link(`/ui/deploys/${e.pinnedBy}`, e.pinnedBy, "mono")] : "no"),
        f("Production URL", e.productionUrl ? h("a", { href: e.productionUrl }, e.productionUrl) : "—"),
        f("Auto-deploy", e.autoDeploy === undefined ? "—" : e.autoDeploy ? "on" : "off"), f("Deploy policy", e.deployPolicy))));
    } catch (e) { if (e.status !== 401) problemBox(e, errBox); }
  } else {
    main.append(h("p", { class: "muted" }, "What is live and pinned needs GET /api/entities/{id}, which this server does not offer yet."));
  }
  const recent = h("tbody");
  main.append(h("section", { class: "card" }, h("h2", {}, "Recent deploys"), h("div", { class: "table-wrap" }, h("table", { class: "list" },
    h("thead", {}, h("tr", {}, ["Status", "Deploy", "App", "Trigger", "Target", "Created by", "Age", "Duration"].map((c, i) =>
      h("th", { scope: "col", class: [3, 4, 5, 7].includes(i) ? "hide-sm" : null }, c)))), recent))));
  try {
    const page = await api("GET", `/api/deploys?entity_id=${encodeURIComponent(id)}&limit=10`);
    recent.replaceChildren(...page.data.map((d) => deployRow(d, new Map())));
    if (!page.data.length) recent.append(h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No deploys yet.")));
  } catch (e) { if (e.status !== 401) problemBox(e, errBox); }
  return () => {};
}

async function webhooksView() {
  main.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Webhooks")));
  if (!has("get /api/webhooks")) { main.append(missing("Webhooks", "GET /api/webhooks")); return () => {}; }
  const errBox = h("div");
  const secretBox = h("div", { "aria-live": "polite" });
  const list = h("div", { id: "webhooks" });
  const form = h("form", { class: "card add-webhook", "aria-labelledby": "h-add" },
    h("h2", { id: "h-add" }, "Add a webhook"),
    h("div", { class: "field" }, h("label", { for: "wh-url" }, "Endpoint URL"), h("input", { id: "wh-url", name: "url", "data-param": "url", type: "url", required: true, placeholder: "https://example.com/hooks/deployd" })),
    h("div", { class: "field" }, h("label", { for: "wh-events" }, "Event types (comma-separated; empty for all)"), h("input", { id: "wh-events", name: "events", "data-param": "events", placeholder: "DeployCompleted, DeployFailed" })),
    h("div", { class: "field" }, h("label", { for: "wh-desc" }, "Description"), h("input", { id: "wh-desc", name: "description", "data-param": "description" })),
    h("div", { class: "form-error" }),
    h("button", { type: "submit", class: "primary" }, "Add webhook"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { url: form.elements.url.value.trim() };
    const evs = form.elements.events.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (evs.length) body.events = evs;
    if (form.elements.description.value.trim()) body.description = form.elements.description.value.trim();
    try {
      const w = await api("POST", "/api/webhooks", body);
      fieldErrors(form, { problem: {} });
      form.querySelector(".form-error").replaceChildren();
      form.reset();
      secretBox.replaceChildren(h("div", { class: "card secret", role: "status" }, h("h2", {}, "Signing secret for ", w.url),
        h("p", {}, "Copy it now: it is shown only this once."), h("code", { class: "mono", id: "secret" }, w.secret)));
      await load();
    } catch (e) { if (e.status !== 401) { const rest = fieldErrors(form, e); problemBox(e, form.querySelector(".form-error")); if (!rest.length && e.problem.errors) form.querySelector(".form-error ul")?.remove(); } }
  });
  main.append(errBox, secretBox, list, form);
  const deliveries = async (w, where) => {
    try {
      const page = await api("GET", `/api/webhooks/${w.id}/deliveries?limit=20`);
      where.replaceChildren(h("div", { class: "table-wrap" }, h("table", { class: "list" }, h("caption", { class: "sr-only" }, `Deliveries of ${w.url}`),
        h("thead", {}, h("tr", {}, ["Status", "Event", "Attempt", "Response", "Duration", "When", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, (page.data || []).map((x) => h("tr", {},
          h("td", {}, badge(x.status)), h("td", {}, x.type), h("td", { class: "num" }, x.attempt),
          h("td", { class: "wrap" }, x.responseStatus ?? x.error ?? "—"), h("td", { class: "num" }, x.durationMs != null ? `${x.durationMs} ms` : "—"),
          h("td", {}, ago(x.createdAt)),
          h("td", {}, h("button", { type: "button", class: "ghost small", onclick: async () => {
            try { await api("POST", `/api/webhooks/${w.id}/deliveries/${x.id}/retry`); await deliveries(w, where); } catch (e) { if (e.status !== 401) problemBox(e, where); }
          } }, "Retry"))))))));
      if (!(page.data || []).length) where.replaceChildren(h("p", { class: "muted" }, "No deliveries yet."));
    } catch (e) { if (e.status !== 401) problemBox(e, where); }
  };
  const load = async () => {
    try {
      const page = await api("GET", "/api/webhooks");
      const hooks = page.data || page;
      list.replaceChildren(...hooks.map((w) => {
        const where = h("div", { class: "deliveries" });
        return h("section", { class: "card webhook" },
          h("div", { class: "webhook-head" }, h("div", {}, h("h2", { class: "mono" }, w.url),
            h("p", { class: "muted small" }, w.description || "", " · ", w.events && w.events.length ? w.events.join(", ") : "all events",
              w.disabled ? h("span", { class: "badge s-failed" }, "disabled: ", w.disabledReason || "") : null)),
          h("div", { class: "actions" },
            h("button", { type: "button", class: "ghost", onclick: () => deliveries(w, where) }, "Deliveries"),
            h("button", { type: "button", class: "danger", onclick: () => confirmDialog({
              title: "Delete this webhook?", body: `${w.url} will receive no more events.`, action: "Delete", danger: true,
              run: async () => { await api("DELETE", `/api/webhooks/${w.id}`); await load(); } }) }, "Delete…"))), where);
      }));
      if (!hooks.length) list.replaceChildren(h("p", { class: "muted" }, "No webhooks yet."));
    } catch (e) { if (e.status !== 401) problemBox(e, errBox); }
  };
  await load();
  return () => {};
}

// ---------- routing ----------

function navigate(url, replace = false) {
  if (replace) history.replaceState(null, "", url); else history.pushState(null, "", url);
  render();
}

async function render(opts = {}) {
  stopView();
  stopView = () => {};
  if (!token()) { signIn(opts.signinError); return; }
  top.hidden = false;
  await loadCaps();
  const path = location.pathname.replace(/\/+$/, "");
  const q = new URLSearchParams(location.search);
  let m, section = "deploys";
  main.replaceChildren();
  let stop;
  if (path === "/ui" || path === "") { navigate("/ui/deploys", true); return; }
  else if (path === "/ui/deploys") { document.title = "Deploys · deployd"; stop = await deploysView(q); }
  else if ((m = path.match(/^\/ui\/deploys\/([^/]+)$/))) { document.title = `${m[1]} · deployd`; stop = await deployView(decodeURIComponent(m[1])); }
  else if (path === "/ui/apps") { section = "apps"; document.title = "Apps · deployd"; stop = await appsView(); }
  else if ((m = path.match(/^\/ui\/apps\/([^/]+)$/))) { section = "apps"; document.title = `${m[1]} · deployd`; stop = await appView(decodeURIComponent(m[1])); }
  else if (path === "/ui/webhooks") { section = "webhooks"; document.title = "Webhooks · deployd"; stop = await webhooksView(); }
  else { main.append(h("h1", {}, "Not found"), h("p", {}, link("/ui/deploys", "Go to deploys"))); }
  for (const a of top.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  stopView = stop || (() => {});
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[href]");
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui/")) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
  main.focus({ preventScroll: true });
});
window.addEventListener("popstate", () => render());
document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  caps = null;
  history.pushState(null, "", "/ui/");
  render();
});
render();
