// Cadenza web console, Jobs pages: the applied declarative jobs (#/jobs) and one job (#/jobs/NAME).
// Plain JavaScript, loaded after console.js and built on its helpers (window.CadenzaConsole):
// the same API client, token dialog and banner. Every value is inserted as text, never as HTML.
"use strict";

(function () {
  // The job interpreter's workflow type (engine/_job_contract.py JOB_WORKFLOW_TYPE). A job's
  // runs are named "<job>/manual/…", "<job>/webhook/…" or "<schedule id>/…" where the schedule
  // id is "<job>/<id>" (engine/_jobs.py run_job, engine/_job_model.py schedule_id); job names
  // cannot contain "/", so the prefix "<job>/" finds exactly that job's runs.
  const JOB_WORKFLOW_TYPE = "cadenza.job";
  const RUNS_SHOWN = 25;
  const RUNS_PAGE = 200;
  const RUNS_MAX_PAGES = 5;
  const SCHEDULES_PAGE = 1000;
  const SCHEDULES_MAX_PAGES = 10;
  const FIRE_TIMES_SHOWN = 3;

  // ------------------------------------------------------------------ pure helpers (no DOM)

  /** Whether a job summary matches the filter text: every word must be found in the name or
   * in a tag (case-insensitive); "tag:x" asks for the exact tag x. */
  function jobMatches(job, filter) {
    const words = String(filter || "").trim().toLowerCase().split(/\s+/).filter(Boolean);
    const tags = (job.tags || []).map((t) => String(t).toLowerCase());
    const name = String(job.name).toLowerCase();
    return words.every((word) => {
      if (word.startsWith("tag:")) return tags.includes(word.slice(4));
      return name.includes(word) || tags.some((t) => t.includes(word));
    });
  }

  /** The run-now input: empty text means no input (null); anything else must be JSON. */
  function parseRunInput(text) {
    const trimmed = String(text || "").trim();
    if (!trimmed) return { ok: true, value: null };
    try {
      return { ok: true, value: JSON.parse(trimmed) };
    } catch (error) {
      return { ok: false, error: `Input is not valid JSON: ${error.message}` };
    }
  }

  function isRunOf(jobName, workflowId) {
    return String(workflowId).startsWith(`${jobName}/`);
  }

  /** How a run of the job was started, read from its workflow id. */
  function runTrigger(jobName, workflowId) {
    if (!isRunOf(jobName, workflowId)) return "";
    const segment = String(workflowId).slice(jobName.length + 1).split("/")[0];
    if (segment === "manual" || segment === "webhook") return segment;
    return `schedule ${segment}`;
  }

  /** The earliest coming fire among a job's schedules (listing entries), and their state. */
  function nextFire(scheduleSummaries) {
    let earliest = null;
    let active = 0;
    for (const s of scheduleSummaries) {
      if (s.paused) continue;
      active += 1;
      if (s.next_fire_time && (earliest === null || Date.parse(s.next_fire_time) < Date.parse(earliest))) {
        earliest = s.next_fire_time;
      }
    }
    return { time: earliest, active, paused: scheduleSummaries.length - active };
  }

  /** A for_each as one line: its items (a template or a count), concurrency and item name. */
  function forEachText(forEach) {
    if (!forEach) return "";
    const items = Array.isArray(forEach.items) ? `${forEach.items.length} items` : String(forEach.items);
    const parts = [items];
    if ((forEach.concurrency || 1) > 1) parts.push(`concurrency ${forEach.concurrency}`);
    if (forEach.as && forEach.as !== "item") parts.push(`as ${forEach.as}`);
    return parts.join(" · ");
  }

  function onFailureText(onFailure) {
    if (!onFailure) return "fail";
    if (typeof onFailure === "string") return onFailure;
    if (onFailure.compensate) return `compensate: ${onFailure.compensate}`;
    return JSON.stringify(onFailure);
  }

  /** A duration as the API writes it (ISO-8601 "PT10S", or seconds) in short form. */
  function durationText(value) {
    if (value === null || value === undefined || value === "") return "";
    if (typeof value === "number") return `${value} s`;
    const m = String(value).match(/^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/);
    if (!m) return String(value);
    const total = (Number(m[1] || 0) * 86400) + (Number(m[2] || 0) * 3600) + (Number(m[3] || 0) * 60) + Number(m[4] || 0);
    const units = [["d", 86400], ["h", 3600], ["m", 60]];
    let rest = total;
    let out = "";
    for (const [unit, size] of units) {
      if (rest >= size) { out += `${Math.floor(rest / size)}${unit}`; rest %= size; }
    }
    if (rest || !out) out += `${Math.round(rest * 1000) / 1000}s`;
    return out;
  }

  /** Keep the runs of one job, newest first, without duplicates (pages may overlap). */
  function mergeRuns(jobName, known, page) {
    const seen = new Set(known.map((r) => r.run_id));
    const merged = known.slice();
    for (const wf of page) {
      if (seen.has(wf.run_id) || !isRunOf(jobName, wf.workflow_id)) continue;
      seen.add(wf.run_id);
      merged.push(wf);
    }
    merged.sort((a, b) => b.start_time_ms - a.start_time_ms);
    return merged;
  }

  const helpers = Object.freeze({
    JOB_WORKFLOW_TYPE, jobMatches, parseRunInput, isRunOf, runTrigger, nextFire, forEachText,
    onFailureText, durationText, mergeRuns,
  });
  window.CadenzaJobs = helpers;

  const C = window.CadenzaConsole;
  if (!C) return; // loaded without the console (the script's own tests): helpers only

  const { $, el, api, fmtTime, fmtDuration, statusBadge, namespace, showBanner, clearError } = C;

  // Every load bumps the generation; a slower, older load does not draw over a newer view.
  let generation = 0;
  const jobState = { jobs: [], schedules: new Map(), current: null, pauseTarget: null, runRequestId: "" };

  function jobPath(name, suffix) {
    return `/jobs/${encodeURIComponent(name)}${suffix || ""}`;
  }

  function schedulePath(scheduleId, suffix) {
    return `/schedules/${encodeURIComponent(scheduleId)}${suffix || ""}`;
  }

  function jobHref(name) {
    return `#/jobs/${encodeURIComponent(name)}`;
  }

  function tagList(tags) {
    return el("span", { class: "tags" }, ...(tags || []).map((t) => el("span", { class: "tag", text: t })));
  }

  // ------------------------------------------------------------------ jobs list

  async function allSchedules() {
    const found = new Map();
    let after = "";
    for (let page = 0; page < SCHEDULES_MAX_PAGES; page += 1) {
      const data = await api("GET", "/schedules", { namespace: namespace(), limit: SCHEDULES_PAGE, after });
      for (const s of data.schedules) found.set(s.schedule_id, s);
      if (!data.next_after) break;
      after = data.next_after;
    }
    return found;
  }

  async function loadJobs() {
    const mine = ++generation;
    $("jobs-count").textContent = "loading…";
    try {
      const [listed, schedules] = await Promise.all([
        api("GET", "/jobs", { namespace: namespace() }),
        allSchedules().catch((error) => {
          showBanner(`Could not list schedules: ${error.message}`);
          return null;
        }),
      ]);
      if (mine !== generation) return;
      jobState.jobs = listed.jobs;
      jobState.schedules = schedules;
      renderJobs();
      if (schedules) clearError();
    } catch (error) {
      if (mine !== generation) return;
      $("jobs-count").textContent = "";
      showBanner(`Could not list jobs: ${error.message}`);
    }
  }

  function nextFireCell(job) {
    if (!job.schedules.length) return el("td", { class: "muted", text: "—" });
    if (!jobState.schedules) return el("td", { class: "muted", text: "?" });
    const summaries = job.schedules.map((id) => jobState.schedules.get(id)).filter(Boolean);
    const next = nextFire(summaries);
    if (next.time) return el("td", { class: "time", text: fmtTime(next.time) });
    if (summaries.length && next.active === 0) return el("td", { class: "muted", text: "paused" });
    return el("td", { class: "muted", text: "—" });
  }

  function renderJobs() {
    const filter = $("jf-text").value;
    sessionStorage.setItem("cadenza.jobFilter", filter);
    const shown = jobState.jobs.filter((job) => jobMatches(job, filter));
    const rows = $("jobs-rows");
    rows.replaceChildren();
    for (const job of shown) {
      const href = jobHref(job.name);
      rows.append(el("tr", { class: "link", onclick: () => { window.location.hash = href; } },
        el("td", { class: "id" }, el("a", { href, text: job.name })),
        el("td", { text: job.description }),
        el("td", { text: job.owner }),
        el("td", {}, tagList(job.tags)),
        el("td", { class: "num", text: job.version }),
        el("td", { text: job.applied_by }),
        el("td", { class: "time", text: fmtTime(job.applied_at) }),
        el("td", { class: "num", text: job.schedules.length }),
        nextFireCell(job),
      ));
    }
    $("jobs-empty").textContent = jobState.jobs.length ? "No jobs match the filter." : "No jobs are applied in this namespace.";
    $("jobs-empty").hidden = shown.length > 0;
    $("jobs-count").textContent = shown.length === jobState.jobs.length
      ? `${jobState.jobs.length} jobs`
      : `${shown.length} of ${jobState.jobs.length} jobs`;
  }

  // ------------------------------------------------------------------ one job

  function fact(list, name, value) {
    list.append(el("dt", { text: name }), el("dd", {}, value instanceof Node ? value : String(value ?? "")));
  }

  async function loadJob(name) {
    const mine = ++generation;
    jobState.current = { name, job: null };
    $("j-title").textContent = name;
    $("j-version").textContent = "";
    $("j-run").disabled = true;
    for (const id of ["j-facts", "j-steps", "j-variables", "j-schedules", "j-runs", "j-versions"]) $(id).replaceChildren();
    let described;
    try {
      described = await api("GET", jobPath(name), { namespace: namespace() });
    } catch (error) {
      if (mine === generation) showBanner(`Could not load job ${name}: ${error.message}`);
      return;
    }
    if (mine !== generation) return;
    jobState.current.job = described.job;
    renderJob(described);
    clearError();
    await Promise.all([loadSchedules(mine), loadRuns(mine)]);
  }

  function renderJob(described) {
    const { job, definition, versions } = described;
    $("j-version").textContent = `version ${job.version}`;
    const manual = job.triggers.includes("manual");
    $("j-run").disabled = !manual;
    $("j-run").title = manual ? "Start a run of the current version now" : "This job does not allow manual runs (triggers)";

    const facts = $("j-facts");
    fact(facts, "Description", job.description || "—");
    fact(facts, "Owner", job.owner || "—");
    fact(facts, "Tags", job.tags.length ? tagList(job.tags) : "—");
    fact(facts, "Triggers", job.triggers.join(", "));
    fact(facts, "Applied by", job.applied_by);
    fact(facts, "Applied at", fmtTime(job.applied_at));
    fact(facts, "Execution timeout", durationText(definition.execution_timeout) || "none");
    fact(facts, "Content hash", `${job.content_hash.slice(0, 24)}…`);

    const steps = definition.steps || [];
    $("j-steps-count").textContent = `(${steps.length})`;
    const body = $("j-steps");
    for (const step of steps) {
      const config = step.config && Object.keys(step.config).length
        ? el("details", {}, el("summary", { text: "config" }),
          el("pre", { class: "json", text: JSON.stringify(step.config, null, 2) }))
        : el("span", { class: "muted", text: "—" });
      body.append(el("tr", {},
        el("td", { class: "mono", text: step.id }),
        el("td", { class: "mono", text: step.type }),
        el("td", { class: "mono", text: (step.depends_on || []).join(", ") }),
        el("td", { class: "mono", text: step.when || "" }),
        el("td", { class: "mono", text: forEachText(step.for_each) }),
        el("td", { text: onFailureText(step.on_failure) }),
        el("td", { text: durationText(step.timeout) }),
        el("td", {}, config),
      ));
    }

    const variables = Object.entries(definition.variables || {});
    if (variables.length) {
      const rows = el("tbody");
      for (const [varName, raw] of variables) {
        const variable = raw && typeof raw === "object" ? raw : { value: raw };
        // Secret values never reach the page (the API removes them); show only that it is one.
        let value;
        if (variable.secret) value = el("span", { class: "muted", text: "secret" });
        else if (variable.value === undefined || variable.value === null) value = el("span", { class: "muted", text: "—" });
        else value = JSON.stringify(variable.value);
        rows.append(el("tr", {},
          el("td", { class: "mono", text: varName }),
          el("td", { class: "mono" }, value),
          el("td", { text: variable.description || "" })));
      }
      $("j-variables").append(
        el("h2", { text: "Variables" }),
        el("table", { class: "grid" },
          el("thead", {}, el("tr", {},
            el("th", { text: "Name" }), el("th", { text: "Value" }), el("th", { text: "Description" }))),
          rows),
      );
    }

    const versionRows = $("j-versions");
    for (const v of versions.slice().reverse()) {
      versionRows.append(el("tr", {},
        el("td", { class: "num", text: v.version }),
        el("td", { text: v.change }),
        el("td", { text: v.applied_by }),
        el("td", { class: "time", text: fmtTime(v.applied_at) }),
        el("td", { class: "mono", text: `${v.content_hash.slice(0, 24)}…` }),
      ));
    }
  }

  async function loadSchedules(mine) {
    const job = jobState.current.job;
    const body = $("j-schedules");
    $("j-schedules-empty").hidden = job.schedules.length > 0;
    const results = await Promise.allSettled(
      job.schedules.map((id) => api("GET", schedulePath(id), { namespace: namespace() })));
    if (mine !== generation) return;
    body.replaceChildren();
    job.schedules.forEach((id, index) => {
      const result = results[index];
      if (result.status === "rejected") {
        body.append(el("tr", {}, el("td", { class: "mono", text: id }),
          el("td", { colspan: 6, class: "error", text: `Could not load: ${result.reason.message}` })));
        return;
      }
      body.append(scheduleRow(result.value));
    });
  }

  function scheduleRow(s) {
    const state = el("td", {},
      el("span", { class: s.paused ? "state paused" : "state active", text: s.paused ? "paused" : "active" }));
    if (s.note) state.append(el("div", { class: "muted", text: s.note }));
    const times = s.next_fire_times || [];
    const fires = el("td", { class: "time" });
    if (!times.length) fires.append(el("span", { class: "muted", text: "none" }));
    for (const t of times.slice(0, FIRE_TIMES_SHOWN)) fires.append(el("div", { text: fmtTime(t.actual_time) }));
    if (times.length > FIRE_TIMES_SHOWN) {
      const more = el("details", {}, el("summary", { text: `${times.length - FIRE_TIMES_SHOWN} more` }));
      for (const t of times.slice(FIRE_TIMES_SHOWN)) more.append(el("div", { text: fmtTime(t.actual_time) }));
      fires.append(more);
    }
    const last = (s.recent_runs || [])[0];
    const lastCell = el("td", {});
    if (last) {
      lastCell.append(statusBadge(last.status), " ",
        el("a", { href: C.wfHref(last.workflow_id, last.run_id), text: fmtTime(last.actual_time) }));
    } else {
      lastCell.append(el("span", { class: "muted", text: "—" }));
    }
    const toggle = el("button", {
      type: "button",
      class: s.paused ? "" : "warn",
      text: s.paused ? "Unpause…" : "Pause…",
      onclick: () => openPauseDialog(s),
    });
    return el("tr", {},
      el("td", { class: "mono", text: s.schedule_id }),
      el("td", { text: (s.spec && s.spec.kind) || "" }),
      state,
      fires,
      el("td", { class: "num", text: `${s.run_count}${s.running.length ? ` (${s.running.length} running)` : ""}` }),
      lastCell,
      el("td", {}, toggle),
    );
  }

  async function loadRuns(mine) {
    const name = jobState.current.job.name;
    const rows = $("j-runs");
    let runs = [];
    let before = null;
    let scanned = 0;
    try {
      for (let page = 0; page < RUNS_MAX_PAGES && runs.length < RUNS_SHOWN; page += 1) {
        const data = await api("GET", "/workflows", {
          namespace: namespace(),
          workflow_type: JOB_WORKFLOW_TYPE,
          limit: RUNS_PAGE,
          // Exclusive bound; one ms past the last start so that runs started in the same ms
          // are listed again (and dropped as duplicates) rather than skipped.
          started_before: before === null ? "" : new Date(before + 1).toISOString(),
        });
        if (mine !== generation) return;
        scanned += data.workflows.length;
        runs = mergeRuns(name, runs, data.workflows);
        if (data.workflows.length < RUNS_PAGE) break;
        const oldest = data.workflows[data.workflows.length - 1].start_time_ms;
        if (before !== null && oldest + 1 >= before) break; // one ms holds a whole page: stop
        before = oldest;
      }
    } catch (error) {
      if (mine !== generation) return;
      showBanner(`Could not list the runs of ${name}: ${error.message}`);
      return;
    }
    rows.replaceChildren();
    const shown = runs.slice(0, RUNS_SHOWN);
    for (const wf of shown) {
      const href = C.wfHref(wf.workflow_id, wf.run_id);
      const end = wf.close_time_ms || Date.now();
      rows.append(el("tr", { class: "link", onclick: () => { window.location.hash = href; } },
        el("td", { class: "id" }, el("a", { href, text: wf.workflow_id })),
        el("td", { text: runTrigger(name, wf.workflow_id) }),
        el("td", {}, statusBadge(wf.status)),
        el("td", { class: "time", text: fmtTime(wf.start_time_ms) }),
        el("td", { class: "time", text: wf.close_time_ms ? fmtTime(wf.close_time_ms) : "" }),
        el("td", { class: "num", text: fmtDuration(Math.max(0, end - wf.start_time_ms)) }),
      ));
    }
    $("j-runs-empty").hidden = shown.length > 0;
    $("j-runs-count").textContent = `(latest ${shown.length}, among the newest ${scanned} job runs)`;
  }

  // ------------------------------------------------------------------ run now

  function openRunDialog() {
    if (!jobState.current || !jobState.current.job) return;
    $("run-title").textContent = `Run ${jobState.current.job.name} now`;
    $("run-error").hidden = true;
    // One request id per opened dialog: a retry after a lost answer finds the same run.
    jobState.runRequestId = C.requestId();
    $("dlg-run").showModal();
  }

  async function runSubmit(event) {
    event.preventDefault();
    if (!event.submitter || event.submitter.value !== "ok") { $("dlg-run").close(); return; }
    const parsed = parseRunInput($("run-input").value);
    if (!parsed.ok) {
      $("run-error").textContent = parsed.error;
      $("run-error").hidden = false;
      return;
    }
    const name = jobState.current.job.name;
    $("run-send").disabled = true;
    try {
      const started = await api("POST", jobPath(name, "/runs"), { namespace: namespace() },
        { input: parsed.value, identity: "console", request_id: jobState.runRequestId });
      $("dlg-run").close();
      showBanner(started.started
        ? `Run ${started.workflow_id} started.`
        : `Run ${started.workflow_id} was already started by this request.`, "info");
      await loadRuns(generation);
    } catch (error) {
      $("run-error").textContent = error.message;
      $("run-error").hidden = false;
    } finally {
      $("run-send").disabled = false;
    }
  }

  // ------------------------------------------------------------------ pause / unpause

  function openPauseDialog(schedule) {
    const pausing = !schedule.paused;
    jobState.pauseTarget = { scheduleId: schedule.schedule_id, action: pausing ? "pause" : "unpause" };
    $("pause-title").textContent = pausing ? `Pause ${schedule.schedule_id}?` : `Unpause ${schedule.schedule_id}?`;
    $("pause-text").textContent = pausing
      ? "No new runs start from this schedule until it is unpaused; running runs go on."
      : "The schedule fires again from its next fire time.";
    $("pause-ok").textContent = pausing ? "Pause" : "Unpause";
    $("pause-ok").className = pausing ? "warn" : "";
    $("pause-note").value = "";
    $("pause-error").hidden = true;
    $("dlg-pause").showModal();
  }

  async function pauseSubmit(event) {
    event.preventDefault();
    if (!event.submitter || event.submitter.value !== "ok") { $("dlg-pause").close(); return; }
    const target = jobState.pauseTarget;
    try {
      await api("POST", schedulePath(target.scheduleId, `/${target.action}`), { namespace: namespace() },
        { note: $("pause-note").value.trim(), identity: "console" });
      $("dlg-pause").close();
      showBanner(`Schedule ${target.scheduleId} ${target.action === "pause" ? "paused" : "unpaused"}.`, "info");
      await loadSchedules(generation);
    } catch (error) {
      $("pause-error").textContent = error.message;
      $("pause-error").hidden = false;
    }
  }

  // ------------------------------------------------------------------ wiring

  C.addRoute(/^#\/jobs\/?$/, "jobs-view", "jobs", () => { loadJobs(); });
  C.addRoute(/^#\/jobs\/([^/?]+)\/?$/, "job-view", "jobs", (match) => { loadJob(decodeURIComponent(match[1])); });

  function wire() {
    $("jf-text").value = sessionStorage.getItem("cadenza.jobFilter") || "";
    $("jobs-filters").addEventListener("submit", (e) => { e.preventDefault(); loadJobs(); });
    $("jf-text").addEventListener("input", renderJobs);
    $("j-refresh").addEventListener("click", () => { if (jobState.current) loadJob(jobState.current.name); });
    $("j-run").addEventListener("click", openRunDialog);
    $("form-run").addEventListener("submit", runSubmit);
    $("form-pause").addEventListener("submit", pauseSubmit);
  }

  // A deferred script runs once the page is parsed, before console.js routes (DOMContentLoaded).
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
})();
