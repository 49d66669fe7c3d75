// The dashboard's forms that act through the REST API: start an execution from the overview
// (dashboard/start.py); move the stop point and override a task on an execution page (dashboard/controls.py).
// Each calls /api/devteam/... with fetch() and the session's CSRF token (X-CSRF-Token), so the page passes
// the same checks as a script; what the API answers is said in the page's live regions. The live feed
// (live.js) announces every change it applies with a `clarity:applied` event, which keeps these forms
// current. No build step, no dependencies.

const NBSP = "\u00a0";
const OVERRIDABLE = new Set(["failed", "skipped"]);  // as dashboard.controls.OVERRIDABLE

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

// -- an execution page: links, stop point, the tree's keys -----------------------------------------
const execution = document.querySelector("[data-live-page=execution]");

function showLink(name, href) {
  const item = document.querySelector(`[data-link="${name}"]`);
  if (!item || !href) return;
  item.querySelector("a").href = href;
  item.hidden = false;
}

function pageFollows(page) {
  // What live.js does not patch: the stop point, the pull request and the summary check run.
  const stopPoint = page.querySelector('[data-field="stop-point"]');
  const links = (prUrl, checkId) => {
    if (prUrl) { showLink("pr", prUrl); showLink("pr-checks", `${prUrl}/checks`); }
    if (checkId) showLink("summary-check", `${page.dataset.webUrl}/${page.dataset.repo}/runs/${checkId}`);
  };
  document.addEventListener("clarity:applied", (event) => {
    const msg = event.detail;
    if (msg.type === "snapshot" && msg.execution.id === page.dataset.execution) {
      const ex = msg.execution;
      say(stopPoint, ex.only ? `only ${ex.only}` : ex.stopPoint || "end of the list");
      links(ex.prUrl, ex.summaryCheckId);
    } else if (msg.kind === "execution.updated" && msg.execution === page.dataset.execution) {
      if ("stop_point" in msg) say(stopPoint, msg.stop_point || "end of the list");
      links(msg.pr_url, msg.summary_check_id);
    }
  });
}

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
  const titles = new Map();  // id -> title, from the task list: rows of parents the live feed adds need them too

  function fillTitles() {
    const body = document.querySelector("#tasks tbody");
    for (const cell of body ? body.querySelectorAll('tr[data-task] [data-field="title"]') : []) {
      const title = titles.get(cell.parentElement.dataset.task);
      if (title && !cell.textContent) cell.textContent = title;
    }
  }

  async function loadList() {
    // The whole list of the execution's branch (before its first push: the base branch's): any task may be the stop point.
    let answer = await call("GET", tasksUrl(page.dataset.repo, page.dataset.branch));
    if (!answer.ok && answer.status === 404) answer = await call("GET", tasksUrl(page.dataset.repo, page.dataset.base));
    if (!answer.ok) return;
    const current = select.dataset.current || select.value;  // the execution's stop point, else the choice
    select.replaceChildren(...answer.data.tasks.map(taskOption));
    select.value = answer.data.tasks.some((t) => t.id === current) ? current : select.options[0]?.value ?? "";
    for (const task of answer.data.tasks) titles.set(task.id, task.title);
    fillTitles();
  }

  document.addEventListener("clarity:applied", (event) => {
    const msg = event.detail;
    if (msg.execution !== page.dataset.execution) return;
    if (msg.kind === "task.status") fillTitles();
    if (msg.kind === "execution.updated" && "stop_point" in msg) select.dataset.current = msg.stop_point || "";
    if (msg.kind === "execution.status" && (msg.to === "paused" || msg.to === "blocked")) loadList();  // ticks moved on
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say(problem, "");
    const answer = await call("POST", form.dataset.api, steer.dataset.csrf, { stopPoint: select.value });
    if (!answer.ok) { say(said, ""); say(problem, answer.message); return; }
    select.dataset.current = answer.data.stopPoint || "";
    say(page.querySelector('[data-field="stop-point"]'), answer.data.stopPoint || "end of the list");
    const waiting = answer.data.status === "paused" || answer.data.status === "blocked";
    say(said, `The execution now stops after task ${answer.data.stopPoint}${waiting ? ": press Resume to run on" : ""}.`);
  });
  loadList();
}

function overrideControls(page, steer, problem, said) {
  const form = document.getElementById("override-form");
  const select = form.elements.taskId;
  const when = form.dataset.showWhen.split(" ");
  const refresh = () => { form.hidden = !when.includes(page.dataset.status) || select.options.length === 0; };

  document.addEventListener("clarity:applied", (event) => {
    const msg = event.detail;
    if (msg.kind === "task.status" && msg.execution === page.dataset.execution) {
      const option = [...select.options].find((o) => o.value === msg.task);
      if (OVERRIDABLE.has(msg.to) && !option) select.append(new Option(msg.task, msg.task));
      if (!OVERRIDABLE.has(msg.to) && option) option.remove();
    }
    refresh();
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
  pageFollows(execution);
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
