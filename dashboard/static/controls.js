// The dashboard's forms that act through the REST API: start an execution from the overview
// (dashboard/start.py); move the stop point and override a task on an execution page (dashboard/controls.py).
// Each calls /api/devteam/... with fetch() and the session's CSRF token (X-CSRF-Token), so the page passes
// the same checks as a script; what the API answers is said in the page's live regions. The live feed
// (live.js) leaves these forms to this script: after each re-render (`clarity:rendered`, with the server's
// fresh page) they take from it where they apply, the stop point and the tasks one may override.
// No build step, no dependencies.

const NBSP = "\u00a0";
const SETTLED = new Set(["paused", "blocked", "completed", "failed", "stopped"]);  // as ExecutionStatus.is_settled

async function call(method, url, csrf, body) {
  // {ok, status, data} or {ok: false, status, message}: the API's `message` is written for people.
  const headers = { Accept: "application/json" };
  if (csrf) headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, { method, headers, credentials: "same-origin",
                                  body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    return { ok: false, status: 0, message: "The dashboard could not be reached: check the connection and try again." };
  }
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (response.ok) return { ok: true, status: response.status, data };
  return { ok: false, status: response.status, message: (data && data.message) || `${response.status} ${response.statusText}` };
}

function tasksUrl(repository, ref) {
  const [owner, name] = repository.split("/");
  const query = ref ? `?ref=${encodeURIComponent(ref)}` : "";
  return `/api/devteam/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}/tasks${query}`;
}

function taskOption(task) {
  const option = document.createElement("option");
  option.value = task.id;
  option.dataset.level = String(task.level);
  option.textContent = `${NBSP.repeat(2 * (task.level - 1))}${task.id} ${task.title}${task.done ? " (done)" : ""}`;
  return option;
}

function say(node, text) { if (node) node.textContent = text; }

// -- the overview: start an execution --------------------------------------------------------------
const startForm = document.getElementById("start-form");

function startControls(form) {
  const repo = form.elements.repository;
  const stop = form.elements.stopPoint;
  const problem = document.getElementById("start-problem");
  const said = document.getElementById("start-said");
  let asked = 0;

  repo.addEventListener("change", async () => {
    const mine = ++asked;
    stop.replaceChildren(new Option("End of the list", ""));
    stop.disabled = true;
    say(problem, "");
    if (!repo.value) { say(said, ""); return; }
    say(said, `Reading the task list of ${repo.value}…`);
    const answer = await call("GET", tasksUrl(repo.value));
    if (mine !== asked) return;  // another repository was chosen meanwhile
    if (!answer.ok) { say(said, ""); say(problem, answer.message); return; }
    for (const task of answer.data.tasks) stop.append(taskOption(task));
    stop.disabled = false;
    say(said, `${answer.data.tasks.length} tasks and groups in ${answer.data.file} on ${answer.data.ref}: pick where to stop.`);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { repository: repo.value };
    if (stop.value) body.stopPoint = stop.value;
    if (form.elements.tool.value) body.tool = form.elements.tool.value;
    if (form.elements.priority.value) body.priority = Number(form.elements.priority.value);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    say(problem, "");
    say(said, `Starting an execution on ${repo.value}…`);
    const answer = await call("POST", form.dataset.api, form.dataset.csrf, body);
    if (answer.ok) { location.assign(`/executions/${encodeURIComponent(answer.data.id)}`); return; }
    button.disabled = false;
    say(said, "");
    say(problem, answer.message);
  });
}

if (startForm) startControls(startForm);

// -- an execution page: the tree's keys, the stop-point and override forms -------------------------
const execution = document.querySelector("[data-live-page=execution]");

function treeKeys(table) {
  // A treegrid moves between rows with the arrow keys, Home and End; Tab enters it at one row.
  const rows = () => [...table.tBodies[0].rows];
  const entry = () => {  // exactly one row takes Tab; rows the live feed adds join with -1
    const all = rows();
    for (const row of all) if (row.tabIndex !== 0) row.tabIndex = -1;
    if (all.length && !all.some((row) => row.tabIndex === 0)) all[0].tabIndex = 0;
  };
  entry();
  new MutationObserver(entry).observe(table.tBodies[0], { childList: true });
  table.addEventListener("keydown", (event) => {
    const all = rows();
    const at = all.indexOf(event.target);
    if (at < 0) return;
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: all.length - 1 }[event.key];
    if (to === undefined || !all[to]) return;
    event.preventDefault();
    event.target.tabIndex = -1;
    all[to].tabIndex = 0;
    all[to].focus();
  });
}

// -- an execution page: the stop-point and override forms ------------------------------------------
function stopPointControls(page, steer, problem, said) {
  const form = document.getElementById("stop-point-form");
  const select = form.elements.stopPoint;

  async function loadList() {
    // The whole list of the execution's branch (before its first push: the base branch's): any task may be the stop point.
    let answer = await call("GET", tasksUrl(page.dataset.repo, page.dataset.branch));
    if (!answer.ok && answer.status === 404) answer = await call("GET", tasksUrl(page.dataset.repo, page.dataset.base));
    if (!answer.ok) return;
    const current = select.dataset.current || select.value;  // the execution's stop point, else the choice
    select.replaceChildren(...answer.data.tasks.map(taskOption));
    select.value = answer.data.tasks.some((t) => t.id === current) ? current : select.options[0]?.value ?? "";
  }

  let seen = page.dataset.status;
  document.addEventListener("clarity:rendered", (event) => {
    // The server's rendering of the form says where it applies and what the stop point is now.
    const fresh = event.detail.fresh.querySelector("#stop-point-form");
    if (!fresh) return;
    form.hidden = fresh.hidden;
    const now = fresh.elements.stopPoint.dataset.current;
    if (now !== select.dataset.current) {
      const untouched = select.value === select.dataset.current;
      select.dataset.current = now;
      if (untouched && [...select.options].some((o) => o.value === now)) select.value = now;
    }
    // Once the execution settles (paused, blocked, ended), read the list again: the tasks ticked since are
    // "(done)" in it. Not on every tick: each reading costs GitHub two requests, for every person watching.
    const status = event.detail.fresh.dataset.status;
    if (status !== seen) {
      seen = status;
      if (SETTLED.has(status)) loadList();
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say(problem, "");
    const answer = await call("POST", form.dataset.api, steer.dataset.csrf, { stopPoint: select.value });
    if (!answer.ok) { say(said, ""); say(problem, answer.message); return; }
    select.dataset.current = answer.data.stopPoint || "";
    const waiting = answer.data.status === "paused" || answer.data.status === "blocked";
    say(said, `The execution now stops after task ${answer.data.stopPoint}${waiting ? ": press Resume to run on" : ""}.`);
  });
  loadList();
}

function overrideControls(page, steer, problem, said) {
  const form = document.getElementById("override-form");
  const select = form.elements.taskId;

  document.addEventListener("clarity:rendered", (event) => {
    // The tasks a person may settle now, and whether the form applies, as the server renders them.
    const fresh = event.detail.fresh.querySelector("#override-form");
    if (!fresh) return;
    const wanted = [...fresh.elements.taskId.options].map((o) => o.value);
    if (wanted.join("\n") !== [...select.options].map((o) => o.value).join("\n")) {
      const chosen = select.value;
      select.replaceChildren(...wanted.map((id) => new Option(id, id)));
      if (wanted.includes(chosen)) select.value = chosen;
    }
    form.hidden = fresh.hidden;
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say(problem, "");
    const task = select.value;
    const action = form.elements.action.value;
    const answer = await call("POST", form.dataset.api, steer.dataset.csrf, { taskId: task, action });
    if (!answer.ok) { say(said, ""); say(problem, answer.message); return; }
    say(said, `Task ${task} marked ${action}.`);
  });
}

if (execution) {
  const table = document.getElementById("tasks");
  if (table) treeKeys(table);
  const steer = document.getElementById("steer");
  if (steer) {
    const problem = document.getElementById("steer-problem");
    const said = document.getElementById("steer-said");
    stopPointControls(execution, steer, problem, said);
    overrideControls(execution, steer, problem, said);
  }
}
