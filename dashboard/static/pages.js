// Keeps the Queue and Resources pages current without a reload (dashboard/pages.py renders both).
// Every `data-refresh` milliseconds it fetches the page again and brings the [data-refresh] region up to
// date. Rows carry `data-key`, values `data-field`: when the same rows come back in the same order only
// the values that changed are written, so focus and typing survive; a new order or other rows replace the
// region, except while focus or an edited number is inside it (then it waits for the next round).

const region = document.querySelector("[data-refresh]");
const every = region ? Number(region.dataset.refresh) || 2000 : 0;
let inFlight = false;

function keysOf(scope) { return [...scope.querySelectorAll("[data-key]")].map((e) => e.dataset.key).join("\n"); }

function fieldsOf(scope) {
  const out = new Map();
  for (const el of scope.querySelectorAll("[data-field]")) {
    const row = el.closest("[data-key]");
    out.set(`${row ? row.dataset.key : ""}\n${el.dataset.field}`, el);
  }
  return out;
}

function edited(input) { return input.value !== input.defaultValue; }

function busy() {
  return (region.contains(document.activeElement) && document.activeElement !== region)
    || [...region.querySelectorAll("input")].some(edited);
}

function update(mine, fresh) {
  if (mine.tagName === "INPUT") {
    if (document.activeElement !== mine && !edited(mine) && mine.defaultValue !== fresh.defaultValue) {
      mine.defaultValue = fresh.defaultValue; mine.value = fresh.defaultValue;
    }
    return;
  }
  if (mine.textContent !== fresh.textContent) mine.textContent = fresh.textContent;
  for (const name of ["datetime", "data-status"]) {  // a time's value, a status pill's colour
    if (fresh.hasAttribute(name)) mine.setAttribute(name, fresh.getAttribute(name));
  }
}

async function refresh() {
  if (inFlight || document.hidden) return;
  inFlight = true;
  try {
    // The page's own address, unless it names another (a refused form answers at its POST address).
    const source = region.dataset.source || location.pathname + location.search;
    const response = await fetch(source, { headers: { Accept: "text/html" }, cache: "no-store" });
    if (!response.ok || response.redirected) return;  // signed out: the next navigation goes to /login
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.querySelector(`[data-refresh="${region.dataset.refresh}"]`);
    if (!fresh) return;
    if (keysOf(fresh) !== keysOf(region)) {
      if (busy()) return;
      region.replaceChildren(...fresh.childNodes);
    } else {
      const mine = fieldsOf(region);
      for (const [key, el] of fieldsOf(fresh)) { if (mine.has(key)) update(mine.get(key), el); }
    }
    document.dispatchEvent(new CustomEvent("clarity:refreshed"));
  } catch { /* the next round tries again */ } finally {
    inFlight = false;
  }
}

const focusMe = document.querySelector("[data-focus-on-load]");
if (focusMe) focusMe.focus();  // the outcome of the form just sent: read first, then Tab goes on from there
if (region) setInterval(refresh, every);
