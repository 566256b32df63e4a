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

// --- jobs ----------------------------------------------------------------------------------

async function showJobs() {
  useTemplate("jobs-view");
  const form = document.getElementById("new-job");
  try {
    fillForm(form, (await api("GET", "/choices")).data);
  } catch (error) {
    if (error.status !== 401) document.getElementById("new-job-problem").textContent = error.message;
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); startJob(form); });
  await refreshJobs();
  timer = setInterval(refreshJobs, 2000);
}

function fillForm(form, choices) {
  const preset = form.elements.preset;
  preset.replaceChildren(...Object.keys(choices.presets).map((p) => el("option", { value: p }, p)));
  preset.value = choices.presets.quick ? "quick" : preset.options[0]?.value;
  const stages = form.querySelector("fieldset.stages");
  for (const stage of choices.stages) {
    stages.append(el("label", {}, el("input", { type: "checkbox", name: "stages", value: stage, checked: true }), stage));
  }
  document.getElementById("data-roots").replaceChildren(
    el("option", { value: "synthetic" }),
    ...choices.data_roots.map((root) => el("option", { value: root })),
  );
  const applyPreset = () => {
    const options = choices.presets[preset.value] || {};
    for (const name of ["fit_trials", "tune_trials", "max_concurrent", "grace_period"]) {
      if (options[name] !== undefined) form.elements[name].value = options[name];
    }
    const factor = String(Math.round(options.reduction_factor ?? 3));
    form.elements.reduction_factor.value = ["2", "3", "4"].includes(factor) ? factor : "3";
    if (options.tune !== undefined) form.elements.tune.checked = Boolean(options.tune);
  };
  preset.addEventListener("change", applyPreset);
  applyPreset();
}

async function startJob(form) {
  const problem = document.getElementById("new-job-problem");
  problem.textContent = "";
  const f = form.elements;
  const body = {
    preset: f.preset.value,
    stages: [...form.querySelectorAll("input[name=stages]:checked")].map((i) => i.value),
    data: f.data.value.trim() || "synthetic",
    tune: f.tune.checked,
    reduction_factor: Number(f.reduction_factor.value),
  };
  for (const name of ["fit_trials", "tune_trials", "max_concurrent", "grace_period"]) {
    if (f[name].value !== "") body[name] = Number(f[name].value);
  }
  try {
    const { data } = await api("POST", "/optimize", body);
    location.hash = `#/jobs/${data.job_id}`;
  } catch (error) {
    problem.textContent = error.message;
  }
}

async function refreshJobs() {
  const body = document.querySelector("#jobs tbody");
  if (!body) return;
  let listed;
  try {
    listed = (await api("GET", "/jobs?limit=100")).data;
  } catch (error) {
    return;
  }
  body.replaceChildren(...listed.jobs.map((job) => el("tr", { "data-job": job.job_id },
    el("td", {}, el("a", { href: `#/jobs/${job.job_id}` }, job.job_id)),
    el("td", {}, stateBadge(job.state)),
    el("td", { class: "note" }, job.kind === "train" ? `training run of profile ${job.options.profile} v${job.options.version}` : progressText(job.progress)),
    el("td", { class: "num" }, seconds(job.elapsed_seconds)),
    el("td", {}, when(job.created)),
  )));
}

// --- one job -------------------------------------------------------------------------------

async function showJob(id) {
  view.replaceChildren(el("section", { class: "card", id: "job" },
    el("h1", {}, "Job ", el("code", {}, id), " ", el("span", { id: "job-state" })),
    el("p", { class: "note", id: "job-summary" }),
    el("p", { class: "problem", id: "job-problem" }),
    el("table", { id: "job-progress" })));
  let shown = null;
  const update = async () => {
    let job;
    try {
      job = (await api("GET", `/jobs/${id}`)).data;
    } catch (error) {
      document.getElementById("job-problem").textContent = error.message;
      clearInterval(timer);
      return;
    }
    document.getElementById("job-state").replaceChildren(stateBadge(job.state));
    const what = job.kind === "train"
      ? `training run of profile ${job.options.profile} version ${job.options.version}`
      : `preset ${job.options.preset ?? "default"}`;
    document.getElementById("job-summary").textContent =
      `${what}; elapsed ${seconds(job.elapsed_seconds)}; created ${when(job.created)}`;
    document.getElementById("job-problem").textContent = job.error || "";
    renderProgress(job.progress);
    if (["succeeded", "failed", "cancelled"].includes(job.state)) {
      clearInterval(timer);
      if (job.state === "succeeded" && shown !== id) {
        shown = id;
        await (job.kind === "train" ? showReport(job) : showResult(job));
      }
    }
  };
  await update();
  if (!shown) timer = setInterval(update, 2000);
}

function renderProgress(progress) {
  const rows = [];
  for (const [stage, searches] of Object.entries(progress || {})) {
    for (const [search, p] of Object.entries(searches)) {
      rows.push(el("tr", {}, el("td", {}, stage), el("td", {}, search),
        el("td", { class: "num" }, `${p.done ?? 0}${p.total ? ` of ${p.total}` : ""}`),
        el("td", { class: "num" }, p.running ?? 0), el("td", { class: "num" }, p.pruned ?? 0),
        el("td", { class: "num" }, p.stopped_early ?? 0), el("td", {}, p.best ?? "")));
    }
  }
  const table = document.getElementById("job-progress");
  if (!rows.length) return table.replaceChildren(); // a training run has no searches
  table.replaceChildren(
    el("thead", {}, el("tr", {}, ...["Stage", "Search", "Done", "Running", "Pruned", "Stopped early", "Best so far"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

async function showResult(job) {
  const [result, trials] = await Promise.all([
    api("GET", `/jobs/${job.job_id}/result`).then((a) => a.data),
    api("GET", `/jobs/${job.job_id}/trials`).then((a) => a.data).catch(() => []),
  ]);
  const byTrial = groupTrials(trials);
  for (const [stage, answer] of Object.entries(result.stages)) {
    if (location.hash !== `#/jobs/${job.job_id}`) return; // the person went elsewhere
    const card = el("section", { class: "card stage", "data-stage": stage }, el("h1", {}, stage));
    view.append(card);
    card.append(el("p", { class: answer.feasible ? "note" : "problem" }, answer.reason));
    if (!answer.feasible) continue;
    card.append(figures(answer));
    const profile = (await api("GET", `/jobs/${job.job_id}/profiles/${stage}?format=json`)).data;
    delete profile.meta;
    const editor = configEditor(stage, job.job_id, profile);
    const plots = el("div", {},
      el("h2", {}, "Fit search: capacity against throughput"),
      fitPlot(byTrial.filter((t) => t.stage === stage && t.search === "fit"), answer),
      el("h2", {}, "Tune search: validation loss against epochs"),
      tunePlot(byTrial.filter((t) => t.stage === stage && t.search === "tune")));
    card.append(el("div", { class: "stage-grid" }, editor, plots));
  }
}

async function showReport(job) {
  const report = (await api("GET", `/jobs/${job.job_id}/result`)).data;
  if (location.hash !== `#/jobs/${job.job_id}`) return;
  const last = report.epochs.at(-1) || {};
  const columns = ["epoch", "train_loss", "val_loss", "val_rmse", "val_pearson", "lr", "seconds"];
  view.append(el("section", { class: "card report" },
    el("h1", {}, "Training run"),
    el("dl", { class: "figures" }, ...[
      ["Parameters", report.parameters?.toLocaleString()], ["Device", `${report.device} (${report.precision})`],
      ["Complexes", `${report.train_complexes} training, ${report.val_complexes} validation`],
      ["Time", seconds(report.seconds)], ["Validation RMSE", number(last.val_rmse, 4)],
      ["Run folder", report.run_dir ?? ""],
    ].map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v ?? "")))),
    el("table", { class: "epochs" },
      el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c)))),
      el("tbody", {}, ...report.epochs.map((e) => el("tr", {}, ...columns.map((c) => el("td", { class: "num" }, c === "epoch" ? e[c] : number(e[c], 4)))))))));
}

function figures(answer) {
  const p = answer.probe || {};
  const v = answer.validation;
  const items = [
    ["Batch size", answer.batch_size], ["Largest batch that fits", p.max_batch_size],
    ["Parameters", p.capacity?.toLocaleString()], ["Peak memory", `${bytes(p.peak_bytes)} of ${bytes(p.limit_bytes)}`],
    ["Cycle (450 batches)", p.cycle_minutes ? `${number(p.cycle_minutes)} min` : ""],
    ["Throughput", p.throughput ? `${number(p.throughput)} samples/s` : ""],
    ["Measured on", answer.device?.device_model ?? ""], ["Probe steps", p.probe_steps],
    ["Validation loss", v ? `${number(v.val_loss, 4)} after ${v.epochs} epochs` : "not tuned"],
  ];
  return el("dl", { class: "figures" }, ...items.flatMap(([k, value]) => [el("div", {}, el("dt", {}, k), el("dd", {}, value ?? ""))]));
}

// --- the editable configuration ------------------------------------------------------------

function flatten(tree, prefix = "") {
  const rows = [];
  for (const [key, value] of Object.entries(tree)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value)) rows.push(...flatten(value, path));
    else rows.push([path, value]);
  }
  return rows;
}

function shown(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function parsed(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function treeOf(rows) {
  const tree = {};
  for (const [path, value] of rows) {
    const parts = path.split(".");
    let node = tree;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    node[parts.at(-1)] = value;
  }
  return tree;
}

function configEditor(stage, jobId, profile) {
  const original = new Map(flatten(profile));
  const body = el("tbody");
  let section = null;
  for (const [path, value] of original) {
    const top = path.split(".")[0];
    if (top !== section) {
      section = top;
      body.append(el("tr", { class: "section" }, el("td", { colspan: 3 }, top)));
    }
    body.append(el("tr", { "data-key": path },
      el("td", { class: "key" }, path.slice(top.length + 1)),
      el("td", {}, el("input", { value: shown(value), "aria-label": path, spellcheck: "false" })),
      el("td", { class: "problem" })));
  }
  const general = el("p", { class: "problem general" });
  const name = el("input", { name: "profile-name", value: `${stage}-${jobId}`, "aria-label": "profile name", pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}" });
  const save = el("button", { type: "button", class: "save-profile" }, "Save as profile");
  const saved = el("div", { class: "saved" });
  const editor = el("div", { class: "editor" },
    el("h2", {}, "Configuration"),
    el("p", { class: "note" }, "Every value can be edited; each edit is checked with the rules of stagetune train."),
    el("table", { class: "config" }, el("thead", {}, el("tr", {}, el("th", {}, "Key"), el("th", {}, "Value"), el("th", {}, ""))), body),
    general,
    el("div", { class: "save" }, name, save),
    saved);

  const current = () => [...body.querySelectorAll("tr[data-key]")].map((row) => [row.dataset.key, parsed(row.querySelector("input").value)]);
  let checking = null;
  let valid = true;
  const check = async () => {
    const rows = current();
    for (const row of body.querySelectorAll("tr[data-key]")) {
      row.classList.toggle("edited", row.querySelector("input").value !== shown(original.get(row.dataset.key)));
    }
    const mine = (checking = Symbol("check"));
    let problems = [];
    try {
      await api("POST", "/configs/check", { config: treeOf(rows) });
    } catch (error) {
      if (error.status !== 422) { general.textContent = error.message; return; }
      problems = error.body.problems || [{ key: "", message: error.message }];
    }
    if (mine !== checking) return; // a later edit's check answers instead
    valid = problems.length === 0;
    save.disabled = !valid;
    const leftover = [];
    for (const row of body.querySelectorAll("tr[data-key]")) {
      row.classList.remove("invalid");
      row.querySelector("td.problem").textContent = "";
    }
    for (const p of problems) {
      const row = body.querySelector(`tr[data-key="${CSS.escape(p.key)}"]`)
        || [...body.querySelectorAll("tr[data-key]")].find((r) => p.key.startsWith(`${r.dataset.key}.`));
      if (row) {
        row.classList.add("invalid");
        row.querySelector("td.problem").textContent = p.message;
      } else {
        leftover.push(`${p.key}: ${p.message}`);
      }
    }
    general.textContent = leftover.join("\n");
  };
  let pending = null;
  body.addEventListener("input", () => {
    save.disabled = true;
    clearTimeout(pending);
    pending = setTimeout(check, 250);
  });
  save.addEventListener("click", async () => {
    saved.replaceChildren();
    if (!name.checkValidity()) {
      saved.append(el("p", { class: "problem" }, "A profile name is 1 to 64 letters, digits, '_', '.' or '-'."));
      return;
    }
    try {
      const { status, data } = await api("PUT", `/profiles/${encodeURIComponent(name.value)}`, { config: treeOf(current()), stage, job_id: jobId });
      saved.append(savedProfile(data, status === 201 ? "Saved" : "Unchanged since"));
    } catch (error) {
      if (error.status === 422) await check();
      saved.append(el("p", { class: "problem" }, `Not saved: ${error.message}`));
    }
  });
  return editor;
}

function savedProfile(profile, verb) {
  const filename = `${profile.name}-v${profile.version}.yaml`;
  const command = el("pre", { class: "command" }, profile.command);
  return el("div", { class: "saved-profile", "data-profile": profile.name, "data-version": profile.version },
    el("p", {}, `${verb} profile `, el("strong", {}, profile.name), ` version ${profile.version}.`),
    el("button", { type: "button", class: "plain download", onclick: () => downloadProfile(profile.name, profile.version, filename) }, `Download ${filename}`),
    " ",
    el("button", { type: "button", class: "plain train", onclick: (event) => trainProfile(profile.name, profile.version, event.target.parentNode) }, "Train with it on the cluster"),
    " ",
    el("button", { type: "button", class: "plain copy", onclick: async (event) => {
      await navigator.clipboard?.writeText(profile.command).catch(() => {});
      event.target.textContent = "Command copied";
    } }, "Copy the command to train with it"),
    command);
}

async function trainProfile(name, version, where) {
  try {
    const { data } = await api("POST", `/profiles/${encodeURIComponent(name)}/train?version=${version}`);
    location.hash = `#/jobs/${data.job_id}`;
  } catch (error) {
    where.append(el("p", { class: "problem" }, `Not started: ${error.message}`));
  }
}

async function downloadProfile(name, version, filename) {
  const { data } = await api("GET", `/profiles/${encodeURIComponent(name)}?version=${version}&format=yaml`, undefined, "application/yaml");
  download(filename, data, "application/yaml");
}

// --- plots ---------------------------------------------------------------------------------

function groupTrials(rows) {
  const trials = new Map();
  for (const row of rows) {
    const key = `${row.stage}/${row.search}/${row.trial_id}`;
    if (!trials.has(key)) trials.set(key, { stage: row.stage, search: row.search, trial_id: row.trial_id, status: row.status, v: {} });
    trials.get(key).v[row.variable] = row.value;
  }
  return [...trials.values()];
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function scale(lo, hi, from, to, log) {
  const f = log ? Math.log10 : (x) => x;
  const a = f(lo);
  const b = f(hi) === a ? a + 1 : f(hi);
  const map = (x) => from + ((f(x) - a) / (b - a)) * (to - from);
  map.ticks = () => {
    if (log) {
      const out = [];
      for (let e = Math.floor(a); e <= Math.ceil(b); e++) if (10 ** e >= lo / 1.0001 && 10 ** e <= hi * 1.0001) out.push(10 ** e);
      return out.length >= 2 ? out : [lo, hi];
    }
    return [0, 1, 2, 3, 4].map((i) => lo + ((hi - lo) * i) / 4);
  };
  return map;
}

function digitsFor(lo, hi) {
  // enough significant digits that neighbouring ticks read differently
  const span = Math.abs(hi - lo) || Math.abs(hi) || 1;
  return Math.min(8, Math.max(3, Math.ceil(Math.log10(Math.max(Math.abs(lo), Math.abs(hi)) / span)) + 2));
}

function frame(width, height, xs, ys, xLabel, yLabel) {
  const plot = svg("svg", { class: "plot", viewBox: `0 0 ${width} ${height}`, role: "img" });
  const m = { l: 72, r: 22, t: 14, b: 38 };
  const x = scale(xs[0], xs[1], m.l, width - m.r, xs[2]);
  const y = scale(ys[0], ys[1], height - m.b, m.t, ys[2]);
  for (const t of x.ticks()) {
    plot.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: m.t, y2: height - m.b }));
    plot.append(svg("text", { x: x(t), y: height - m.b + 14, "text-anchor": "middle" }, number(t, xs[2] ? 3 : digitsFor(xs[0], xs[1]))));
  }
  for (const t of y.ticks()) {
    plot.append(svg("line", { class: "grid", x1: m.l, x2: width - m.r, y1: y(t), y2: y(t) }));
    plot.append(svg("text", { x: m.l - 4, y: y(t) + 4, "text-anchor": "end" }, number(t, ys[2] ? 3 : digitsFor(ys[0], ys[1]))));
  }
  plot.append(svg("line", { class: "axis", x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b }));
  plot.append(svg("line", { class: "axis", x1: m.l, x2: m.l, y1: m.t, y2: height - m.b }));
  plot.append(svg("text", { x: (m.l + width - m.r) / 2, y: height - 6, "text-anchor": "middle" }, xLabel));
  plot.append(svg("text", { x: 12, y: (m.t + height - m.b) / 2, transform: `rotate(-90 12 ${(m.t + height - m.b) / 2})`, "text-anchor": "middle" }, yLabel));
  return { plot, x, y, m, width, height };
}

function fitPlot(trials, answer) {
  const probed = trials.filter((t) => t.status === "probed" && t.v["probe.capacity"]);
  if (!probed.length) return el("p", { class: "note" }, "No probes recorded for this search.");
  const allowed = probed[0].v["stage.minutes_allowed"];
  const feasible = (t) => t.v["probe.fits"] && t.v["probe.throughput"] && (!allowed || t.v["probe.cycle_minutes"] <= allowed);
  const throughput = probed.map((t) => t.v["probe.throughput"] || 0);
  const capacity = probed.map((t) => t.v["probe.capacity"]);
  const chosen = answer.probe;
  const batches = probed[0].v["probe.cycle_batches"] || 450;
  const budget = allowed && answer.batch_size ? (batches * answer.batch_size) / (allowed * 60) : null;
  const xMax = Math.max(...throughput, chosen?.throughput || 0, budget || 0) * 1.1 || 1;
  const cMin = Math.min(...capacity, chosen?.capacity || Infinity);
  const cMax = Math.max(...capacity, chosen?.capacity || 0);
  const log = cMax / cMin > 20;
  const { plot, x, y, m, height } = frame(520, 300, [0, xMax, false], [log ? cMin / 1.5 : 0, cMax * 1.15, log], "throughput (samples/s; 0: did not fit)", "parameters");
  plot.classList.add("fit-plot");
  if (budget) {
    plot.append(svg("line", { class: "budget", x1: x(budget), x2: x(budget), y1: m.t, y2: height - m.b }));
    plot.append(svg("text", { x: x(budget) + 4, y: m.t + 10 }, `time budget at batch ${answer.batch_size}: ${allowed} min`));
  }
  for (const t of probed) {
    const cx = x(t.v["probe.throughput"] || 0);
    const cy = y(t.v["probe.capacity"]);
    const ok = feasible(t);
    const mark = ok ? svg("circle", { class: "feasible", cx, cy, r: 4 }) : svg("rect", { class: "infeasible", x: cx - 4, y: cy - 4, width: 8, height: 8 });
    mark.append(svg("title", {}, `${ok ? "feasible" : "infeasible"}: ${t.v["probe.capacity"]} parameters, ${number(t.v["probe.throughput"] || 0)} samples/s, batch ${t.v["probe.max_batch_size"] ?? "none"}, cycle ${number(t.v["probe.cycle_minutes"] || 0)} min`));
    plot.append(mark);
  }
  if (chosen?.throughput) {
    plot.append(svg("circle", { class: "chosen", cx: x(chosen.throughput), cy: y(chosen.capacity), r: 9 }));
  }
  const pruned = trials.filter((t) => t.status === "pruned").length;
  return el("figure", {}, plot, el("figcaption", { class: "note" },
    `● feasible, □ infeasible (did not fit${allowed ? " or over the time budget" : ""}), ◯ chosen. ${probed.length} probed, ${pruned} pruned without a probe.`));
}

function tunePlot(trials) {
  const finished = trials.filter((t) => typeof t.v["result.val_loss"] === "number");
  if (!finished.length) return el("p", { class: "note" }, "No tune search for this stage (hardware-only answer).");
  const historyOf = (t) => {
    const history = t.v["result.val_loss_by_epoch"];
    return Array.isArray(history) && history.length ? history : null;
  };
  const epochsOf = (t) => historyOf(t)?.length ?? t.v["train.epochs_run"];
  const losses = finished.flatMap((t) => historyOf(t) ?? [t.v["result.val_loss"]]).filter(Number.isFinite);
  const maxEpochs = Math.max(...finished.map((t) => t.v["train.max_epochs"] || epochsOf(t)));
  const lo = Math.min(...losses);
  const hi = Math.max(...losses);
  const { plot, x, y } = frame(520, 260, [1, Math.max(2, maxEpochs), false], [lo - (hi - lo) * 0.1 || lo * 0.9, hi + (hi - lo) * 0.1 || hi * 1.1, false], "epochs (ASHA's budget)", "validation loss");
  plot.classList.add("tune-plot");
  const best = finished.reduce((a, b) => ((a.status === "completed") > (b.status === "completed") || ((a.status === "completed") === (b.status === "completed") && a.v["result.val_loss"] <= b.v["result.val_loss"]) ? a : b));
  for (const t of finished) {
    const history = historyOf(t);
    const points = history ? history.map((l, i) => [i + 1, l]) : [[epochsOf(t), t.v["result.val_loss"]]];
    const kind = t.status === "stopped_early" ? "stopped" : "completed";
    const line = svg("polyline", { class: `${kind}${t === best ? " best" : ""}`, points: points.map(([e, l]) => `${x(e)},${y(l)}`).join(" ") });
    line.append(svg("title", {}, `${t.trial_id}: ${t.status}, val_loss ${number(t.v["result.val_loss"], 4)} after ${epochsOf(t)} epoch(s)`));
    plot.append(line);
    const [e, l] = points.at(-1);
    plot.append(svg("circle", { cx: x(e), cy: y(l), r: 3, class: kind === "stopped" ? "infeasible" : "feasible" }));
  }
  const stopped = finished.filter((t) => t.status === "stopped_early").length;
  return el("figure", {}, plot, el("figcaption", { class: "note" },
    `solid, ending in ●: ran every epoch; dashed, ending in ○: stopped early by ASHA (${stopped} of ${finished.length}); thick: the chosen trial.`));
}

// --- profiles ------------------------------------------------------------------------------

async function showProfiles() {
  useTemplate("profiles-view");
  let listed;
  try {
    listed = (await api("GET", "/profiles")).data;
  } catch (error) {
    view.append(el("p", { class: "problem" }, error.message));
    return;
  }
  document.querySelector("#profiles tbody").replaceChildren(...listed.profiles.map((p) => el("tr", { "data-profile": p.name },
    el("td", {}, p.name), el("td", { class: "num" }, `v${p.version} (${p.versions} saved)`), el("td", {}, p.stage ?? ""),
    el("td", {}, p.job_id ? el("a", { href: `#/jobs/${p.job_id}` }, p.job_id) : ""), el("td", {}, when(p.created)),
    el("td", {}, el("button", { type: "button", class: "plain download", onclick: () => downloadProfile(p.name, p.version, `${p.name}-v${p.version}.yaml`) }, "Download YAML")))));
}

route();
