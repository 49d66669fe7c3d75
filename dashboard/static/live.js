// The live dashboard: keeps the overview and an execution page current without reloading.
// Protocol and scoping: dashboard/live.py. No build step, no dependencies.
// A WebSocket on /live (reconnects with backoff and catches up from its cursors); where sockets fail
// three times in a row before saying hello, it polls /live/poll every 5 s instead.

const script = document.querySelector("script[data-badges]");  // module scripts have no currentScript
const BADGES = JSON.parse((script && script.dataset.badges) || "{}");
const ACTIVE = new Set(["initializing", "autonomous", "task-executing", "error-solving"]);
const BACKOFF = [500, 1000, 2000, 4000, 8000, 15000];
const POLL_MS = 5000;

const root = document.querySelector("[data-live-page]");
const page = root ? root.dataset.livePage : null;
const state = {
  cursors: {},           // execution id -> newest stream id applied (execution page)
  since: null,           // server time: snapshots of executions changed after it (overview)
  failures: 0,
  polling: false,
  refreshing: null,      // pending overview refresh (a new execution appeared)
  held: [],              // messages that arrived while the overview was being refreshed
  missing: new Set(),    // executions without a row that asked for a refresh
  absent: new Set(),     // executions still without a row after one (beyond the overview's 200)
  follow: true,
};

function compareIds(a, b) {
  const [am, as] = (a || "-1-0").split("-").map(Number);
  const [bm, bs] = (b || "-1-0").split("-").map(Number);
  return am === bm ? as - bs : am - bm;
}

function etaText(seconds) {  // as clarity.eta.eta_text
  const minutes = Math.max(Math.floor(seconds / 60 + 0.5), 1);
  return minutes < 60 ? `about ${minutes} min` : `about ${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function field(scope, name) { return scope.querySelector(`[data-field="${name}"]`); }

function setText(node, text) { if (node && node.textContent !== text) node.textContent = text; }

// -- shared by both pages --------------------------------------------------------------------------
function setStatus(scope, status) {
  if (!status || scope.dataset.status === status) return;
  if (page === "overview") bumpCount(scope.dataset.status, -1);
  if (page === "overview") bumpCount(status, +1);
  scope.dataset.status = status;
  setText(field(scope, "badge"), BADGES[status] || "");
  setText(field(scope, "status-word"), status);
  if (page !== "execution") return;
  for (const form of document.querySelectorAll("form[data-when]")) {
    form.hidden = !form.dataset.when.split(" ").includes(status);
  }
}

function setProgress(scope, done, total) {
  if (done === undefined && total === undefined) return;
  const text = field(scope, "progress");
  if (!text) return;
  const [oldDone, oldTotal] = text.textContent.split("/").map(Number);
  done = done ?? oldDone; total = total ?? oldTotal;
  setText(text, `${done}/${total}`);
  const bar = scope.querySelector("[role=progressbar]");
  if (bar) {
    bar.setAttribute("aria-valuenow", done); bar.setAttribute("aria-valuemax", total);
    bar.firstElementChild.style.width = total ? `${(100 * done) / total}%` : "0%";
  }
}

function setEta(row) {
  const cell = field(row, "eta");
  if (!cell) return;
  const [done, total] = field(row, "progress").textContent.split("/").map(Number);
  const left = Math.max(total - done, 0) || 1;
  setText(cell, ACTIVE.has(row.dataset.status) ? `${etaText(left * Number(row.dataset.taskSeconds))} left` : "");
}

function bumpCount(status, by) {
  const item = document.querySelector(`[data-count="${status}"] .n`);
  if (!item) return;
  const n = Math.max(Number(item.textContent) + by, 0);
  item.textContent = String(n);
  item.parentElement.classList.toggle("zero", n === 0);
}

// -- the overview ----------------------------------------------------------------------------------
function overviewApply(msg) {
  const ex = msg.type === "snapshot" ? msg.execution : msg;
  const id = msg.type === "snapshot" ? ex.id : msg.execution;
  const row = document.querySelector(`tr[data-execution="${CSS.escape(id)}"]`);
  if (!row) {
    if (!state.absent.has(id)) { state.missing.add(id); refreshOverview(); }
    return;
  }
  // Skip what the row already shows something newer than (a refresh may overtake held events).
  const when = msg.type === "snapshot" ? ex.updatedAt : msg.time;
  if (when && Number(row.dataset.updated || 0) > when) return;
  if (when) row.dataset.updated = String(when);
  setStatus(row, ex.status);
  if (msg.type === "snapshot") {
    setProgress(row, ex.tasksCompleted, ex.tasksTotal);
    setText(field(row, "current-task"), ex.currentTask || "");
    row.dataset.attempts = String(ex.attempts ?? 0);
  } else {
    setProgress(row, msg.tasks_completed, msg.tasks_total);  // execution.updated, or fields of a transition
    if ("attempts" in msg) row.dataset.attempts = String(msg.attempts);
    if ("current_task" in msg) setText(field(row, "current-task"), msg.current_task || "");
  }
  setEta(row);
  setSuccess(row);
}

function setSuccess(row) {
  // Tasks completed per agent attempt, as the server renders it (Execution.success_rate).
  const cell = field(row, "success");
  if (!cell) return;
  const attempts = Number(row.dataset.attempts || 0);
  const done = Number(field(row, "progress").textContent.split("/")[0]);
  setText(cell, attempts ? `${Math.floor((100 * done) / attempts)}%` : "—");
}

function refreshOverview() {
  // A new execution (or customer, or repository): the server renders the groups; events held meanwhile
  // are applied on top, and each row skips those older than what it shows (data-updated).
  if (state.refreshing) return;
  state.refreshing = fetch(location.pathname, { headers: { Accept: "text/html" } })
    .then((r) => (r.ok ? r.text() : Promise.reject(new Error(r.statusText))))
    .then((html) => {
      const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live-page]");
      if (fresh) root.replaceChildren(...fresh.childNodes);
    })
    .catch(() => {})
    .finally(() => {
      state.refreshing = null;
      for (const id of state.missing) {
        if (!document.querySelector(`tr[data-execution="${CSS.escape(id)}"]`)) state.absent.add(id);
      }
      state.missing.clear();
      const held = state.held.splice(0);
      for (const msg of held) apply(msg);
    });
}

// -- an execution page -----------------------------------------------------------------------------
const logBox = document.getElementById("log");
const followButton = document.getElementById("follow");

function executionApply(msg) {
  const id = msg.type === "snapshot" ? msg.execution.id : msg.execution;
  if (id !== root.dataset.execution) return;
  if (msg.type === "snapshot") {
    const ex = msg.execution;
    setStatus(root, ex.status);
    setProgress(root, ex.tasksCompleted, ex.tasksTotal);
    setText(field(root, "reason"), ex.reason ? `: ${ex.reason}` : "");
    return;
  }
  if (msg.id) {
    if (state.cursors[id] && compareIds(msg.id, state.cursors[id]) <= 0) return;  // seen already
    state.cursors[id] = msg.id;
    appendLog(msg);
  }
  setStatus(root, msg.kind === "execution.status" ? msg.to : msg.status);
  if (msg.kind === "execution.status") setText(field(root, "reason"), msg.reason ? `: ${msg.reason}` : "");
  if (msg.kind.startsWith("execution.")) setProgress(root, msg.tasks_completed, msg.tasks_total);
  if (msg.kind === "task.status") setTask(msg);
}

// The task table is a tree (templates/execution.html): each id under its parent, a row for each parent the
// engine's table does not hold (its status: the tasks under it that are done).
const TASK_CELLS = 10;  // the columns of the execution page's task tree

function levelOf(id) { return id.split(".").length; }

function ancestorsOf(id) {  // "2.3.1" -> ["2", "2.3"]
  const parts = id.split(".");
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join("."));
}

function taskRow(body, id) { return body.querySelector(`tr[data-task="${CSS.escape(id)}"]`); }

function treeRow(id, group) {
  const row = document.createElement("tr");
  row.dataset.task = id;
  if (group) row.dataset.group = "";
  row.setAttribute("aria-level", String(levelOf(id)));
  row.tabIndex = -1;
  const names = [null, "title", "task-status", "attempts"];
  for (let i = 0; i < (group ? 4 : TASK_CELLS); i++) {
    const td = document.createElement("td");
    if (names[i]) td.dataset.field = names[i];
    row.append(td);
  }
  row.cells[0].className = "task-id";
  row.cells[0].style.paddingLeft = `${0.6 + 1.2 * (levelOf(id) - 1)}rem`;
  row.cells[0].textContent = id;
  if (group) row.cells[3].colSpan = TASK_CELLS - 3;
  return row;
}

function placeRow(body, row) {
  // After the last row under the nearest parent already shown, so a family stays together; else at the end.
  const id = row.dataset.task;
  const parent = ancestorsOf(id).reverse().find((p) => taskRow(body, p));
  const family = parent
    ? [...body.rows].filter((r) => r.dataset.task === parent || r.dataset.task.startsWith(`${parent}.`)) : [];
  if (family.length) family[family.length - 1].after(row); else body.append(row);
}

function countUnder(body, id) {
  for (const parent of ancestorsOf(id)) {
    const row = body.querySelector(`tr[data-task="${CSS.escape(parent)}"][data-group]`);
    if (!row) continue;
    const below = [...body.rows].filter((r) => !("group" in r.dataset) && r.dataset.task.startsWith(`${parent}.`));
    const done = below.filter((r) => field(r, "task-status").textContent === "completed").length;
    setText(field(row, "task-status"), `${done}/${below.length} done`);
  }
}

function setTask(msg) {
  const body = document.querySelector("#tasks tbody");
  let row = taskRow(body, msg.task);
  if (!row) {
    for (const parent of ancestorsOf(msg.task)) {
      if (!taskRow(body, parent)) placeRow(body, treeRow(parent, true));
    }
    row = treeRow(msg.task, false);
    setText(field(row, "title"), msg.title || "");
    setText(field(row, "attempts"), "0");
    placeRow(body, row);
  }
  setText(field(row, "task-status"), msg.to);
  if (msg.attempts !== undefined) setText(field(row, "attempts"), String(msg.attempts));
  countUnder(body, msg.task);
}

function appendLog(msg) {
  if (!logBox) return;
  const line = document.createElement("span");
  line.dataset.id = msg.id;
  line.textContent = `${msg.kind} ${msg.task || ""} ${msg.message || msg.reason || msg.to || ""}\n`;
  logBox.append(line);
  if (state.follow) logBox.scrollTop = logBox.scrollHeight;
}

if (followButton && logBox) {
  followButton.hidden = false;
  logBox.scrollTop = logBox.scrollHeight;
  followButton.addEventListener("click", () => {
    state.follow = !state.follow;
    followButton.setAttribute("aria-pressed", String(state.follow));  // a toggle: its name stays, its state changes
    if (state.follow) logBox.scrollTop = logBox.scrollHeight;
  });
}

// -- the feed --------------------------------------------------------------------------------------
function apply(msg) {
  if (msg.type === "hello") { state.since = msg.time; return; }
  if (msg.type === "ping" || msg.type === "resync") return;
  if (page === "overview") {
    if (state.refreshing) { state.held.push(msg); return; }
    if (msg.time && (state.since === null || msg.time > state.since)) state.since = msg.time;
    overviewApply(msg);
  } else if (page === "execution") {
    executionApply(msg);
  }
  document.dispatchEvent(new CustomEvent("clarity:applied", { detail: msg }));
}

function say(text) { setText(document.getElementById("live-state"), text); }

function hello() {
  if (page === "execution") return { cursors: { [root.dataset.execution]: state.cursors[root.dataset.execution] || "" } };
  return { since: state.since };
}

function connect() {
  if (!("WebSocket" in window)) { startPolling(); return; }
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/live`;
  const ws = new WebSocket(url);
  let greeted = false;
  let full = false;  // the server has no room for another socket: poll
  ws.onopen = () => ws.send(JSON.stringify(hello()));
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "hello") { greeted = true; state.failures = 0; say("Live"); }
    if (msg.type === "poll") full = true;
    apply(msg);
  };
  ws.onclose = () => {
    state.failures = greeted ? 1 : state.failures + 1;
    if (full || (!greeted && state.failures >= 3)) { startPolling(); return; }
    const delay = BACKOFF[Math.min(state.failures - 1, BACKOFF.length - 1)] * (0.75 + Math.random() / 2);
    say(`Reconnecting in ${Math.round(delay / 1000) || 1} s`);
    setTimeout(connect, delay);
  };
}

async function pollOnce() {
  const params = new URLSearchParams();
  if (page === "execution") {
    params.set("execution", root.dataset.execution);
    params.set("after", state.cursors[root.dataset.execution] || "");
  } else if (state.since !== null) {
    params.set("since", String(state.since));
  }
  try {
    const response = await fetch(`/live/poll?${params}`, { headers: { Accept: "application/json" } });
    if (response.ok) {
      const body = await response.json();
      for (const msg of body.messages) apply(msg);
      state.since = body.time;
    }
  } catch { /* the next poll tries again */ }
}

function startPolling() {
  if (state.polling) return;
  state.polling = true;
  say(`Updating every ${POLL_MS / 1000} s`);
  pollOnce();
  setInterval(pollOnce, POLL_MS);
}

if (page) {
  if (page === "execution") state.cursors[root.dataset.execution] = root.dataset.cursor || "";
  if (page === "overview" && root.dataset.since) state.since = Number(root.dataset.since);
  const forced = new URLSearchParams(location.search).get("live");
  if (forced === "poll") startPolling(); else connect();
}
