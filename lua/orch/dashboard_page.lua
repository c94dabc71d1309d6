-- orch.dashboard_page: the dashboard's one page (orch.dashboard serves it
-- at /), HTML, CSS and JavaScript with no build step and nothing fetched
-- from elsewhere; a Lua string so that it is embedded in the binary like
-- every module. It reads GET /api/processes (the process table), follows
-- GET /events (server-sent events: rows change as processes do) and
-- GET /api/logs (token); its buttons POST /api/restart|reload|stop|start
-- with the token, asked once and kept in the tab's sessionStorage.
return [==[<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>orch</title>
<style>
:root {
  --bg: #f5f6f8; --card: #fff; --ink: #1c2330; --mute: #6b7485; --line: #e3e6ec;
  --green: #17915a; --yellow: #b7791f; --red: #d64545; --blue: #2f6fdf; --violet: #8055d6;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #12151b; --card: #1a1f27; --ink: #e4e8ef; --mute: #8c95a6; --line: #2a313c;
          --green: #3ccf8e; --yellow: #e5b454; --red: #f06a6a; --blue: #6a9cff; --violet: #a98bf0; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; align-items: center; gap: 16px; padding: 14px 24px;
         background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { margin: 0; font-size: 18px; letter-spacing: .5px; }
header h1 span { color: var(--blue); }
.where { color: var(--mute); font-family: var(--mono); font-size: 12px; }
.grow { flex: 1; }
.summary { display: flex; gap: 12px; color: var(--mute); }
.summary b { color: var(--ink); }
.live { display: inline-flex; align-items: center; gap: 6px; color: var(--mute); }
.live::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: var(--yellow); }
.live.on::before { background: var(--green); box-shadow: 0 0 0 3px color-mix(in srgb, var(--green) 25%, transparent); }
.live.off::before { background: var(--red); }
main { padding: 20px 24px; display: grid; gap: 20px; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; overflow: hidden; }
.card h2 { margin: 0; padding: 12px 16px; font-size: 13px; text-transform: uppercase; letter-spacing: .6px;
           color: var(--mute); border-bottom: 1px solid var(--line); display: flex; align-items: center; gap: 10px; }
.wide { grid-column: 1 / -1; }
table { width: 100%; border-collapse: collapse; }
th, td { padding: 9px 16px; text-align: left; white-space: nowrap; }
th { font-size: 12px; color: var(--mute); font-weight: 600; border-bottom: 1px solid var(--line); }
td { border-bottom: 1px solid var(--line); }
tbody tr { cursor: pointer; }
tbody tr:hover { background: color-mix(in srgb, var(--blue) 5%, transparent); }
tbody tr.selected { background: color-mix(in srgb, var(--blue) 10%, transparent); }
tbody tr:last-child td { border-bottom: 0; }
td.num { font-variant-numeric: tabular-nums; text-align: right; }
th.num { text-align: right; }
td.name b { font-weight: 600; }
td.name small { color: var(--mute); margin-left: 2px; }
.status { display: inline-flex; align-items: center; gap: 6px; padding: 2px 10px; border-radius: 999px;
          font-size: 12px; font-weight: 600; background: color-mix(in srgb, var(--c) 14%, transparent); color: var(--c); }
.status::before { content: ""; width: 6px; height: 6px; border-radius: 50%; background: var(--c); }
.s-online { --c: var(--green); } .s-launching, .s-stopping, .s-waiting { --c: var(--yellow); }
.s-errored { --c: var(--red); } .s-stopped { --c: var(--mute); } .s-blocked { --c: var(--violet); }
.unhealthy { color: var(--red); font-size: 12px; margin-left: 6px; }
.flash { animation: flash 1.2s ease-out; }
@keyframes flash { from { background: color-mix(in srgb, var(--yellow) 30%, transparent); } to { background: transparent; } }
.actions { text-align: right; }
button { font: inherit; font-size: 12px; padding: 4px 10px; border-radius: 6px; cursor: pointer;
         border: 1px solid var(--line); background: var(--card); color: var(--ink); }
button:hover { border-color: var(--blue); color: var(--blue); }
button.danger:hover { border-color: var(--red); color: var(--red); }
button:disabled { opacity: .5; cursor: progress; }
.actions button + button { margin-left: 4px; }
.empty { padding: 28px; text-align: center; color: var(--mute); }
.tabs { display: inline-flex; gap: 4px; margin-left: auto; }
.tabs button.on { border-color: var(--blue); color: var(--blue); }
pre { margin: 0; padding: 12px 16px; height: 300px; overflow: auto; font: 12px/1.5 var(--mono);
      white-space: pre-wrap; word-break: break-all; }
pre.err { color: var(--red); }
.hint { color: var(--mute); font-family: system-ui, sans-serif; }
ol.events { list-style: none; margin: 0; padding: 6px 0; height: 300px; overflow: auto; font-size: 13px; }
ol.events li { display: grid; grid-template-columns: 70px 90px 1fr; gap: 8px; padding: 4px 16px; }
ol.events time { color: var(--mute); font: 12px var(--mono); }
.kind { font-weight: 600; }
.k-online, .k-start { color: var(--green); } .k-exit, .k-errored, .k-spawn_error { color: var(--red); }
.k-restart, .k-stopping, .k-reload { color: var(--yellow); } .k-health { color: var(--violet); }
dialog { border: 1px solid var(--line); border-radius: 10px; background: var(--card); color: var(--ink); padding: 20px; width: 420px; }
dialog::backdrop { background: rgba(0, 0, 0, .35); }
dialog h3 { margin: 0 0 6px; }
dialog p { margin: 0 0 12px; color: var(--mute); }
dialog input { width: 100%; padding: 8px; font: 13px var(--mono); border: 1px solid var(--line); border-radius: 6px;
               background: var(--bg); color: var(--ink); }
dialog menu { display: flex; justify-content: flex-end; gap: 8px; padding: 0; margin: 14px 0 0; }
#toast { position: fixed; right: 20px; bottom: 20px; max-width: 420px; padding: 10px 14px; border-radius: 8px;
         background: var(--ink); color: var(--bg); opacity: 0; transition: opacity .2s; pointer-events: none; }
#toast.show { opacity: .95; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1><span>●</span> orch</h1>
  <span class="where" id="where"></span>
  <span class="grow"></span>
  <span class="summary" id="summary"></span>
  <span class="live" id="live">connecting</span>
  <button id="token-button" title="the token in $ORCH_HOME/http.token">Token</button>
</header>
<main>
  <section class="card wide">
    <h2>Processes</h2>
    <table>
      <thead><tr>
        <th>id</th><th>name</th><th>status</th><th class="num">pid</th><th class="num">restarts</th>
        <th class="num">uptime</th><th class="num">cpu</th><th class="num">memory</th><th></th>
      </tr></thead>
      <tbody id="procs"></tbody>
    </table>
    <div class="empty" id="empty" hidden>No processes.</div>
  </section>
  <section class="card">
    <h2><span id="log-title">Logs</span>
      <span class="tabs"><button data-stream="out" class="on">stdout</button><button data-stream="err">stderr</button></span>
    </h2>
    <pre id="log"><span class="hint">Select a process to see its logs.</span></pre>
  </section>
  <section class="card">
    <h2>Events</h2>
    <ol class="events" id="events"></ol>
  </section>
</main>
<dialog id="token-dialog">
  <form method="dialog">
    <h3>Token</h3>
    <p id="token-why">Restarting, stopping and reading logs need the token orch wrote to
      <code>$ORCH_HOME/http.token</code>. It is kept in this tab only.</p>
    <input id="token-input" autocomplete="off" spellcheck="false" placeholder="64 hex digits">
    <menu><button value="cancel" formnovalidate>Cancel</button><button value="ok" id="token-save">Save</button></menu>
  </form>
</dialog>
<div id="toast"></div>
<script>
"use strict";
const $ = (sel) => document.querySelector(sel);
const procs = new Map();          // id -> process as /api/processes gives it, plus startedAt
let selected = null, logStream = "out", logFrom = null, logTimer = null;

// ---- the token: asked once, kept in this tab's sessionStorage ----
const TOKEN_KEY = "orch.token";
const token = () => sessionStorage.getItem(TOKEN_KEY);
let tokenWaiters = [];
function askToken(why) {
  $("#token-why").textContent = why || $("#token-why").textContent;
  $("#token-input").value = token() || "";
  const d = $("#token-dialog");
  if (!d.open) d.showModal();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}
$("#token-dialog").addEventListener("close", () => {
  const d = $("#token-dialog"), value = $("#token-input").value.trim();
  if (d.returnValue === "ok" && value) sessionStorage.setItem(TOKEN_KEY, value);
  const ok = d.returnValue === "ok" && !!value;
  tokenWaiters.splice(0).forEach((w) => w(ok));
  showTokenState();
});
$("#token-button").addEventListener("click", () => askToken("The token orch wrote to $ORCH_HOME/http.token."));
function showTokenState() { $("#token-button").textContent = token() ? "Token ✓" : "Token"; }

// fetch with the token; asks for it when there is none or it was refused
async function authed(url, init = {}) {
  for (let attempt = 0; attempt < 3; attempt++) {
    if (!token() && !(await askToken())) return null;
    const r = await fetch(url, { ...init, headers: { ...(init.headers || {}), Authorization: "Bearer " + token() } });
    if (r.status !== 401) return r;
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
    if (!(await askToken("That token was refused: copy it again from $ORCH_HOME/http.token."))) return null;
  }
  return null;
}

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 4000);
}

// ---- formatting ----
function bytes(n) {
  if (n == null) return "–";
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function duration(ms) {
  if (ms == null || ms < 0) return "–";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}
const statusClass = (s) => "s-" + String(s || "stopped").split(" ")[0];
const label = (p) => p.name + ":" + p.instance;

// ---- the process table ----
function cell(tr, key) { return tr.querySelector('[data-k="' + key + '"]'); }
function row(p) {
  let tr = document.querySelector('tr[data-id="' + p.id + '"]');
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.id = p.id;
    tr.innerHTML = '<td data-k="id"></td><td class="name" data-k="name"></td><td data-k="status"></td>' +
      '<td class="num" data-k="pid"></td><td class="num" data-k="restarts"></td><td class="num" data-k="uptime"></td>' +
      '<td class="num" data-k="cpu"></td><td class="num" data-k="memory"></td><td class="actions" data-k="actions">' +
      '<button data-action="restart">Restart</button><button data-action="reload">Reload</button>' +
      '<button data-action="stop" class="danger">Stop</button><button data-action="start" hidden>Start</button></td>';
    tr.addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (b) act(b.dataset.action, Number(tr.dataset.id), b); else select(Number(tr.dataset.id));
    });
    $("#procs").appendChild(tr);
  }
  return tr;
}
function paint(p) {
  const tr = row(p);
  cell(tr, "id").textContent = p.id;
  const name = cell(tr, "name");
  name.innerHTML = "<b></b><small></small>";
  name.firstChild.textContent = p.name;
  name.lastChild.textContent = ":" + p.instance;
  const st = cell(tr, "status");
  const pill = document.createElement("span");
  pill.className = "status " + statusClass(p.status);
  pill.textContent = p.status;
  st.replaceChildren(pill);
  if (p.health === "unhealthy" || (p.health && p.health.status === "unhealthy")) {
    const u = document.createElement("span");
    u.className = "unhealthy";
    u.textContent = "unhealthy";
    st.appendChild(u);
  }
  const restarts = cell(tr, "restarts");
  if (restarts.textContent !== "" && restarts.textContent !== String(p.restarts)) {
    tr.classList.remove("flash"); void tr.offsetWidth; tr.classList.add("flash");
  }
  restarts.textContent = p.restarts;
  cell(tr, "pid").textContent = p.pid || "–";
  cell(tr, "cpu").textContent = p.cpu != null && p.status === "online" ? p.cpu + "%" : "–";
  cell(tr, "memory").textContent = p.status === "online" ? bytes(p.memory) : "–";
  const stopped = p.status === "stopped" || p.status === "errored";
  tr.querySelector('[data-action="stop"]').hidden = stopped;
  tr.querySelector('[data-action="start"]').hidden = !stopped;
  tr.querySelector('[data-action="reload"]').hidden = stopped;
  tr.classList.toggle("selected", p.id === selected);
  tickUptime(p, tr);
}
function tickUptime(p, tr) {
  cell(tr, "uptime").textContent = p.status === "online" && p.startedAt ? duration(Date.now() - p.startedAt) : "–";
}
function summary() {
  let online = 0;
  procs.forEach((p) => { if (p.status === "online") online++; });
  $("#summary").innerHTML = "<span><b></b> online</span><span><b></b> processes</span>";
  const b = $("#summary").querySelectorAll("b");
  b[0].textContent = online;
  b[1].textContent = procs.size;
  $("#empty").hidden = procs.size > 0;
}
async function refresh() {
  try {
    const r = await fetch("/api/processes");
    const reply = await r.json();
    if (!reply.ok) throw new Error(reply.error && reply.error.message);
    const seen = new Set();
    const now = Date.now();
    for (const p of reply.result) {
      seen.add(p.id);
      p.startedAt = p.uptime_ms != null ? now - p.uptime_ms : null;
      procs.set(p.id, p);
      paint(p);
    }
    for (const id of [...procs.keys()]) {
      if (!seen.has(id)) {
        procs.delete(id);
        const tr = document.querySelector('tr[data-id="' + id + '"]');
        if (tr) tr.remove();
      }
    }
    summary();
  } catch (e) {
    toast("cannot read the process list: " + e.message);
  }
}
let refreshTimer = null;
function refreshSoon() { clearTimeout(refreshTimer); refreshTimer = setTimeout(refresh, 150); }

// ---- actions ----
async function act(action, id, button) {
  const p = procs.get(id);
  button.disabled = true;
  try {
    const r = await authed("/api/" + action + "?target=" + encodeURIComponent(id), { method: "POST" });
    if (!r) return;
    const reply = await r.json().catch(() => ({}));
    if (!reply.ok) toast(action + " " + (p ? label(p) : id) + ": " + ((reply.error && reply.error.message) || r.status));
    else toast(action + " " + (p ? label(p) : id) + ": done");
  } catch (e) {
    toast(action + ": " + e.message);
  } finally {
    button.disabled = false;
    refresh();
  }
}

// ---- logs of the selected process: its end, then what is written after it ----
function select(id) {
  selected = id;
  logFrom = null;
  procs.forEach((p) => paint(p));
  const p = procs.get(id);
  $("#log-title").textContent = "Logs — " + (p ? label(p) : id);
  $("#log").textContent = "";
  pollLog();
}
document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => {
  document.querySelectorAll(".tabs button").forEach((x) => x.classList.toggle("on", x === b));
  logStream = b.dataset.stream;
  if (selected != null) select(selected);
}));
async function pollLog() {
  clearTimeout(logTimer);
  if (selected == null) return;
  const id = selected, stream = logStream;
  const url = "/api/logs?id=" + id + "&stream=" + stream + (logFrom != null ? "&from=" + logFrom : "");
  const r = await authed(url);
  if (id !== selected || stream !== logStream) return;
  if (!r) { $("#log").innerHTML = '<span class="hint">The logs need the token.</span>'; return; }
  const reply = await r.json();
  if (reply.ok) {
    const res = reply.result, pre = $("#log");
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    if (res.reset || logFrom == null) pre.textContent = "";
    if (res.text) pre.appendChild(document.createTextNode(res.text));
    if (!pre.textContent) pre.innerHTML = '<span class="hint">Nothing written yet.</span>';
    pre.classList.toggle("err", stream === "err");
    if (atEnd || logFrom == null) pre.scrollTop = pre.scrollHeight;
    logFrom = res.size;
  }
  if (!document.hidden) logTimer = setTimeout(pollLog, 1000);
}

// ---- the event stream ----
const STATUS_OF = { start: "launching", online: "online", stopping: "stopping", stopped: "stopped", errored: "errored" };
function describe(r) {
  switch (r.kind) {
    case "exit": return r.signal ? "killed by " + r.signal : "exited with code " + r.code;
    case "restart": return (r.cause || "") + (r.signal ? " (" + r.signal + ")" : r.code != null ? " (code " + r.code + ")" : "") +
      (r.reason ? ": " + r.reason : "") + (r.delay ? ", in " + r.delay + " ms" : "");
    case "errored": case "stopped": return r.reason || "";
    case "spawn_error": return r.error || "";
    case "health": return (r.healthy ? "healthy" : "unhealthy") + (r.message ? ": " + r.message : "");
    case "stopping": return r.signal ? r.signal + ", SIGKILL after " + r.kill_timeout + " ms" : "";
    case "reload": return r.step + (r.reason ? ": " + r.reason : "");
    case "scale": return r.from + " → " + r.to;
    case "config": return r.change || "";
    case "online": case "start": return r.pid ? "pid " + r.pid : "";
    default: return "";
  }
}
function addEvent(r) {
  const li = document.createElement("li");
  li.dataset.kind = r.kind;
  const t = document.createElement("time");
  t.textContent = new Date(r.time).toTimeString().slice(0, 8);
  const who = document.createElement("span");
  who.textContent = r.instance != null ? r.app + ":" + r.instance : r.app || "orch";
  const what = document.createElement("span");
  const k = document.createElement("span");
  k.className = "kind k-" + r.kind;
  k.textContent = r.kind + " ";
  what.append(k, describe(r));
  li.append(t, who, what);
  const list = $("#events");
  const atTop = list.scrollTop < 4;
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
  if (atTop) list.scrollTop = 0;
}
function follow() {
  const live = $("#live");
  // since=0: what the ring still holds first (the page keeps the last 200);
  // a reconnection asks for what it missed (Last-Event-ID)
  const es = new EventSource("/events?since=0");
  es.onopen = () => { live.className = "live on"; live.textContent = "live"; refresh(); };
  es.onmessage = (e) => {
    const r = JSON.parse(e.data);
    addEvent(r);
    // the row's copy changes at once; the list read just after says the rest
    const shown = r.id != null && procs.get(r.id);
    if (shown) {
      if (STATUS_OF[r.kind]) shown.status = STATUS_OF[r.kind];
      if (r.kind === "restart") shown.status = r.delay > 0 ? "waiting restart" : "launching";
      if (r.pid) shown.pid = r.pid;
      paint(shown);
    }
    refreshSoon();
  };
  es.onerror = () => { live.className = "live off"; live.textContent = "reconnecting"; };
}

$("#where").textContent = location.host;
showTokenState();
refresh();
follow();
setInterval(() => {
  if (document.hidden) return;
  procs.forEach((p) => { const tr = document.querySelector('tr[data-id="' + p.id + '"]'); if (tr) tickUptime(p, tr); });
}, 1000);
setInterval(() => { if (!document.hidden) refresh(); }, 5000);
document.addEventListener("visibilitychange", () => { if (!document.hidden) { refresh(); pollLog(); } });
</script>
</body>
</html>
]==]
