// Every trial of a search in one table, one row per trial, sortable by any column: the knobs
// the search varied, then what was measured, each with its unit; the chosen trial marked.
"use strict";

// [variable, heading, kind]; kind picks the format: count, bytes, minutes, figure, loss, yes/no.
const FIT_COLUMNS = [
  ["probe.capacity", "parameters", "count"],
  ["probe.max_batch_size", "largest batch", "count"],
  ["probe.max_atoms_per_batch", "atom budget (atoms)", "count"],
  ["probe.peak_bytes", "peak memory", "bytes"],
  ["probe.cycle_minutes", "cycle, worst case (min)", "figure"],
  ["probe.data.cycle_minutes", "cycle on the data (min)", "figure"],
  ["probe.throughput", "complexes/s, worst case", "figure"],
  ["probe.data.throughput", "complexes/s on the data", "figure"],
  ["probe.feasible", "feasible", "yes/no"],
];
const TUNE_COLUMNS = [
  ["train.epochs_run", "epochs run", "count"],
  ["result.val_loss", "validation loss (MSE)", "loss"],
  ["result.val_rmse", "validation RMSE", "loss"],
  ["result.val_pearson", "Pearson r", "figure"],
];

function shownValue(value, kind) {
  if (value === null || value === undefined || value === "") return "";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value !== "number") return typeof value === "string" ? value : JSON.stringify(value);
  if (kind === "bytes") return bytes(value);
  if (kind === "count") return Math.round(value).toLocaleString("en");
  return kind === "loss" ? loss(value) : figure(value);
}

// The knobs (model.* for the fit search, tune.* for the tune search) whose value differs
// between the trials: what the search searched.
function variedKnobs(trials, prefix) {
  const values = new Map();
  for (const t of trials) {
    for (const [k, v] of Object.entries(t.v)) {
      if (!k.startsWith(prefix)) continue;
      if (!values.has(k)) values.set(k, new Set());
      values.get(k).add(JSON.stringify(v));
    }
  }
  return [...values].filter(([k, seen]) => seen.size > 1 || prefix === "tune.").map(([k]) => k).sort();
}

// The model the stage chose: the probed fit trial with its knobs.
function isChosenFit(t, answer) {
  return t.status === "probed" && Object.entries(answer.model || {}).every(([k, v]) => !(`model.${k}` in t.v) || t.v[`model.${k}`] === v);
}

function prunedWhy(t) {
  const failed = Object.entries(t.v).filter(([k]) => k.startsWith("pruned_by."));
  if (failed.length) return `dominates ${failed.map(([k, v]) => `${k.slice(10)} ${v}`).join(", ")}, which did not fit`;
  if (t.v["pruned.bound"] !== undefined) return `its score can be at most ${figure(t.v["pruned.bound"])}, below the best found, ${figure(t.v["pruned.best"])}`;
  return "answered without a probe";
}

function trialsTable(trials, search, answer) {
  if (!trials.length) return el("p", { class: "note" }, `No ${search} trials recorded.`);
  const fit = search === "fit";
  const knobs = variedKnobs(trials, fit ? "model." : "tune.").map((k) => [k, k.split(".").slice(1).join("."), "figure"]);
  const measured = (fit ? FIT_COLUMNS : TUNE_COLUMNS).filter(([k]) => trials.some((t) => t.v[k] !== undefined && t.v[k] !== null));
  const columns = [["trial_id", "trial", "text"], ["status", "status", "text"], ...knobs, ...measured];
  const chosen = fit ? trials.find((t) => isChosenFit(t, answer)) : chosenTune(trials);
  const valueOf = (t, key) => (key === "trial_id" || key === "status" ? t[key] : t.v[key]);
  const body = el("tbody");
  const table = el("table", { class: `trials ${search}-trials`, "data-search": search });
  const head = el("tr", {}, ...columns.map(([key, heading], i) => el("th", { "aria-sort": "none", class: i > 1 ? "num" : "" },
    el("button", { type: "button", class: "sort", "data-key": key, onclick: () => sortBy(key) }, heading))));
  let order = { key: null, dir: 1 };
  const draw = (rows) => body.replaceChildren(...rows.map((t) => el("tr", { "data-trial": t.trial_id, "data-status": t.status, class: t === chosen ? "chosen" : "", title: t.status === "pruned" ? `pruned: ${prunedWhy(t)}` : null },
    ...columns.map(([key, , kind], i) => el("td", { class: i > 1 ? "num" : "" }, i === 0 && t === chosen ? `${t.trial_id} (chosen)` : i === 1 ? t.status.replace("_", " ") : shownValue(valueOf(t, key), kind))))));
  const sortBy = (key) => {
    order = { key, dir: order.key === key ? -order.dir : 1 };
    const rank = (v) => (v === null || v === undefined || v === "" ? [1, 0] : [0, v]);
    const sorted = [...trials].sort((a, b) => {
      const [ma, va] = rank(valueOf(a, key));
      const [mb, vb] = rank(valueOf(b, key));
      if (ma !== mb) return ma - mb; // an empty value sorts last either way
      return (va < vb ? -1 : va > vb ? 1 : 0) * order.dir;
    });
    for (const th of head.children) {
      th.setAttribute("aria-sort", th.firstChild.dataset.key === key ? (order.dir > 0 ? "ascending" : "descending") : "none");
    }
    draw(sorted);
  };
  draw(trials);
  table.append(el("thead", {}, head), body);
  return el("div", { class: "scroll" }, table);
}
