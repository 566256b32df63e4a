// Every trial of a search in one table, one row per trial, sortable by any column: the knobs
// the search varied, then what was measured, each with its unit; the chosen trial marked.

import { el } from "./dom.js";
import { shownValue } from "./format.js";
import { chosenTune, isChosenFit, prunedWhy, variedKnobs } from "./records.js";

// [variable, heading, kind]; kind picks the format (format.js shownValue).
export const FIT_COLUMNS = [
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
export const TUNE_COLUMNS = [
  ["train.epochs_run", "epochs run", "count"],
  ["result.val_loss", "validation loss (MSE)", "loss"],
  ["result.val_rmse", "validation RMSE", "loss"],
  ["result.val_pearson", "Pearson r", "figure"],
];

// The columns of a search's table: trial and status, the knobs it varied, then each measured
// column some trial has a value of.
export function columnsOf(trials, search) {
  const fit = search === "fit";
  const varied = variedKnobs(trials, fit ? "model." : "tune.");
  const knobs = varied.map((k) => [k, k.split(".").slice(1).join("."), "figure"]);
  const has = ([k]) => trials.some((t) => t.v[k] !== undefined && t.v[k] !== null);
  const measured = (fit ? FIT_COLUMNS : TUNE_COLUMNS).filter(has);
  return [["trial_id", "trial", "text"], ["status", "status", "text"], ...knobs, ...measured];
}

const valueOf = (t, key) => (key === "trial_id" || key === "status" ? t[key] : t.v[key]);

// `trials` in `order` of one column ({key, dir}): an empty value last either way.
export function sortedBy(trials, { key, dir }) {
  const rank = (v) => (v === null || v === undefined || v === "" ? [1, 0] : [0, v]);
  return [...trials].sort((a, b) => {
    const [ma, va] = rank(valueOf(a, key));
    const [mb, vb] = rank(valueOf(b, key));
    if (ma !== mb) return ma - mb;
    return (va < vb ? -1 : va > vb ? 1 : 0) * dir;
  });
}

function row(t, columns, chosen) {
  const cell = ([key, , kind], i) => {
    if (i === 0 && t === chosen) return `${t.trial_id} (chosen)`;
    return i === 1 ? t.status.replace("_", " ") : shownValue(valueOf(t, key), kind);
  };
  const title = t.status === "pruned" ? `pruned: ${prunedWhy(t)}` : null;
  const attrs = { "data-trial": t.trial_id, "data-status": t.status, class: t === chosen ? "chosen" : "", title };
  return el("tr", attrs, ...columns.map((c, i) => el("td", { class: i > 1 ? "num" : "" }, cell(c, i))));
}

export function trialsTable(trials, search, answer) {
  if (!trials.length) return el("p", { class: "note" }, `No ${search} trials recorded.`);
  const columns = columnsOf(trials, search);
  const chosen = search === "fit" ? trials.find((t) => isChosenFit(t, answer)) : chosenTune(trials);
  const body = el("tbody");
  const table = el("table", { class: `trials ${search}-trials`, "data-search": search });
  let order = { key: null, dir: 1 };
  const draw = (rows) => body.replaceChildren(...rows.map((t) => row(t, columns, chosen)));
  const sortBy = (key) => {
    order = { key, dir: order.key === key ? -order.dir : 1 };
    for (const th of head.children) {
      const mine = th.firstChild.dataset.key === key;
      th.setAttribute("aria-sort", mine ? (order.dir > 0 ? "ascending" : "descending") : "none");
    }
    draw(sortedBy(trials, order));
  };
  const heading = ([key, words], i) => el("th", { "aria-sort": "none", class: i > 1 ? "num" : "" },
    el("button", { type: "button", class: "sort", "data-key": key, onclick: () => sortBy(key) }, words));
  const head = el("tr", {}, ...columns.map(heading));
  draw(trials);
  table.append(el("thead", {}, head), body);
  return el("div", { class: "scroll" }, table);
}
