// Fleet's web UI: reads the master's /state every POLL_MS and draws one of four views,
// chosen by the URL's hash: the overview (#/), one agent (#/agents/ID), one framework
// (#/frameworks/ID) and one task (#/tasks/ID), whose stdout and stderr are tailed through
// the master's /ui/tasks/ID/{stdout,stderr}. Plain script, no build step, nothing fetched
// from anywhere but the master.
"use strict";

const POLL_MS = 1500;
const LOG_POLL_MS = 1000;
/** The most of a log kept on the page, in characters; older output is dropped. */
const LOG_KEEP = 256 * 1024;
/** Ended tasks listed on the overview, newest first. */
const ENDED_SHOWN = 50;
const STATES = [
  "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_FINISHED",
  "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
  "TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR",
];
const TERMINAL = new Set([
  "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
  "TASK_GONE", "TASK_GONE_BY_OPERATOR",
]);

let state = null;
let updated = null;
let failure = null;
/** The task page's tails: {task, files: {stdout, stderr}, timer}. */
let tail = null;

// ---- formatting -------------------------------------------------------------------------

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

function number(n, digits = 2) {
  return Number(n.toFixed(digits)).toString();
}

/** Mesos counts mem and disk in MB. */
function megabytes(mb) {
  if (mb >= 1024 * 1024) return `${number(mb / (1024 * 1024), 1)} TiB`;
  if (mb >= 1024) return `${number(mb / 1024, 1)} GiB`;
  return `${number(mb, 0)} MiB`;
}

function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${number(n, i === 0 ? 0 : 1)} ${units[i]}`;
}

function scalar(name, value) {
  return name === "mem" || name === "disk" ? megabytes(value) : number(value);
}

/** How long before `now` (default: this browser's clock) `ms` was. */
function ago(ms, now = Date.now()) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

/** A resources list as {name: {scalar} | {ranges: [[b, e]]} | {set: [...]}}, over all roles. */
function totals(list) {
  const out = {};
  for (const r of list || []) {
    const t = out[r.name] || (out[r.name] = {});
    if (r.type === "SCALAR") t.scalar = (t.scalar || 0) + (r.scalar?.value || 0);
    if (r.type === "RANGES") {
      t.ranges = (t.ranges || []).concat((r.ranges?.range || []).map((x) => [x.begin, x.end]));
    }
    if (r.type === "SET") t.set = (t.set || []).concat(r.set?.item || []);
  }
  return out;
}

function amount(name, t) {
  if (!t) return "0";
  if (t.scalar != null) return scalar(name, t.scalar);
  if (t.ranges) return t.ranges.map(([b, e]) => (b === e ? `${b}` : `${b}-${e}`)).join(", ");
  if (t.set) return t.set.join(", ");
  return "0";
}

function scalarOf(list, name) {
  return totals(list)[name]?.scalar || 0;
}

/** "cpus 0.1 · mem 128 MiB", the order Mesos prints. */
function describe(list) {
  const t = totals(list);
  const names = Object.keys(t).sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  if (names.length === 0) return '<span class="muted">–</span>';
  return names.map((n) => `${esc(n)} ${esc(amount(n, t[n]))}`).join(" · ");
}

function order(name) {
  const i = ["cpus", "gpus", "mem", "disk", "ports"].indexOf(name);
  return i < 0 ? 99 : i;
}

function percent(part, whole) {
  return whole > 0 ? Math.min(100, (100 * part) / whole) : 0;
}

function stateBadge(s) {
  let tone = "";
  if (s === "TASK_RUNNING" || s === "TASK_FINISHED") tone = "green";
  else if (s === "TASK_STAGING" || s === "TASK_STARTING") tone = "blue";
  else if (s === "TASK_KILLING" || s === "TASK_KILLED" || s === "TASK_UNREACHABLE") tone = "amber";
  else if (TERMINAL.has(s)) tone = "red";
  return `<span class="badge ${tone}">${esc(s)}</span>`;
}

function badge(text, tone) {
  return `<span class="badge ${tone}">${esc(text)}</span>`;
}

function link(kind, id, text) {
  return `<a class="mono" href="#/${kind}/${encodeURIComponent(id)}">${esc(text ?? id)}</a>`;
}

function table(headers, rows, empty) {
  const head = headers
    .map((h) => (h.startsWith("#") ? `<th class="num">${esc(h.slice(1))}</th>` : `<th>${esc(h)}</th>`))
    .join("");
  const body = rows.length
    ? rows.join("")
    : `<tr><td class="empty" colspan="${headers.length}">${esc(empty)}</td></tr>`;
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function facts(pairs) {
  const rows = pairs.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join("");
  return `<table class="facts"><tbody>${rows}</tbody></table>`;
}

function num(html) {
  return `<td class="num">${html}</td>`;
}

// ---- the state --------------------------------------------------------------------------

function allTasks() {
  return (state.tasks || []).concat(state.completed_tasks || []);
}

function findTask(id) {
  return (state.tasks || []).find((t) => t.id === id)
    || (state.completed_tasks || []).slice().reverse().find((t) => t.id === id);
}

function findAgent(id) {
  return (state.agents || []).find((a) => a.id === id);
}

function findFramework(id) {
  return (state.frameworks || []).find((f) => f.id === id)
    || (state.completed_frameworks || []).find((f) => f.id === id);
}

/** An agent's last report, timed by the master's clock rather than the browser's. */
function lastReport(a) {
  return ago(a.last_report_timestamp_ms, state.published_at_ms || Date.now());
}

function frameworkName(id) {
  const f = findFramework(id);
  return f ? f.name : "";
}

function agentHost(id) {
  const a = findAgent(id);
  return a ? a.hostname : "";
}

/** Every role in use, weighted or with a quota, as DRF sees it. */
function roles() {
  const shares = state.shares?.roles || {};
  const names = new Set([
    ...Object.keys(shares), ...Object.keys(state.weights || {}), ...Object.keys(state.quotas || {}),
  ]);
  return [...names].sort().map((name) => {
    const share = shares[name];
    const weight = share?.weight ?? state.weights?.[name] ?? 1;
    const weighted = share?.share ?? 0;
    return {
      name,
      weight,
      weighted,
      dominant: weighted * weight,
      frameworks: Object.keys(share?.frameworks || {}),
      quota: state.quotas?.[name],
    };
  });
}

// ---- views ------------------------------------------------------------------------------

function overview() {
  const agents = state.agents || [];
  const active = agents.filter((a) => a.active).length;
  const total = (name, field) => agents.reduce((s, a) => s + scalarOf(a[field], name), 0);
  const resourceCard = (label, name) => {
    const all = total(name, "total");
    const used = total(name, "used");
    const offered = total(name, "offered");
    const p = percent(used, all);
    return `<div class="card"><div class="label">${esc(label)}</div>
      <div class="value">${esc(scalar(name, used))} <small>/ ${esc(scalar(name, all))}</small></div>
      <div class="bar"><span class="${p > 85 ? "hot" : ""}" style="width:${p}%"></span></div>
      <div class="sub">${number(p, 1)}% used · ${esc(scalar(name, offered))} offered</div></div>`;
  };
  const frameworks = state.frameworks || [];
  const live = state.tasks || [];
  const counts = {};
  for (const t of allTasks()) counts[t.state] = (counts[t.state] || 0) + 1;
  const chips = STATES.filter((s) => counts[s])
    .map((s) => stateBadge(s).replace("</span>", `<span class="n">${counts[s]}</span></span>`));

  const cards = [
    `<div class="card"><div class="label">Agents</div>
      <div class="value">${active} <small>active / ${agents.length}</small></div>
      <div class="sub">${(state.recovered_agents || []).length} recovered, not yet back</div></div>`,
    resourceCard("CPUs", "cpus"),
    resourceCard("Memory", "mem"),
    resourceCard("Disk", "disk"),
    total("gpus", "total") > 0 ? resourceCard("GPUs", "gpus") : "",
    `<div class="card"><div class="label">Frameworks</div>
      <div class="value">${frameworks.filter((f) => f.active).length} <small>active / ${frameworks.length}</small></div>
      <div class="sub">${(state.completed_frameworks || []).length} completed</div></div>`,
    `<div class="card"><div class="label">Tasks</div>
      <div class="value">${live.filter((t) => !TERMINAL.has(t.state)).length} <small>live</small></div>
      <div class="sub">${(state.completed_tasks || []).length} ended · ${state.outstanding_offers || 0} offers out</div></div>`,
  ];

  const agentRows = agents.map((a) => `<tr>
      <td>${link("agents", a.id)}</td><td>${esc(a.hostname)}</td>
      <td>${a.active ? badge("active", "green") : badge("inactive", "red")}</td>
      ${num(`${esc(scalar("cpus", scalarOf(a.used, "cpus")))} / ${esc(scalar("cpus", scalarOf(a.total, "cpus")))}`)}
      ${num(`${esc(megabytes(scalarOf(a.used, "mem")))} / ${esc(megabytes(scalarOf(a.total, "mem")))}`)}
      ${num(`${esc(megabytes(scalarOf(a.used, "disk")))} / ${esc(megabytes(scalarOf(a.total, "disk")))}`)}
      ${num(a.tasks)}<td class="mono">${esc(a.http_address)}</td>
      <td>${esc(lastReport(a))}</td></tr>`);

  const frameworkRow = (f, ended) => `<tr>
      <td>${link("frameworks", f.id)}</td><td>${esc(f.name)}</td><td>${esc(f.user)}</td>
      <td>${esc((f.roles || []).join(", "))}</td>
      <td>${ended ? badge("completed", "") : f.active ? badge("active", "green") : badge(f.recovered ? "recovered" : "inactive", "amber")}</td>
      ${num(number(f.dominant_share * 100, 1) + "%")}${num(f.tasks)}<td>${describe(f.used)}</td></tr>`;
  const frameworkRows = frameworks.map((f) => frameworkRow(f, false))
    .concat((state.completed_frameworks || []).slice(-10).reverse().map((f) => frameworkRow(f, true)));

  const roleRows = roles().map((r) => `<tr>
      <td class="mono">${esc(r.name)}</td>${num(number(r.weight))}
      ${num(number(r.dominant * 100, 1) + "%")}${num(number(r.weighted * 100, 1) + "%")}
      ${num(r.frameworks.length)}
      <td>${r.quota ? describe(r.quota.guarantees) : '<span class="muted">–</span>'}</td>
      <td>${r.quota?.limits ? describe(r.quota.limits) : '<span class="muted">none</span>'}</td></tr>`);

  const ended = (state.completed_tasks || []).slice(-ENDED_SHOWN).reverse();
  const taskRows = live.concat(ended).map(taskRow);
  const endedNote = (state.completed_tasks || []).length > ENDED_SHOWN
    ? ` <span class="count">(the last ${ENDED_SHOWN} ended shown)</span>` : "";

  return `<h1>Cluster</h1>
    <div class="cards">${cards.join("")}</div>
    <h2>Tasks by state</h2>
    <div class="chips">${chips.length ? chips.join("") : '<span class="muted">No tasks yet.</span>'}</div>
    <h2>Agents <span class="count">(${agents.length})</span></h2>
    ${table(["Agent", "Hostname", "Status", "#CPUs used", "#Memory used", "#Disk used", "#Tasks", "HTTP", "Last report"], agentRows, "No agents registered.")}
    <h2>Frameworks <span class="count">(${frameworks.length} subscribed)</span></h2>
    ${table(["Framework", "Name", "User", "Roles", "Status", "#Dominant share", "#Tasks", "Allocated"], frameworkRows, "No frameworks.")}
    <h2>Roles <span class="count">(${roleRows.length})</span></h2>
    ${table(["Role", "#Weight", "#Dominant share", "#Weighted share", "#Frameworks", "Quota guarantee", "Quota limit"], roleRows, "No roles in use, weighted or with a quota.")}
    <h2>Tasks <span class="count">(${live.length} live, ${(state.completed_tasks || []).length} ended)</span>${endedNote}</h2>
    ${tasksTable(taskRows)}`;
}

function taskRow(t) {
  return `<tr><td>${link("tasks", t.id)}</td><td>${esc(t.name)}</td><td>${stateBadge(t.state)}</td>
    <td>${link("frameworks", t.framework_id)} <span class="muted">${esc(frameworkName(t.framework_id))}</span></td>
    <td>${link("agents", t.agent_id)} <span class="muted">${esc(agentHost(t.agent_id))}</span></td>
    <td>${describe(t.resources)}</td>${num(t.exit_code ?? "–")}<td>${esc(t.message)}</td></tr>`;
}

function tasksTable(rows) {
  return table(["Task", "Name", "State", "Framework", "Agent", "Resources", "#Exit", "Message"], rows, "No tasks.");
}

function resourcesTable(names, columns) {
  const rows = names.map((n) => `<tr><td class="mono">${esc(n)}</td>${columns
    .map(([, list]) => num(esc(amount(n, totals(list)[n])))).join("")}</tr>`);
  return table(["Resource"].concat(columns.map(([h]) => `#${h}`)), rows, "No resources.");
}

/** Facts on the left, usage on the right. */
function split(left, usage) {
  return `<div class="split"><div><h2 class="side">Details</h2>${left}</div>
    <div><h2 class="side">Usage</h2>${usage}</div></div>`;
}

function usageFacts(u) {
  if (!u) return '<p class="muted">No usage reported yet.</p>';
  return facts([
    ["CPU time", `${number((u.cpu_time_ns || 0) / 1e9, 2)} s`],
    ["Memory", esc(bytes(u.mem_bytes))],
    ["Disk", esc(bytes(u.disk_bytes))],
    ["Written", esc(bytes(u.bytes_written))],
    ["Network in / out", `${esc(bytes(u.net_rx_bytes))} / ${esc(bytes(u.net_tx_bytes))}`],
  ]);
}

/** The agent's reservations by role: static ones (its --resources) and dynamic ones
 * (RESERVE_RESOURCES or a framework's RESERVE) with who made them. */
function reservationsTable(a) {
  const roles = {};
  for (const r of a.total || []) {
    if (r.role && r.role !== "*") (roles[r.role] = roles[r.role] || []).push(r);
  }
  const dynamic = {};
  for (const d of a.reservations || []) {
    for (const r of d.resources || []) {
      const by = d.principal || "(no principal)";
      const list = (dynamic[r.role] = dynamic[r.role] || []);
      if (!list.includes(by)) list.push(by);
    }
  }
  const rows = Object.keys(roles).sort().map((role) => `<tr><td>${esc(role)}</td>
    <td>${describe(roles[role])}</td>
    <td>${dynamic[role] ? esc(`dynamic, by ${dynamic[role].join(", ")}`) : "static"}</td></tr>`);
  return table(["Role", "Reserved", "Kind"], rows, "Nothing reserved.");
}

function agentView(id) {
  const a = findAgent(id);
  if (!a) return missing("agent", id);
  const names = Object.keys(totals(a.total)).sort((x, y) => order(x) - order(y) || x.localeCompare(y));
  const tasks = allTasks().filter((t) => t.agent_id === id);
  return `<h1>Agent <span class="id">${esc(a.id)}</span></h1>
    ${split(facts([
      ["Hostname", esc(a.hostname)],
      ["Status", a.active ? badge("active", "green") : badge("inactive", "red")],
      ["HTTP", `<span class="mono">${esc(a.http_address)}</span>`],
      ["Live tasks", esc(a.tasks)],
      ["Offers out", esc((a.offers || []).length)],
      ["Reports", `${esc(a.reports)} · last ${esc(lastReport(a))}`],
    ]), usageFacts(a.usage))}
    <h2>Resources</h2>
    ${resourcesTable(names, [["Total", a.total], ["Allocated", a.used], ["Offered", a.offered]])}
    <h2>Reservations</h2>${reservationsTable(a)}
    <h2>Tasks <span class="count">(${tasks.length})</span></h2>${tasksTable(tasks.map(taskRow))}`;
}

function frameworkView(id) {
  const f = findFramework(id);
  if (!f) return missing("framework", id);
  const ended = !(state.frameworks || []).includes(f);
  const tasks = allTasks().filter((t) => t.framework_id === id);
  const names = Object.keys(Object.assign(totals(f.used), totals(f.offered)))
    .sort((x, y) => order(x) - order(y) || x.localeCompare(y));
  return `<h1>Framework <span class="id">${esc(f.id)}</span></h1>
    ${facts([
      ["Name", esc(f.name)],
      ["User", esc(f.user)],
      ["Roles", esc((f.roles || []).join(", "))],
      ["Status", ended ? badge("completed", "") : f.active ? badge("active", "green") : badge(f.recovered ? "recovered" : "inactive", "amber")],
      ["Dominant share", `${number(f.dominant_share * 100, 2)}%`],
      ["Failover timeout", `${number(f.failover_timeout_ms / 1000, 1)} s`],
      ["Partition aware", f.partition_aware ? "yes" : "no"],
      ["Offers out", esc(f.offers)],
    ])}
    <h2>Resources</h2>${resourcesTable(names, [["Allocated", f.used], ["Offered", f.offered]])}
    <h2>Tasks <span class="count">(${tasks.length})</span></h2>${tasksTable(tasks.map(taskRow))}`;
}

function taskFacts(t) {
  return split(facts([
    ["Name", esc(t.name)],
    ["State", stateBadge(t.state)],
    ["Reason", t.reason ? esc(t.reason) : '<span class="muted">–</span>'],
    ["Message", esc(t.message) || '<span class="muted">–</span>'],
    ["Exit code", esc(t.exit_code ?? "–")],
    ["Framework", `${link("frameworks", t.framework_id)} ${esc(frameworkName(t.framework_id))}`],
    ["Agent", `${link("agents", t.agent_id)} ${esc(agentHost(t.agent_id))}`],
    ["Resources", describe(t.resources)],
    ["Sandbox", `<span class="mono">${esc(t.sandbox || "–")}</span>`],
  ].concat(t.pid != null ? [["Host pid", esc(t.pid)]] : [])), usageFacts(t.usage));
}

/** The task page keeps its log panes across redraws; only the facts above them change. */
function drawTask(view, id) {
  const t = findTask(id);
  if (!t) {
    view.innerHTML = missing("task", id);
    return;
  }
  if (view.dataset.task !== id) {
    view.dataset.task = id;
    view.innerHTML = `<h1>Task <span class="id">${esc(id)}</span></h1><div id="task-facts"></div>
      <h2>Output</h2><div class="logs">${["stdout", "stderr"].map((f) => `<section class="log">
        <header><span>${f}</span><span class="muted" id="${f}-status">reading</span></header>
        <pre id="${f}"></pre></section>`).join("")}</div>`;
  }
  document.getElementById("task-facts").innerHTML = taskFacts(t);
  startTail(id);
}

function missing(kind, id) {
  return `<h1>No ${esc(kind)} <span class="id">${esc(id)}</span></h1>
    <p class="muted">The master does not know it (or no longer does). <a href="#/">Back to the overview</a>.</p>`;
}

// ---- log tails --------------------------------------------------------------------------

function startTail(id) {
  if (tail && tail.task === id) return;
  stopTail();
  const file = () => ({ offset: null, text: "", dropped: false, error: null, done: false });
  tail = { task: id, files: { stdout: file(), stderr: file() }, timer: null };
  pollTail(tail);
}

function stopTail() {
  if (tail && tail.timer) clearTimeout(tail.timer);
  tail = null;
}

async function pollTail(t) {
  // Ended before this round began: what is read now is all there is.
  const ended = TERMINAL.has(findTask(t.task)?.state);
  for (const name of ["stdout", "stderr"]) {
    await readTail(t, name);
    if (ended && !t.files[name].error) t.files[name].done = true;
    drawTail(t, name);
  }
  if (tail === t && !(ended && t.files.stdout.done && t.files.stderr.done)) {
    t.timer = setTimeout(() => pollTail(t), LOG_POLL_MS);
  }
}

async function readChunk(task, name, offset) {
  const r = await fetch(`/ui/tasks/${encodeURIComponent(task)}/${name}?offset=${offset}`, { cache: "no-store" });
  if (!r.ok) throw new Error((await r.text()).trim() || `HTTP ${r.status}`);
  return r.json();
}

async function readTail(t, name) {
  const f = t.files[name];
  try {
    if (f.offset === null) {
      // Start near the end of a long file rather than page through all of it.
      const size = (await readChunk(t.task, name, -1)).offset;
      f.offset = Math.max(0, size - LOG_KEEP);
      f.dropped = f.offset > 0;
    }
    for (let i = 0; i < 32 && tail === t; i += 1) {
      const chunk = await readChunk(t.task, name, f.offset);
      if (!chunk.data) break;
      f.text += chunk.data;
      f.offset = chunk.offset + new TextEncoder().encode(chunk.data).length;
      if (f.text.length > LOG_KEEP) {
        f.text = f.text.slice(-LOG_KEEP);
        f.dropped = true;
      }
    }
    f.error = null;
  } catch (e) {
    f.error = e.message;
  }
}

function drawTail(t, name) {
  if (tail !== t) return;
  const pre = document.getElementById(name);
  const status = document.getElementById(`${name}-status`);
  if (!pre || !status) return;
  const f = t.files[name];
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  if (pre.textContent !== f.text) pre.textContent = f.text;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
  let text = f.done ? `complete · ${bytes(f.offset)}` : `following · ${bytes(f.offset ?? 0)}`;
  if (f.dropped) text += " · earlier output not shown";
  if (f.error) text = `unavailable: ${f.error}`;
  status.textContent = text;
  status.className = f.error ? "error" : "muted";
}

// ---- routing and polling ----------------------------------------------------------------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  if (parts.length === 2 && ["agents", "frameworks", "tasks"].includes(parts[0])) {
    return { kind: parts[0], id: decodeURIComponent(parts[1]) };
  }
  return { kind: "overview" };
}

function draw() {
  const view = document.getElementById("view");
  const r = route();
  const crumbs = document.getElementById("crumbs");
  const kinds = { agents: "Agent", frameworks: "Framework", tasks: "Task" };
  crumbs.innerHTML = r.kind === "overview"
    ? "Overview"
    : `<a href="#/">Overview</a> / ${esc(kinds[r.kind])} <span class="mono">${esc(r.id)}</span>`;
  if (r.kind !== "tasks") {
    stopTail();
    delete view.dataset.task;
  }
  if (!state) return;
  document.getElementById("master").textContent = `master ${state.http_address || ""}`;
  if (r.kind === "tasks") {
    drawTask(view, r.id);
    return;
  }
  delete view.dataset.task;
  if (r.kind === "agents") view.innerHTML = agentView(r.id);
  else if (r.kind === "frameworks") view.innerHTML = frameworkView(r.id);
  else view.innerHTML = overview();
}

function drawLive() {
  const live = document.getElementById("live");
  const text = document.getElementById("live-text");
  const at = updated ? updated.toLocaleTimeString() : "never";
  if (failure) {
    live.className = "live down";
    text.textContent = `disconnected · last update ${updated ? ago(updated.getTime()) : "never"}`;
    live.title = failure;
  } else {
    live.className = "live ok";
    text.textContent = `live · updated ${at}`;
    live.title = `The page reads the master's /state every ${POLL_MS / 1000} s`;
  }
}

async function poll() {
  try {
    const r = await fetch("/state", { cache: "no-store" });
    if (!r.ok) throw new Error(`/state answered HTTP ${r.status}`);
    state = await r.json();
    updated = new Date();
    failure = null;
    draw();
  } catch (e) {
    failure = e.message;
  }
  drawLive();
  setTimeout(poll, POLL_MS);
}

window.addEventListener("hashchange", draw);
draw();
poll();
