// Cadenza web console: plain JavaScript, no framework, no build step.
// It talks to the REST API under /api/v1 and inserts every value as text (never as HTML).
"use strict";

(function () {
  const API = "/api/v1";
  const PAGE = 200;
  const CLOSING_EVENTS = new Set([
    "workflow_execution_completed", "workflow_execution_failed", "workflow_execution_timed_out",
    "workflow_execution_canceled", "workflow_execution_terminated",
    "workflow_execution_continued_as_new",
  ]);
  const FAILURE_EVENTS = new Set([
    "workflow_execution_failed", "workflow_execution_timed_out", "workflow_task_failed",
    "workflow_task_timed_out", "activity_task_failed", "activity_task_timed_out",
    "workflow_execution_terminated", "child_workflow_execution_failed",
  ]);

  const $ = (id) => document.getElementById(id);
  const state = { current: null, nextAfter: null, loadingList: false };

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function pad(n, width) { return String(n).padStart(width || 2, "0"); }

  function fmtTime(value) {
    if (value === null || value === undefined || value === "") return "";
    const d = typeof value === "number" ? new Date(value) : new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function fmtDuration(ms) {
    if (ms < 1000) return `${ms} ms`;
    const s = ms / 1000;
    if (s < 120) return `${s.toFixed(1)} s`;
    const m = s / 60;
    if (m < 120) return `${m.toFixed(1)} min`;
    return `${(m / 60).toFixed(1)} h`;
  }

  function statusBadge(status) {
    return el("span", { class: `status ${status}`, text: status });
  }

  function token() { return sessionStorage.getItem("cadenza.token") || ""; }
  function namespace() { return $("namespace").value.trim() || "default"; }

  function clearError() {
    if ($("banner").className === "banner") showBanner("");
  }

  function showBanner(message, kind) {
    const banner = $("banner");
    banner.textContent = message;
    banner.className = kind === "info" ? "banner info" : "banner";
    banner.hidden = !message;
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  async function api(method, path, params, body) {
    const url = new URL(API + path, window.location.origin);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
    }
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = { detail: text }; }
    if (!response.ok) {
      const error = new ApiError(response.status, data || {});
      if (response.status === 401) openTokenDialog(error.message);
      throw error;
    }
    return data;
  }

  function wfPath(workflowId, suffix) {
    return `/workflows/${encodeURIComponent(workflowId)}${suffix || ""}`;
  }

  // ------------------------------------------------------------------ list view

  async function loadList() {
    if (state.loadingList) return;
    state.loadingList = true;
    const filters = {
      namespace: namespace(),
      status: $("f-status").value,
      workflow_type: $("f-type").value.trim(),
      workflow_id: $("f-id").value.trim(),
      limit: $("f-limit").value,
    };
    sessionStorage.setItem("cadenza.filters", JSON.stringify(filters));
    try {
      const data = await api("GET", "/workflows", filters);
      renderList(data.workflows);
      clearError();
    } catch (error) {
      showBanner(`Could not list workflows: ${error.message}`);
    } finally {
      state.loadingList = false;
    }
  }

  function renderList(workflows) {
    const rows = $("wf-rows");
    rows.replaceChildren();
    for (const wf of workflows) {
      const href = wfHref(wf.workflow_id, wf.run_id);
      rows.append(el("tr", { class: "link", onclick: () => { window.location.hash = href; } },
        el("td", { class: "id" }, el("a", { href, text: wf.workflow_id })),
        el("td", { text: wf.workflow_type }),
        el("td", {}, statusBadge(wf.status)),
        el("td", { class: "mono", text: wf.task_queue }),
        el("td", { class: "time", text: fmtTime(wf.start_time_ms) }),
        el("td", { class: "time", text: fmtTime(wf.close_time_ms) }),
        el("td", { class: "num", text: wf.history_length }),
      ));
    }
    $("wf-empty").hidden = workflows.length > 0;
    $("list-count").textContent = `${workflows.length} shown`;
  }

  // ------------------------------------------------------------------ detail view

  async function loadDetail(workflowId, runId) {
    state.current = { workflowId, runId };
    $("d-title").textContent = workflowId;
    $("verify-result").hidden = true;
    try {
      const d = await api("GET", wfPath(workflowId), { namespace: namespace(), run_id: runId });
      state.current.runId = d.run_id;
      state.current.status = d.status;
      renderDescription(d);
      await Promise.all([loadHistory(true), loadOutcome(d)]);
      clearError();
    } catch (error) {
      showBanner(`Could not load ${workflowId}: ${error.message}`);
    }
  }

  function fact(list, name, value, raw) {
    list.append(el("dt", { text: name }), el("dd", {}, raw ? value : String(value ?? "")));
  }

  function renderDescription(d) {
    const status = $("d-status");
    status.className = `status ${d.status}`;
    status.textContent = d.status;
    const running = d.status === "running";
    for (const id of ["btn-signal", "btn-cancel", "btn-terminate"]) $(id).disabled = !running;

    const facts = $("d-facts");
    facts.replaceChildren();
    fact(facts, "Workflow type", d.workflow_type);
    fact(facts, "Run id", d.run_id);
    fact(facts, "Task queue", d.task_queue);
    fact(facts, "Namespace", d.namespace);
    fact(facts, "Started", fmtTime(d.start_time_ms));
    fact(facts, "Closed", d.close_time_ms ? fmtTime(d.close_time_ms) : "—");
    const end = d.close_time_ms || Date.now();
    fact(facts, running ? "Running for" : "Took", fmtDuration(Math.max(0, end - d.start_time_ms)));
    fact(facts, "Events", d.history_length);
    fact(facts, "Pending timers", d.pending_timers);
    fact(facts, "Pending children", d.pending_children);
    if (d.parent_workflow_id) fact(facts, "Parent", d.parent_workflow_id);
    fact(facts, "Last hash", `${(d.last_hash || "").slice(0, 24)}…`);
    if (d.memo && Object.keys(d.memo).length) fact(facts, "Memo", JSON.stringify(d.memo));

    const pending = $("d-pending");
    pending.replaceChildren();
    if (d.pending_activities && d.pending_activities.length) {
      const body = el("tbody");
      for (const a of d.pending_activities) {
        body.append(el("tr", {},
          el("td", { class: "mono", text: a.activity_id }),
          el("td", { text: a.activity_type }),
          el("td", { class: "num", text: a.scheduled_event_id }),
          el("td", { class: "num", text: a.attempt }),
          el("td", { text: a.state }),
          el("td", { class: "mono", text: a.last_heartbeat_details == null ? "" : JSON.stringify(a.last_heartbeat_details) }),
        ));
      }
      pending.append(
        el("h2", { text: "Pending activities" }),
        el("table", { class: "grid" },
          el("thead", {}, el("tr", {},
            el("th", { text: "Activity id" }), el("th", { text: "Type" }),
            el("th", { class: "num", text: "Scheduled event" }), el("th", { class: "num", text: "Attempt" }),
            el("th", { text: "State" }), el("th", { text: "Last heartbeat" }))),
          body),
      );
    }
    const exportLink = $("export-link");
    exportLink.dataset.workflowId = d.workflow_id;
    exportLink.dataset.runId = d.run_id;
  }

  async function loadOutcome(d) {
    const box = $("outcome");
    box.replaceChildren();
    box.hidden = true;
    if (d.status === "running") return;
    const r = await api("GET", wfPath(d.workflow_id, "/result"), { namespace: namespace(), run_id: d.run_id });
    box.className = `outcome ${r.status}`;
    if (r.status === "completed") {
      box.append(el("span", { class: "label", text: "Result" }),
        el("pre", { class: "json", text: JSON.stringify(r.result, null, 2) }));
    } else if (r.failure) {
      const f = r.failure;
      box.append(el("span", { class: "label", text: `${r.status[0].toUpperCase()}${r.status.slice(1).replace("_", " ")}` }),
        el("span", { text: `${f.type}: ${f.message}` }));
      if (f.cause) box.append(el("div", { class: "muted", text: `caused by ${f.cause.type}: ${f.cause.message}` }));
    } else if (r.close_event && r.close_event.attributes.new_run_id) {
      const next = r.close_event.attributes.new_run_id;
      box.append(el("span", { class: "label", text: "Continued as new" }),
        el("a", { href: `#/wf/${encodeURIComponent(d.workflow_id)}?run=${encodeURIComponent(next)}`, text: `run ${next}` }));
    }
    box.hidden = box.children.length === 0;
  }

  function preview(attributes) {
    const copy = Object.assign({}, attributes);
    delete copy.type;
    const text = JSON.stringify(copy);
    return text.length > 110 ? `${text.slice(0, 110)}…` : text;
  }

  function renderEvent(e) {
    const classes = [];
    if (CLOSING_EVENTS.has(e.event_type)) classes.push("closing");
    if (FAILURE_EVENTS.has(e.event_type)) classes.push("failure");
    const attrs = Object.assign({}, e.attributes);
    delete attrs.type;
    const details = el("details", {},
      el("summary", {}, el("span", { class: "preview", text: preview(e.attributes) })),
      el("pre", { class: "json", text: JSON.stringify(attrs, null, 2) }),
      el("div", { class: "muted mono", text: `hash ${e.hash}` }));
    return el("tr", { class: classes.join(" ") || null },
      el("td", { class: "num", text: e.event_id }),
      el("td", { class: "time", text: fmtTime(e.event_time) }),
      el("td", { class: "type", text: e.event_type }),
      el("td", {}, details));
  }

  async function loadHistory(reset) {
    const cur = state.current;
    if (!cur) return;
    if (reset) {
      $("h-rows").replaceChildren();
      state.nextAfter = 0;
    }
    const page = await api("GET", wfPath(cur.workflowId, "/history"), {
      namespace: namespace(), run_id: cur.runId, after: state.nextAfter, limit: PAGE,
    });
    const rows = $("h-rows");
    for (const e of page.events) rows.append(renderEvent(e));
    state.nextAfter = page.next_after;
    $("btn-more").hidden = page.next_after === null;
    $("h-count").textContent = `(${rows.children.length} shown)`;
  }

  async function verify() {
    const cur = state.current;
    const box = $("verify-result");
    box.hidden = false;
    box.className = "verify";
    box.textContent = "Verifying…";
    try {
      const v = await api("GET", wfPath(cur.workflowId, "/verify"), { namespace: namespace(), run_id: cur.runId });
      if (v.ok) {
        box.className = "verify ok";
        box.textContent = `✔ Hash chain verified: ${v.events_checked} events, from the genesis hash to the stored last hash.`;
      } else {
        box.className = "verify bad";
        box.textContent = `✘ Hash chain broken at event ${v.first_bad_event_id}: ${v.reason} (${v.events_checked} events checked).`;
      }
    } catch (error) {
      box.className = "verify bad";
      box.textContent = `Could not verify: ${error.message}`;
    }
  }

  async function exportHistory(event) {
    event.preventDefault();
    const link = $("export-link");
    const url = new URL(API + wfPath(link.dataset.workflowId, "/history"), window.location.origin);
    url.searchParams.set("namespace", namespace());
    url.searchParams.set("run_id", link.dataset.runId);
    url.searchParams.set("format", "jsonl");
    const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
    const response = await fetch(url, { headers });
    if (!response.ok) { showBanner(`Export failed: HTTP ${response.status}`); return; }
    const blob = await response.blob();
    const a = el("a", { href: URL.createObjectURL(blob), download: `${link.dataset.workflowId}-${link.dataset.runId}.jsonl` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  // ------------------------------------------------------------------ actions

  function openSignalDialog() {
    $("sig-error").hidden = true;
    $("dlg-signal").showModal();
  }

  async function sendSignal(event) {
    event.preventDefault();
    if (event.submitter && event.submitter.value === "cancel") { $("dlg-signal").close(); return; }
    const name = $("sig-name").value.trim();
    let args;
    try {
      args = JSON.parse($("sig-args").value || "[]");
      if (!Array.isArray(args)) throw new Error("arguments must be a JSON array");
    } catch (error) {
      $("sig-error").textContent = `Arguments: ${error.message}`;
      $("sig-error").hidden = false;
      return;
    }
    const cur = state.current;
    try {
      await api("POST", wfPath(cur.workflowId, "/signal"), { namespace: namespace(), run_id: cur.runId },
        { signal_name: name, input: args, request_id: requestId(), identity: "console" });
      $("dlg-signal").close();
      showBanner(`Signal ${name} delivered.`, "info");
      await loadDetail(cur.workflowId, cur.runId);
    } catch (error) {
      $("sig-error").textContent = error.message;
      $("sig-error").hidden = false;
    }
  }

  let confirmAction = null;

  function openConfirm(kind) {
    const cur = state.current;
    const terminate = kind === "terminate";
    $("cf-title").textContent = terminate ? "Terminate this workflow?" : "Cancel this workflow?";
    $("cf-text").textContent = terminate
      ? `Run ${cur.runId} of ${cur.workflowId} closes at once; its code does not run again and no clean-up happens.`
      : `Run ${cur.runId} of ${cur.workflowId} is asked to cancel; its code decides how to wind down.`;
    $("cf-check-label").textContent = terminate
      ? "I understand that termination cannot be undone"
      : "I want to request cancellation";
    $("cf-ok").textContent = terminate ? "Terminate" : "Request cancel";
    $("cf-ok").className = terminate ? "danger" : "warn";
    $("cf-check").checked = false;
    $("cf-ok").disabled = true;
    $("cf-reason").value = "";
    $("cf-error").hidden = true;
    confirmAction = kind;
    $("dlg-confirm").showModal();
  }

  async function confirmSubmit(event) {
    event.preventDefault();
    if (!event.submitter || event.submitter.value !== "ok") { $("dlg-confirm").close(); return; }
    const cur = state.current;
    const reason = $("cf-reason").value.trim();
    const body = confirmAction === "terminate"
      ? { reason, identity: "console" }
      : { reason, request_id: requestId(), identity: "console" };
    try {
      await api("POST", wfPath(cur.workflowId, `/${confirmAction}`), { namespace: namespace(), run_id: cur.runId }, body);
      $("dlg-confirm").close();
      showBanner(confirmAction === "terminate" ? "Workflow terminated." : "Cancellation requested.", "info");
      await loadDetail(cur.workflowId, cur.runId);
    } catch (error) {
      $("cf-error").textContent = error.message;
      $("cf-error").hidden = false;
    }
  }

  function openTokenDialog(message) {
    const dialog = $("dlg-token");
    if (dialog.open) return;
    $("tok-value").value = token();
    if (message) showBanner(message);
    dialog.showModal();
  }

  function tokenSubmit(event) {
    event.preventDefault();
    const value = event.submitter ? event.submitter.value : "ok";
    if (value === "clear") sessionStorage.removeItem("cadenza.token");
    else sessionStorage.setItem("cadenza.token", $("tok-value").value.trim());
    $("dlg-token").close();
    route();
  }

  async function health() {
    const badge = $("health");
    try {
      const response = await fetch("/healthz");
      const h = await response.json();
      badge.textContent = h.status === "ok" ? `engine ok · ${h.shards_owned}/${h.shards_total} shards` : `engine ${h.status}`;
      badge.className = h.status === "ok" ? "health ok" : "health bad";
    } catch (_) {
      badge.textContent = "server unreachable";
      badge.className = "health bad";
    }
  }

  // ------------------------------------------------------------------ routing

  // Views other scripts add (console-jobs.js): {pattern, view, nav, enter(match)}.
  const extraRoutes = [];

  function addRoute(pattern, view, nav, enter) {
    extraRoutes.push({ pattern, view, nav, enter });
  }

  function showView(view, nav) {
    for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== view;
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("active", link.dataset.nav === nav);
      if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  function route() {
    showBanner("");
    const hash = window.location.hash || "#/";
    for (const extra of extraRoutes) {
      const found = hash.match(extra.pattern);
      if (!found) continue;
      state.current = null;
      showView(extra.view, extra.nav);
      extra.enter(found);
      return;
    }
    const match = hash.match(/^#\/wf\/([^?]+)(?:\?run=(.*))?$/);
    if (match) {
      showView("detail-view", "workflows");
      loadDetail(decodeURIComponent(match[1]), match[2] ? decodeURIComponent(match[2]) : null);
    } else {
      showView("list-view", "workflows");
      state.current = null;
      loadList();
    }
  }

  function restoreFilters() {
    try {
      const saved = JSON.parse(sessionStorage.getItem("cadenza.filters") || "{}");
      if (saved.namespace) $("namespace").value = saved.namespace;
      if (saved.status !== undefined) $("f-status").value = saved.status;
      if (saved.workflow_type) $("f-type").value = saved.workflow_type;
      if (saved.workflow_id) $("f-id").value = saved.workflow_id;
      if (saved.limit) $("f-limit").value = saved.limit;
    } catch (_) { /* ignore a corrupt entry */ }
  }

  function requestId() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function wfHref(workflowId, runId) {
    const run = runId ? `?run=${encodeURIComponent(runId)}` : "";
    return `#/wf/${encodeURIComponent(workflowId)}${run}`;
  }

  // What console-jobs.js (and any later page) shares: the same API client, token handling,
  // banner and helpers, so every view behaves alike.
  window.CadenzaConsole = Object.freeze({
    $, el, api, ApiError, fmtTime, fmtDuration, statusBadge, namespace, showBanner, clearError,
    requestId, wfHref, addRoute,
  });

  document.addEventListener("DOMContentLoaded", () => {
    restoreFilters();
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); loadList(); });
    $("f-status").addEventListener("change", loadList);
    $("namespace").addEventListener("change", route);
    $("btn-refresh").addEventListener("click", () => loadDetail(state.current.workflowId, state.current.runId));
    $("btn-verify").addEventListener("click", verify);
    $("btn-signal").addEventListener("click", openSignalDialog);
    $("btn-cancel").addEventListener("click", () => openConfirm("cancel"));
    $("btn-terminate").addEventListener("click", () => openConfirm("terminate"));
    $("btn-more").addEventListener("click", () => loadHistory(false));
    $("btn-expand").addEventListener("click", () => { for (const d of document.querySelectorAll("#h-rows details")) d.open = true; });
    $("btn-collapse").addEventListener("click", () => { for (const d of document.querySelectorAll("#h-rows details")) d.open = false; });
    $("export-link").addEventListener("click", exportHistory);
    $("form-signal").addEventListener("submit", sendSignal);
    $("form-confirm").addEventListener("submit", confirmSubmit);
    $("cf-check").addEventListener("change", () => { $("cf-ok").disabled = !$("cf-check").checked; });
    $("form-token").addEventListener("submit", tokenSubmit);
    $("token-button").addEventListener("click", () => openTokenDialog(""));
    window.addEventListener("hashchange", route);
    health();
    setInterval(health, 15000);
    route();
  });
})();
