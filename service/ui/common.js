// The stagetune results page: jobs, their three stage answers, editable and saved as profiles.
// Everything comes from the service's API with the bearer token the person gives; data is put
// on the page as text, never as HTML.
"use strict";

const TOKEN_KEY = "stagetune-token";
const view = document.getElementById("view");
let timer = null; // the current view's refresh

// --- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const detail = body && typeof body === "object" ? body.detail : body;
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body, accept = "application/json") {
  const headers = { Accept: accept };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (answer.status === 401) {
    askForToken(token ? "That token was refused." : "");
    throw new ApiError(401, "a token is needed");
  }
  const text = await answer.text();
  const isJson = (answer.headers.get("content-type") || "").includes("json");
  const data = isJson && text ? JSON.parse(text) : text;
  if (!answer.ok) throw new ApiError(answer.status, data);
  return { status: answer.status, data };
}

function askForToken(problem) {
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-problem").textContent = problem;
  if (!dialog.open) dialog.showModal();
}

document.getElementById("token-form").addEventListener("submit", () => {
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  document.getElementById("forget-token").hidden = false;
  route();
});
document.getElementById("forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});
document.getElementById("forget-token").hidden = !sessionStorage.getItem(TOKEN_KEY);

// --- small helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function seconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function number(x, digits = 3) {
  if (x === null || x === undefined) return "";
  if (Math.abs(x) >= 1000) {
    return new Intl.NumberFormat("en", { notation: "compact", maximumSignificantDigits: digits }).format(x);
  }
  return String(Number(Number(x).toPrecision(digits)));
}

// a figure for people: three significant digits, thousands grouped (1,940; 0.302; 58,772)
function figure(x, digits = 3) {
  if (x === null || x === undefined || !Number.isFinite(Number(x))) return "";
  const n = Number(x);
  if (Math.abs(n) >= 10 ** digits) return Math.round(n).toLocaleString("en");
  if (n !== 0 && Math.abs(n) < 1e-3) return n.toExponential(digits - 1).replace(/\.?0+e/, "e");
  return new Intl.NumberFormat("en", { maximumSignificantDigits: digits }).format(n);
}

// the loss as the job's log writes it: four decimals
function loss(x) {
  return x === null || x === undefined || !Number.isFinite(x) ? "" : x.toFixed(4);
}

function minutes(m) {
  if (m === null || m === undefined) return "";
  return m >= 180 ? `${figure(m / 60)} h` : `${figure(m)} min`;
}

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

function when(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleString();
}

function stateBadge(state) {
  return el("span", { class: `state ${state}`, "data-state": state }, state);
}

function progressText(progress) {
  const parts = [];
  for (const [stage, searches] of Object.entries(progress || {})) {
    for (const [search, p] of Object.entries(searches)) {
      const done = p.done ?? 0;
      const total = p.total ? `/${p.total}` : "";
      parts.push(`${stage} ${search}: ${done}${total}${p.running ? ` (+${p.running} running)` : ""}`);
    }
  }
  return parts.join("; ");
}

function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}


// --- routing -------------------------------------------------------------------------------

function route() {
  clearInterval(timer);
  timer = null;
  const hash = location.hash || "#/";
  const current = hash.startsWith("#/profiles") ? "profiles" : "jobs";
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("current", link.dataset.nav === current);
  }
  const job = hash.match(/^#\/jobs\/([A-Za-z0-9_.-]+)$/);
  if (job) return showJob(job[1]);
  if (hash.startsWith("#/profiles")) return showProfiles();
  return showJobs();
}
window.addEventListener("hashchange", route);

function useTemplate(id) {
  view.replaceChildren(document.getElementById(id).content.cloneNode(true));
}
