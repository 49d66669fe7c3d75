// The live dashboard: keeps the overview and an execution page current without reloading.
// Protocol and scoping: dashboard/live.py. No build step, no dependencies.
// A WebSocket on /live (reconnects with backoff and catches up from its cursors); where sockets fail
// three times in a row before saying hello, it polls /live/poll every 5 s instead.
//
// An event says *that* something changed; the page then asks the server for itself again and brings its DOM
// up to what came back (`morph`): rows that entered scope appear, banners that ended go, counters and cells
// follow, and the page a person watches is the page a reload would show, because both are the server's one
// rendering (dashboard/execview.py, templates/execution.html, templates/overview.html). Parts marked
// `data-live-skip` belong to scripts (the log, the forms, the follow button) and are left alone; the log
// takes the lines that came back after its own, and keeps as many as the server shows.

const BACKOFF = [500, 1000, 2000, 4000, 8000, 15000];
const POLL_MS = 5000;
// At most one re-render this often: an agent's burst of lines costs one fetch; the overview (up to 200 rows,
// every customer's events) less often than one execution's page.
const RENDER_GAP_MS = { execution: 400, overview: 1000 };
const CLIENT_ATTRIBUTES = new Set(["tabindex"]);  // attributes scripts own on server-rendered elements

const root = document.querySelector("[data-live-page]");
const page = root ? root.dataset.livePage : null;
const state = {
  cursors: {},           // execution id -> newest stream id seen (execution page), for the socket's catch-up
  since: null,           // server time: snapshots of executions changed after it (overview)
  failures: 0,
  polling: false,
  follow: true,
};
const render = { wanted: false, inFlight: false, last: 0, timer: null, failures: 0 };

function compareIds(a, b) {
  const [am, as] = (a || "-1-0").split("-").map(Number);
  const [bm, bs] = (b || "-1-0").split("-").map(Number);
  return am === bm ? as - bs : am - bm;
}

function setText(node, text) { if (node && node.textContent !== text) node.textContent = text; }

// -- bringing the DOM up to the server's rendering -------------------------------------------------
function keyOf(node) {
  if (node.nodeType !== Node.ELEMENT_NODE) return null;
  const d = node.dataset;
  return d.key ?? d.task ?? d.execution ?? d.count ?? d.repo ?? d.installation ?? (node.id || null);
}

function sameKind(a, b) {
  return a.nodeType === b.nodeType && (a.nodeType !== Node.ELEMENT_NODE || (a.tagName === b.tagName && keyOf(a) === keyOf(b)));
}

function syncAttributes(mine, fresh) {
  for (const { name, value } of [...fresh.attributes]) {
    if (!CLIENT_ATTRIBUTES.has(name) && mine.getAttribute(name) !== value) mine.setAttribute(name, value);
  }
  for (const { name } of [...mine.attributes]) {
    if (!CLIENT_ATTRIBUTES.has(name) && !fresh.hasAttribute(name)) mine.removeAttribute(name);
  }
}

function morph(mine, fresh) {
  // Change `mine` as little as makes it `fresh`: kept elements keep their focus and their scripts' state.
  if (mine.nodeType !== Node.ELEMENT_NODE) {
    if (mine.nodeValue !== fresh.nodeValue) mine.nodeValue = fresh.nodeValue;
    return;
  }
  if (mine.hasAttribute("data-live-skip")) return;
  syncAttributes(mine, fresh);
  const kept = [...mine.childNodes];
  let at = 0;
  for (const next of [...fresh.childNodes]) {
    const key = keyOf(next);
    let match = null;
    if (key !== null) {
      match = kept.find((node, i) => i >= at && sameKind(node, next));
    } else if (kept[at] && sameKind(kept[at], next)) {
      match = kept[at];
    }
    if (match) {
      const i = kept.indexOf(match);
      if (i !== at) { mine.insertBefore(match, kept[at] || null); kept.splice(i, 1); kept.splice(at, 0, match); }
      morph(match, next);
    } else {
      const made = document.importNode(next, true);
      mine.insertBefore(made, kept[at] || null);
      kept.splice(at, 0, made);
    }
    at += 1;
  }
  for (const extra of kept.slice(at)) extra.remove();
}

function takeLog(fresh) {
  // The lines the server shows after ours, then as many of the newest as it keeps (a reload's window).
  const mine = document.getElementById("log");
  const theirs = fresh.querySelector("#log");
  if (!mine || !theirs) return;
  const last = mine.lastElementChild ? mine.lastElementChild.dataset.id : "";
  const added = [...theirs.children].filter((line) => compareIds(line.dataset.id, last) > 0);
  for (const line of added) mine.append(document.importNode(line, true));
  const limit = Number(theirs.dataset.limit || mine.dataset.limit || 300);
  while (mine.children.length > limit) mine.firstElementChild.remove();
  if (added.length && state.follow) mine.scrollTop = mine.scrollHeight;
  const newest = mine.lastElementChild ? mine.lastElementChild.dataset.id : "";
  if (newest && compareIds(newest, state.cursors[root.dataset.execution]) > 0) state.cursors[root.dataset.execution] = newest;
}

function wantRender() {
  render.wanted = true;
  pump();
}

function pump() {
  if (render.inFlight || !render.wanted || render.timer || document.hidden) return;  // a hidden tab catches up when shown
  const wait = render.last + (RENDER_GAP_MS[page] || 1000) - Date.now();
  if (wait > 0) { render.timer = setTimeout(() => { render.timer = null; pump(); }, wait); return; }
  render.wanted = false;
  render.inFlight = true;
  render.last = Date.now();
  fetch(location.pathname + location.search, { headers: { Accept: "text/html" }, cache: "no-store" })
    .then((r) => (r.ok && !r.redirected ? r.text() : Promise.reject(new Error(r.statusText))))  // redirected: signed out
    .then((html) => {
      const fresh = new DOMParser().parseFromString(html, "text/html").querySelector(`[data-live-page="${page}"]`);
      if (!fresh) return;
      if (page === "execution") takeLog(fresh);
      morph(root, fresh);
      document.dispatchEvent(new CustomEvent("clarity:rendered", { detail: { fresh } }));
    })
    .then(() => { render.failures = 0; })
    .catch(() => {
      // The server away or failing: try again later (a minute at most between tries), or at the next event.
      render.failures += 1;
      setTimeout(wantRender, Math.min(60_000, 1000 * 2 ** render.failures));
    })
    .finally(() => { render.inFlight = false; pump(); });
}

// -- what a message means for this page -------------------------------------------------------------
function executionOf(msg) {
  if (msg.execution && typeof msg.execution === "object") return msg.execution.id;
  return msg.execution ?? msg.executionId ?? null;
}

function apply(msg) {
  if (msg.type === "hello") { state.since = msg.time; return; }
  if (msg.type === "ping" || msg.type === "resync" || msg.type === "poll") return;
  if (page === "overview") {
    if (msg.time && (state.since === null || msg.time > state.since)) state.since = msg.time;
    wantRender();
  } else if (page === "execution") {
    const id = executionOf(msg);
    if (id !== root.dataset.execution) return;
    if (msg.id && compareIds(msg.id, state.cursors[id]) > 0) state.cursors[id] = msg.id;
    wantRender();
  }
  document.dispatchEvent(new CustomEvent("clarity:applied", { detail: msg }));
}

document.addEventListener("visibilitychange", pump);

// -- the log's follow toggle -------------------------------------------------------------------------
const logBox = document.getElementById("log");
const followButton = document.getElementById("follow");
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
