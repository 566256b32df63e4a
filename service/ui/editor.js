// The editable configuration of a stage: each edit checked by the API, saved as a versioned
// profile.

import { api } from "./api.js";
import { download, el } from "./dom.js";

// A configuration's keys as dotted paths, each with its value.
export function flatten(tree, prefix = "") {
  const rows = [];
  for (const [key, value] of Object.entries(tree)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value)) rows.push(...flatten(value, path));
    else rows.push([path, value]);
  }
  return rows;
}

export function shown(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function parsed(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// A number as an editor shows it: at most 6 significant digits (lr 0.00213490408123269 is shown
// as 0.0021349); the exact value is kept unless the cell is edited.
export function rounded(value) {
  if (typeof value !== "number" || Number.isInteger(value)) return shown(value);
  const short = String(Number(value.toPrecision(6)));
  return short.length < String(value).length ? short : String(value);
}

// A value's input: a checkbox for a yes/no, a choice for a key whose values are a fixed set
// (`choices`, from `GET /choices`), else a text box (a number rounded for reading).
function valueInput(path, value, choices) {
  if (typeof value === "boolean") {
    return el("input", { type: "checkbox", checked: value, "aria-label": path });
  }
  if (choices?.some((c) => shown(c) === shown(value))) {
    const option = (c) => el("option", { value: shown(c), selected: shown(c) === shown(value) }, shown(c));
    return el("select", { "aria-label": path }, ...choices.map(option));
  }
  const text = rounded(value);
  return el("input", {
    value: text, "aria-label": path, spellcheck: "false",
    "data-shown": text, "data-exact": text === shown(value) ? null : JSON.stringify(value),
  });
}

// What an input holds: a checkbox's state, a choice's value; the exact number behind a rounded
// one left as shown.
export function valueOf(input) {
  if (input.type === "checkbox") return input.checked;
  if (input.tagName === "SELECT") return parsed(input.value);
  if (input.dataset.exact && input.value === input.dataset.shown) return JSON.parse(input.dataset.exact);
  return parsed(input.value);
}

// The configuration of (path, value) rows.
export function treeOf(rows) {
  const tree = {};
  for (const [path, value] of rows) {
    const parts = path.split(".");
    let node = tree;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    node[parts.at(-1)] = value;
  }
  return tree;
}

// One table per section of the configuration (model, optimizer, ...), one row per key, each
// value an input; the tables flow in columns.
function configRows(original, choices) {
  const sections = el("div", { class: "config-sections" });
  let body = null;
  let section = null;
  for (const [path, value] of original) {
    const top = path.split(".")[0];
    if (top !== section) {
      section = top;
      body = el("tbody");
      const heading = el("thead", {}, el("tr", { class: "section" }, el("th", { colspan: 3 }, top)));
      sections.append(el("table", { class: "config", "data-section": top }, heading, body));
    }
    body.append(el("tr", { "data-key": path },
      el("td", { class: "key" }, path.slice(top.length + 1)),
      el("td", {}, valueInput(path, value, choices[path])),
      el("td", { class: "problem" })));
  }
  return sections;
}

// Each refused key's message beside its row (or its section's); the rest under the table.
function showProblems(body, general, problems) {
  const leftover = [];
  for (const row of body.querySelectorAll("tr[data-key]")) {
    row.classList.remove("invalid");
    row.querySelector("td.problem").textContent = "";
  }
  for (const p of problems) {
    const rows = [...body.querySelectorAll("tr[data-key]")];
    const row = body.querySelector(`tr[data-key="${CSS.escape(p.key)}"]`)
      || rows.find((r) => p.key.startsWith(`${r.dataset.key}.`));
    if (row) {
      row.classList.add("invalid");
      row.querySelector("td.problem").textContent = p.message;
    } else {
      leftover.push(`${p.key}: ${p.message}`);
    }
  }
  general.textContent = leftover.join("\n");
}

export function configEditor(stage, jobId, profile, choices = {}) {
  const original = new Map(flatten(profile));
  const body = configRows(original, choices);
  const general = el("p", { class: "problem general" });
  const name = el("input", {
    name: "profile-name", value: `${stage}-${jobId}`, "aria-label": "profile name",
    pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}",
  });
  const save = el("button", { type: "button", class: "save-profile" }, "Save as profile");
  const saved = el("div", { class: "saved" });
  const editor = el("div", { class: "editor" },
    el("h2", {}, `${stage}: configuration (profiles/${stage}.yaml)`),
    el("p", { class: "note" },
      "Every value can be edited; each edit is checked with the rules of stagetune train."),
    el("div", { class: "save" }, name, save),
    saved,
    general,
    body);

  const rowsOf = () => [...body.querySelectorAll("tr[data-key]")];
  const current = () => rowsOf().map((row) => [row.dataset.key, valueOf(row.querySelector("input, select"))]);
  let checking = null;
  const check = async () => {
    const rows = current();
    for (const row of rowsOf()) {
      const now = JSON.stringify(valueOf(row.querySelector("input, select")));
      const edited = now !== JSON.stringify(original.get(row.dataset.key));
      row.classList.toggle("edited", edited);
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
    save.disabled = problems.length > 0;
    showProblems(body, general, problems);
  };
  let pending = null;
  body.addEventListener("input", () => {
    save.disabled = true;
    clearTimeout(pending);
    pending = setTimeout(check, 250);
  });
  const asked = () => ({ config: treeOf(current()), stage, job_id: jobId });
  save.addEventListener("click", () => saveProfile(name, saved, asked, check));
  return editor;
}

async function saveProfile(name, saved, body, check) {
  saved.replaceChildren();
  if (!name.checkValidity()) {
    saved.append(el("p", { class: "problem" }, "A profile name is 1 to 64 letters, digits, '_', '.' or '-'."));
    return;
  }
  try {
    const path = `/profiles/${encodeURIComponent(name.value)}`;
    const { status, data } = await api("PUT", path, body());
    saved.append(savedProfile(data, status === 201 ? "Saved" : "Unchanged since"));
  } catch (error) {
    if (error.status === 422) await check();
    saved.append(el("p", { class: "problem" }, `Not saved: ${error.message}`));
  }
}

function savedProfile(profile, verb) {
  const filename = `${profile.name}-v${profile.version}.yaml`;
  const command = el("pre", { class: "command" }, profile.command);
  return el("div", { class: "saved-profile", "data-profile": profile.name, "data-version": profile.version },
    el("p", {}, `${verb} profile `, el("strong", {}, profile.name), ` version ${profile.version}.`),
    el("button", {
      type: "button", class: "plain download",
      onclick: () => downloadProfile(profile.name, profile.version, filename),
    }, `Download ${filename}`),
    " ",
    el("button", {
      type: "button", class: "plain train",
      onclick: (event) => trainProfile(profile.name, profile.version, event.target.parentNode),
    }, "Train with it on the cluster"),
    " ",
    el("button", { type: "button", class: "plain copy", onclick: async (event) => {
      await navigator.clipboard?.writeText(profile.command).catch(() => {});
      event.target.textContent = "Command copied";
    } }, "Copy the command to train with it"),
    command);
}

async function trainProfile(name, version, where) {
  try {
    const path = `/profiles/${encodeURIComponent(name)}/train?version=${version}`;
    const { data } = await api("POST", path);
    location.hash = `#/jobs/${data.job_id}`;
  } catch (error) {
    where.append(el("p", { class: "problem" }, `Not started: ${error.message}`));
  }
}

export async function downloadProfile(name, version, filename) {
  const path = `/profiles/${encodeURIComponent(name)}?version=${version}&format=yaml`;
  const { data } = await api("GET", path, undefined, "application/yaml");
  download(filename, data, "application/yaml");
}
