"""The console's Jobs pages (``frontend/static/console-jobs.js``) against a real server.

No browser here, so: the page and its scripts are served as the console's files are; every
element the scripts look up exists in ``index.html``; the API routes the page calls answer the
fields it reads (a rename in the API breaks these tests); and, with ``node``, the real scripts
run on a minimal fake DOM against a served app with applied jobs: list, filter, detail,
pause with a note, run now with invalid and valid JSON input, token reuse.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from cadenza.engine import Engine, Settings
from cadenza.frontend._console import STATIC_DIR

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")

TOKEN = "jobs-console-token"
SECRET_VALUE = "hunter2-never-shown"
JOB = "nightly-report"
OTHER = "nightly-report-eu"  # its runs share the prefix "nightly-report" but not "nightly-report/"
JOB_WORKFLOW_TYPE = "cadenza.job"


def _job(description: str, token: str) -> dict[str, Any]:
    return {
        "name": JOB,
        "description": description,
        "owner": "payments-team",
        "tags": ["finance", "nightly"],
        "triggers": ["scheduled", "manual"],
        "variables": {"DB_PASS": {"value": token, "secret": True}, "REGION": "south"},
        # No fire during the test: both start in 2090 (their next fire times are still known).
        "schedules": [
            {"id": "nightly", "kind": "cron", "cron": "0 30 1 * * ?", "start": "2090-01-01"},
            {"kind": "fixed_rate", "every": "24h", "start": "2090-01-01"},
        ],
        "steps": [
            {
                "id": "fetch",
                "type": "http",
                "timeout": "10s",
                "config": {"url": "http://127.0.0.1:9/a"},
            },
            {
                "id": "post",
                "type": "http",
                "depends_on": ["fetch"],
                "when": "steps.fetch.status == 'completed'",
                "for_each": {
                    "items": "{{ steps.fetch.output.rows }}",
                    "concurrency": 2,
                    "as": "row",
                },
                "on_failure": {"compensate": "undo"},
                "config": {"url": "http://127.0.0.1:9/{{ row.id }}"},
            },
            {"id": "undo", "type": "http", "config": {"url": "http://127.0.0.1:9/undo"}},
        ],
    }


OTHER_JOB = {
    "name": OTHER,
    "tags": ["adhoc"],
    "triggers": ["webhook"],
    "steps": [{"id": "ping", "type": "http", "config": {"url": "http://127.0.0.1:9/"}}],
}


@pytest.fixture
async def engine(tmp_path) -> AsyncIterator[Engine]:
    """The conftest's engine with a secret keyring (the job has a secret variable)."""
    key = base64.b64encode(os.urandom(32)).decode()
    eng = Engine(
        Settings(database_url=f"sqlite:///{tmp_path}/t.db", shard_count=2, secret_keys=f"k1:{key}")
    )
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()


@dataclasses.dataclass
class Console:
    """A served app with the two jobs applied (twice for ``JOB``: version 2)."""

    url: str
    http: aiohttp.ClientSession
    headers: dict[str, str]

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        kwargs: dict[str, Any] = {"params": params, "headers": self.headers}
        if body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.url + "/api/v1" + path, **kwargs) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None), text


@pytest.fixture
async def console(serve, http) -> Console:
    """The app served with a token, ``JOB`` applied at versions 1 and 2, ``OTHER`` applied."""
    url = await serve(worker_token=TOKEN)
    app = Console(url, http, {"Authorization": f"Bearer {TOKEN}"})
    status, token, _ = await app.call(
        "POST", "/secrets/encrypt", {"name": "DB_PASS", "value": SECRET_VALUE, "job": JOB}
    )
    assert status == 200
    for description in ("Match the settlement file", "Match the settlement file (v2)"):
        status, applied, text = await app.call(
            "POST",
            "/jobs/apply",
            {"jobs": [_job(description, token["token"]), OTHER_JOB], "identity": "alice"},
        )
        assert status == 200 and not applied["schedule_errors"], text
    return app


# --------------------------------------------------------------------------- files


async def test_page_serves_the_jobs_script_and_markup(http, base_url) -> None:
    async with http.get(base_url + "/") as response:
        assert response.status == 200 and response.content_type == "text/html"
        assert response.headers["Cache-Control"] == "no-cache"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        html = await response.text()
    scripts = re.findall(r'<script src="([^"]+)" defer></script>', html)
    # The jobs script runs after console.js, whose helpers it uses.
    assert scripts == ["/static/console.js", "/static/console-jobs.js"]
    assert "<script>" not in html and " style=" not in html  # the CSP allows neither
    assert 'href="#/jobs"' in html and 'href="#/"' in html
    for name in ("console.js", "console-jobs.js"):
        async with http.get(f"{base_url}/static/{name}") as response:
            assert response.status == 200
            assert response.content_type == "application/javascript"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "ETag" in response.headers and "Last-Modified" in response.headers
            script = await response.text()
        assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    async with http.get(base_url + "/static/console.css") as response:
        assert response.status == 200 and response.content_type == "text/css"
        assert ".topbar .nav" in await response.text()


def test_every_element_the_jobs_script_uses_is_in_the_page() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    for name in ("console.js", "console-jobs.js"):
        used = set(re.findall(r'\$\("([^"]+)"\)', (STATIC_DIR / name).read_text()))
        assert used and used <= ids, (name, used - ids)
    # Routes of the jobs script and the endpoints it calls.
    script = (STATIC_DIR / "console-jobs.js").read_text()
    for fragment in ('"/jobs"', '"/runs"', '"/schedules"', '"/workflows"', "started_before"):
        assert fragment in script, fragment


# --------------------------------------------------------------------------- the API it reads

# Fields the page reads from each response (console-jobs.js); a rename fails here.
LIST_FIELDS = {"name", "description", "owner", "tags", "version", "applied_by", "applied_at",
               "schedules", "triggers", "content_hash"}  # fmt: skip
STEP_FIELDS_READ = {"id", "type", "depends_on", "when", "for_each", "on_failure", "timeout",
                    "config"}  # fmt: skip
SCHEDULE_FIELDS = {"schedule_id", "spec", "paused", "note", "next_fire_times", "run_count",
                   "running", "recent_runs"}  # fmt: skip
RUN_FIELDS = {"workflow_id", "run_id", "status", "start_time_ms", "close_time_ms"}


async def test_the_api_answers_what_the_jobs_page_reads(console: Console) -> None:
    status, listed, _ = await console.call("GET", "/jobs", namespace="default")
    assert status == 200
    jobs = {j["name"]: j for j in listed["jobs"]}
    assert set(jobs) == {JOB, OTHER}
    job = jobs[JOB]
    assert set(job) >= LIST_FIELDS
    assert job["version"] == 2 and job["applied_by"] == "alice"
    assert job["tags"] == ["finance", "nightly"] and job["owner"] == "payments-team"
    assert job["schedules"] == [f"{JOB}/nightly", f"{JOB}/1"]

    # Schedules listing: the next fire time of each of the job's schedules.
    status, page, _ = await console.call("GET", "/schedules", namespace="default", limit="1000")
    assert status == 200 and page["next_after"] is None
    listed_schedules = {s["schedule_id"]: s for s in page["schedules"]}
    for schedule_id in job["schedules"]:
        summary = listed_schedules[schedule_id]
        assert summary["paused"] is False and summary["next_fire_time"]

    # Detail: steps with what the page shows, versions; secret values removed.
    status, described, text = await console.call("GET", f"/jobs/{JOB}", namespace="default")
    assert status == 200
    assert SECRET_VALUE not in text and "v1:k1:" not in text
    assert described["job"]["name"] == JOB
    assert [v["version"] for v in described["versions"]] == [1, 2]
    assert {"version", "change", "applied_by", "applied_at", "content_hash"} <= set(
        described["versions"][0]
    )
    steps = {s["id"]: s for s in described["definition"]["steps"]}
    post = steps["post"]
    assert set(post) <= STEP_FIELDS_READ | {"description", "retry"}
    assert post["depends_on"] == ["fetch"] and post["when"].startswith("steps.fetch")
    assert post["for_each"] == {
        "items": "{{ steps.fetch.output.rows }}",
        "concurrency": 2,
        "as": "row",
    }
    assert post["on_failure"] == {"compensate": "undo"}
    assert steps["fetch"]["timeout"] == "PT10S"
    assert described["definition"]["variables"]["DB_PASS"] == {"secret": True}

    # One schedule (its id holds a "/", percent-encoded as the page does).
    path = f"/schedules/{quote(f'{JOB}/nightly', safe='')}"
    status, schedule, _ = await console.call("GET", path, namespace="default")
    assert status == 200 and set(schedule) >= SCHEDULE_FIELDS
    assert schedule["spec"]["kind"] == "cron" and len(schedule["next_fire_times"]) == 10
    assert {"nominal_time", "actual_time"} <= set(schedule["next_fire_times"][0])
    status, _, _ = await console.call(
        "POST",
        path + "/pause",
        {"note": "bank holiday", "identity": "console"},
        namespace="default",
    )
    assert status == 204
    status, schedule, _ = await console.call("GET", path, namespace="default")
    assert schedule["paused"] is True and schedule["note"] == "bank holiday"
    status, _, _ = await console.call(
        "POST", path + "/unpause", {"note": "", "identity": "console"}, namespace="default"
    )
    assert status == 204

    # Run now: the body the page sends; a repeated request id finds the same run.
    body = {"input": {"date": "2025-01-31"}, "identity": "console", "request_id": "req-1"}
    status, started, _ = await console.call("POST", f"/jobs/{JOB}/runs", body, namespace="default")
    assert status == 201 and started["started"] is True
    assert started["workflow_id"].startswith(f"{JOB}/manual/")
    status, again, _ = await console.call("POST", f"/jobs/{JOB}/runs", body, namespace="default")
    assert status == 200 and again["started"] is False
    assert again["workflow_id"] == started["workflow_id"]
    # A job that allows no manual run: a problem whose detail the dialog shows as text.
    status, problem, _ = await console.call(
        "POST", f"/jobs/{OTHER}/runs", {"input": None, "identity": "console"}, namespace="default"
    )
    assert status == 400 and "does not allow manual runs" in problem["detail"]
    async with console.http.post(
        f"{console.url}/api/v1/jobs/{OTHER}/webhook", json={"x": 1}, headers=console.headers
    ) as response:
        assert response.status == 201
        other_run = (await response.json())["workflow_id"]

    # Recent runs: the job runs listing, paged by start time, filtered by the id prefix.
    status, runs, _ = await console.call(
        "GET",
        "/workflows",
        namespace="default",
        workflow_type=JOB_WORKFLOW_TYPE,
        limit="200",
        started_before="2999-01-01T00:00:00.000Z",
    )
    assert status == 200
    found = {r["workflow_id"]: r for r in runs["workflows"]}
    assert {started["workflow_id"], other_run} <= set(found)
    assert set(found[started["workflow_id"]]) >= RUN_FIELDS
    assert found[started["workflow_id"]]["status"] == "running"
    assert not other_run.startswith(f"{JOB}/")
    status, runs, _ = await console.call(
        "GET",
        "/workflows",
        namespace="default",
        workflow_type=JOB_WORKFLOW_TYPE,
        started_before="2000-01-01T00:00:00.000Z",
    )
    assert status == 200 and runs["workflows"] == []


# --------------------------------------------------------------------------- the page in node

HARNESS = r"""
// Runs the console's real scripts in node against a real server, on a minimal fake DOM.
"use strict";
const fs = require("fs");
const vm = require("vm");
const path = require("path");

const [staticDir, baseUrl, scenarioJson] = process.argv.slice(2);
const html = fs.readFileSync(path.join(staticDir, "index.html"), "utf8");

class FakeNode {}
class FakeText extends FakeNode {
  constructor(text) { super(); this.data = String(text); }
  get textContent() { return this.data; }
}
class FakeElement extends FakeNode {
  constructor(tag) {
    super();
    this.tagName = tag.toUpperCase();
    this.childNodes = [];
    this.attributes = {};
    this.listeners = {};
    this.dataset = {};
    this.hidden = false;
    this.disabled = false;
    this.open = false;
    this.value = "";
    this.className = "";
    this.title = "";
  }
  get children() { return this.childNodes.filter((n) => n instanceof FakeElement); }
  get classList() {
    const self = this;
    const names = () => self.className.split(/\s+/).filter(Boolean);
    return {
      contains: (n) => names().includes(n),
      add: (n) => { if (!names().includes(n)) self.className = [...names(), n].join(" "); },
      remove: (n) => { self.className = names().filter((x) => x !== n).join(" "); },
      toggle: (n, force) => {
        const on = force === undefined ? !names().includes(n) : force;
        if (on) self.classList.add(n); else self.classList.remove(n);
        return on;
      },
    };
  }
  append(...nodes) {
    for (const n of nodes) this.childNodes.push(n instanceof FakeNode ? n : new FakeText(n));
  }
  replaceChildren(...nodes) { this.childNodes = []; this.append(...nodes); }
  get textContent() { return this.childNodes.map((n) => n.textContent).join(""); }
  set textContent(value) { this.childNodes = [new FakeText(value)]; }
  setAttribute(k, v) { this.attributes[k] = String(v); }
  getAttribute(k) { return k in this.attributes ? this.attributes[k] : null; }
  removeAttribute(k) { delete this.attributes[k]; }
  addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); }
  dispatch(type, event) {
    const e = Object.assign({ type, target: this, preventDefault() {} }, event || {});
    for (const fn of this.listeners[type] || []) fn(e);
  }
  click() { if (!this.disabled) this.dispatch("click"); }
  remove() {}
  showModal() { this.open = true; }
  close() { this.open = false; }
}

// Every element with an id in index.html, with the attributes the scripts read.
const byId = new Map();
const sections = [];
const navLinks = [];
for (const m of html.matchAll(/<(\w+)\s([^>]*?)\bid="([^"]+)"([^>]*)>/g)) {
  const node = new FakeElement(m[1]);
  const attrs = m[2] + m[4];
  const value = attrs.match(/\bvalue="([^"]*)"/);
  if (value) node.value = value[1];
  node.hidden = /\bhidden\b/.test(attrs);
  node.disabled = /\bdisabled\b/.test(attrs);
  byId.set(m[3], node);
  if (m[1] === "section") sections.push(node);
  node.id = m[3];
}
for (const m of html.matchAll(/<a href="([^"]+)" data-nav="([^"]+)">/g)) {
  const link = new FakeElement("a");
  link.dataset.nav = m[2];
  navLinks.push(link);
}

const docListeners = {};
const winListeners = {};
const storage = new Map();
global.Node = FakeNode;
global.window = global;
global.location = { origin: baseUrl, hash: "" };
global.sessionStorage = {
  getItem: (k) => (storage.has(k) ? storage.get(k) : null),
  setItem: (k, v) => storage.set(k, String(v)),
  removeItem: (k) => storage.delete(k),
};
global.addEventListener = (type, fn) => { (winListeners[type] = winListeners[type] || []).push(fn); };
global.document = {
  readyState: "interactive",
  body: new FakeElement("body"),
  getElementById: (id) => byId.get(id) || null,
  createElement: (tag) => new FakeElement(tag),
  createTextNode: (text) => new FakeText(text),
  addEventListener: (type, fn) => { (docListeners[type] = docListeners[type] || []).push(fn); },
  querySelectorAll: (selector) => {
    if (selector === "main > section") return sections;
    if (selector === "#nav a") return navLinks;
    return [];
  },
};
let inflight = 0;
const realFetch = global.fetch;
const requests = [];
global.fetch = async (url, options) => {
  inflight += 1;
  try {
    const absolute = new URL(String(url), baseUrl);
    requests.push({ method: (options && options.method) || "GET", url: absolute.pathname + absolute.search,
      auth: Boolean(options && options.headers && options.headers.Authorization) });
    return await realFetch(absolute, options);
  } finally {
    inflight -= 1;
  }
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function idle() {
  let quiet = 0;
  for (let i = 0; i < 500 && quiet < 5; i += 1) {
    await sleep(10);
    quiet = inflight === 0 ? quiet + 1 : 0;
  }
}

function* walk(node) {
  yield node;
  for (const child of node.children || []) yield* walk(child);
}

function snapshot(id) {
  const node = byId.get(id);
  const rows = [];
  for (const n of walk(node)) {
    if (n.tagName === "TR") rows.push(n.children.map((td) => td.textContent));
  }
  return { text: node.textContent, hidden: node.hidden, open: node.open, disabled: node.disabled,
    className: node.className, title: node.title, rows };
}

async function main() {
  for (const file of ["console.js", "console-jobs.js"]) {
    vm.runInThisContext(fs.readFileSync(path.join(staticDir, file), "utf8"), { filename: file });
  }
  const results = [];
  for (const step of JSON.parse(scenarioJson)) {
    if (step.do === "storage") storage.set(step.key, step.value);
    else if (step.do === "start") {
      location.hash = step.hash;
      for (const fn of docListeners.DOMContentLoaded || []) fn({});
    } else if (step.do === "route") {
      location.hash = step.hash;
      for (const fn of winListeners.hashchange || []) fn({});
    } else if (step.do === "set") {
      byId.get(step.id).value = step.value;
      if (step.event) byId.get(step.id).dispatch(step.event);
    } else if (step.do === "click") {
      let target = step.id ? byId.get(step.id) : null;
      if (!target) {
        for (const root of byId.values()) {
          for (const n of walk(root)) {
            if (!target && n.tagName === "BUTTON" && n.textContent === step.text) target = n;
          }
        }
      }
      if (!target) throw new Error(`no button ${step.id || step.text}`);
      target.click();
    } else if (step.do === "submit") {
      byId.get(step.id).dispatch("submit", { submitter: { value: step.submitter } });
    } else if (step.do === "snapshot") {
      const snap = {};
      for (const id of step.ids) snap[id] = snapshot(id);
      snap.nav = navLinks.map((a) => ({ nav: a.dataset.nav, active: a.classList.contains("active") }));
      snap.views = sections.filter((s) => !s.hidden).map((s) => s.id);
      snap.requests = requests.splice(0);
      results.push(snap);
      continue;
    }
    await idle();
  }
  process.stdout.write(JSON.stringify(results));
  process.exit(0);
}

main().catch((error) => { process.stderr.write(String(error && error.stack || error)); process.exit(1); });
"""


async def _run_page(tmp_path: Path, url: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    process = await asyncio.create_subprocess_exec(
        NODE or "node",
        str(harness),
        str(STATIC_DIR),
        url,
        json.dumps(steps),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TZ": "UTC"},  # the page shows local times
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    return json.loads(out)


DETAIL = ["j-title", "j-version", "j-facts", "j-steps", "j-variables", "j-schedules", "j-runs",
          "j-runs-count", "j-versions", "j-run", "banner"]  # fmt: skip


@needs_node
async def test_the_jobs_helpers_in_node(tmp_path: Path) -> None:
    script = tmp_path / "helpers.js"
    script.write_text(
        "globalThis.window = globalThis;\n"
        f"require({json.dumps(str(STATIC_DIR / 'console-jobs.js'))});\n"
        "const h = window.CadenzaJobs;\n"
        "const job = {name: 'nightly-report', tags: ['finance', 'Nightly']};\n"
        "const runs = h.mergeRuns('nightly-report', [], [\n"
        "  {workflow_id: 'nightly-report-eu/webhook/x', run_id: 'a', start_time_ms: 3},\n"
        "  {workflow_id: 'nightly-report/manual/x', run_id: 'b', start_time_ms: 1},\n"
        "  {workflow_id: 'nightly-report/nightly/2025', run_id: 'c', start_time_ms: 2}]);\n"
        "const again = h.mergeRuns('nightly-report', runs,\n"
        "  [{workflow_id: 'nightly-report/manual/x', run_id: 'b', start_time_ms: 1}]);\n"
        "console.log(JSON.stringify({\n"
        "  match: ['night', 'FIN', 'tag:finance', 'tag:fin', 'report nightly', 'eu', ''].map(\n"
        "    (f) => h.jobMatches(job, f)),\n"
        "  inputs: ['', '  ', '{\"a\": [1]}', '{bad', '42'].map(h.parseRunInput),\n"
        "  triggers: ['nightly-report/manual/x', 'nightly-report/webhook/y',\n"
        "    'nightly-report/nightly/2025', 'nightly-report-eu/manual/z'].map(\n"
        "    (id) => h.runTrigger('nightly-report', id)),\n"
        "  runs: again.map((r) => r.run_id),\n"
        "  durations: ['PT10S', 'PT3600S', 'P1DT2H', 'PT90S', 'PT0.25S', 12, null].map(h.durationText),\n"
        "  forEach: [null, {items: [1, 2, 3]}, {items: '{{ x }}', concurrency: 4, as: 'f'}].map(h.forEachText),\n"
        "  onFailure: [undefined, 'continue', {compensate: 'undo'}].map(h.onFailureText),\n"
        "  next: h.nextFire([{paused: false, next_fire_time: '2030-01-02T00:00:00Z'},\n"
        "    {paused: false, next_fire_time: '2030-01-01T00:00:00Z'},\n"
        "    {paused: true, next_fire_time: '2029-01-01T00:00:00Z'}]),\n"
        "}));\n"
    )
    process = await asyncio.create_subprocess_exec(
        NODE or "node", str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["match"] == [True, True, True, False, True, False, True]
    inputs = result["inputs"]
    assert inputs[0] == inputs[1] == {"ok": True, "value": None}
    assert inputs[2] == {"ok": True, "value": {"a": [1]}}
    assert inputs[3]["ok"] is False and inputs[3]["error"].startswith("Input is not valid JSON")
    assert inputs[4] == {"ok": True, "value": 42}
    assert result["triggers"] == ["manual", "webhook", "schedule nightly", ""]
    assert result["runs"] == ["c", "b"]
    assert result["durations"] == ["10s", "1h", "1d2h", "1m30s", "0.25s", "12 s", ""]
    assert result["forEach"] == ["", "3 items", "{{ x }} · concurrency 4 · as f"]
    assert result["onFailure"] == ["fail", "continue", "compensate: undo"]
    assert result["next"] == {"time": "2030-01-01T00:00:00Z", "active": 2, "paused": 1}


@needs_node
async def test_the_jobs_pages_in_node_against_the_server(console: Console, tmp_path: Path) -> None:
    token = {"do": "storage", "key": "cadenza.token", "value": TOKEN}
    snaps = await _run_page(
        tmp_path,
        console.url,
        [
            token,
            {"do": "start", "hash": "#/jobs"},
            {"do": "snapshot", "ids": ["jobs-rows", "jobs-count", "jobs-empty", "banner"]},
            {"do": "set", "id": "jf-text", "value": "tag:adhoc", "event": "input"},
            {"do": "snapshot", "ids": ["jobs-rows", "jobs-count"]},
            {"do": "set", "id": "jf-text", "value": "no-such-job", "event": "input"},
            {"do": "snapshot", "ids": ["jobs-rows", "jobs-empty"]},
            {"do": "route", "hash": f"#/jobs/{JOB}"},
            {"do": "snapshot", "ids": DETAIL},
            {"do": "click", "text": "Pause…"},
            {"do": "set", "id": "pause-note", "value": "bank holiday"},
            {"do": "submit", "id": "form-pause", "submitter": "ok"},
            {"do": "snapshot", "ids": ["dlg-pause", "j-schedules", "banner"]},
            {"do": "click", "id": "j-run"},
            {"do": "set", "id": "run-input", "value": "{not json"},
            {"do": "submit", "id": "form-run", "submitter": "ok"},
            {"do": "snapshot", "ids": ["dlg-run", "run-error"]},
            {"do": "set", "id": "run-input", "value": '{"date": "2025-01-31"}'},
            {"do": "submit", "id": "form-run", "submitter": "ok"},
            {"do": "snapshot", "ids": ["dlg-run", "run-error", "banner", "j-runs"]},
            {"do": "route", "hash": f"#/jobs/{OTHER}"},
            {"do": "snapshot", "ids": ["j-title", "j-run", "j-schedules-empty", "j-runs-empty"]},
            {"do": "route", "hash": "#/"},
            {"do": "snapshot", "ids": ["wf-rows"]},
        ],
    )
    listing, tagged, none, detail, paused, bad_input, ran, other, workflows = snaps

    # The list: both jobs with their summary and next fire time; the Jobs tab is active.
    assert listing["views"] == ["jobs-view"]
    assert {"nav": "jobs", "active": True} in listing["nav"]
    rows = {row[0]: row for row in listing["jobs-rows"]["rows"]}
    assert set(rows) == {JOB, OTHER}
    _, description, owner, tags, version, applied_by, _, schedules, next_fire = rows[JOB]
    assert description == "Match the settlement file (v2)" and owner == "payments-team"
    assert tags == "financenightly" and version == "2" and applied_by == "alice"
    # The earliest of the two: the fixed rate's first fire, local midnight in Ho Chi Minh City.
    assert schedules == "2" and next_fire == "2089-12-31 17:00:00.000"
    assert rows[OTHER][-1] == "—"
    assert listing["jobs-count"]["text"] == "2 jobs" and listing["jobs-empty"]["hidden"]
    assert not listing["banner"]["text"]
    # Every API call carried the token the workflows view stored.
    api_calls = [r for r in listing["requests"] if r["url"].startswith("/api/")]
    assert all(r["auth"] for r in api_calls)
    assert [r["url"].split("?")[0] for r in api_calls] == ["/api/v1/jobs", "/api/v1/schedules"]

    # The filter narrows without a request.
    assert [row[0] for row in tagged["jobs-rows"]["rows"]] == [OTHER]
    assert tagged["jobs-count"]["text"] == "1 of 2 jobs" and tagged["requests"] == []
    assert none["jobs-rows"]["rows"] == [] and not none["jobs-empty"]["hidden"]

    # The detail page.
    assert detail["views"] == ["job-view"]
    assert detail["j-title"]["text"] == JOB and detail["j-version"]["text"] == "version 2"
    assert detail["j-run"]["disabled"] is False
    steps = {row[0]: row for row in detail["j-steps"]["rows"]}
    assert steps["fetch"][1:3] == ["http", ""] and steps["fetch"][6] == "10s"
    assert steps["post"][2] == "fetch" and steps["post"][3].startswith("steps.fetch.status")
    assert steps["post"][4] == "{{ steps.fetch.output.rows }} · concurrency 2 · as row"
    assert steps["post"][5] == "compensate: undo"
    assert steps["undo"][5] == "fail"
    variables = {row[0]: row[1] for row in detail["j-variables"]["rows"][1:]}
    assert variables == {"DB_PASS": "secret", "REGION": '"south"'}
    schedule_rows = {row[0]: row for row in detail["j-schedules"]["rows"]}
    assert set(schedule_rows) == {f"{JOB}/nightly", f"{JOB}/1"}
    assert schedule_rows[f"{JOB}/nightly"][1:3] == ["cron", "active"]
    assert schedule_rows[f"{JOB}/nightly"][-1] == "Pause…"
    assert [row[0] for row in detail["j-versions"]["rows"]] == ["2", "1"]
    assert detail["j-runs"]["rows"] == []  # the tbody only (the table head is outside it)
    assert "0" in detail["j-runs-count"]["text"]
    for snap in detail.values():
        assert SECRET_VALUE not in json.dumps(snap)
    run_queries = [r["url"] for r in detail["requests"] if r["url"].startswith("/api/v1/workflows")]
    assert run_queries and f"workflow_type={JOB_WORKFLOW_TYPE}" in run_queries[0]

    # Pause with a note: the first schedule (the cron one, listed first) is paused.
    assert paused["dlg-pause"]["open"] is False
    assert paused["banner"]["text"] == f"Schedule {JOB}/nightly paused."
    nightly = {row[0]: row for row in paused["j-schedules"]["rows"]}[f"{JOB}/nightly"]
    assert nightly[2] == "pausedbank holiday" and nightly[-1] == "Unpause…"
    path = f"/schedules/{quote(f'{JOB}/nightly', safe='')}"
    _, schedule, _ = await console.call("GET", path, namespace="default")
    assert schedule["paused"] is True and schedule["note"] == "bank holiday"

    # Run now: invalid JSON is refused before any request; valid input starts a run.
    assert bad_input["dlg-run"]["open"] is True and bad_input["requests"] == []
    assert bad_input["run-error"]["text"].startswith("Input is not valid JSON")
    assert ran["dlg-run"]["open"] is False and "started" in ran["banner"]["text"]
    (run_row,) = ran["j-runs"]["rows"]
    assert run_row[0].startswith(f"{JOB}/manual/") and run_row[1:3] == ["manual", "running"]
    _, history, _ = await console.call(
        "GET", f"/workflows/{quote(run_row[0], safe='')}/history", namespace="default"
    )
    assert "2025-01-31" in json.dumps(history["events"][0])

    # A job without manual runs: Run now is disabled; no schedules, no runs.
    assert other["j-title"]["text"] == OTHER and other["j-run"]["disabled"] is True
    assert "manual" in other["j-run"]["title"]
    assert not other["j-schedules-empty"]["hidden"] and not other["j-runs-empty"]["hidden"]

    # The workflows view still works, and lists the run.
    assert workflows["views"] == ["list-view"]
    assert {"nav": "workflows", "active": True} in workflows["nav"]
    assert run_row[0] in [row[0] for row in workflows["wf-rows"]["rows"]]


@needs_node
async def test_the_jobs_page_asks_for_the_token(console: Console, tmp_path: Path) -> None:
    (snap,) = await _run_page(
        tmp_path,
        console.url,
        [
            {"do": "start", "hash": "#/jobs"},
            {"do": "snapshot", "ids": ["dlg-token", "banner", "jobs-rows"]},
        ],
    )
    assert snap["dlg-token"]["open"] is True
    assert "token" in snap["banner"]["text"]
    assert snap["jobs-rows"]["rows"] == []
