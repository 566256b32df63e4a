// Every trial of a search in one table, one row per trial, sortable by any column: the knobs
// the search varied, then what was measured, each with its unit; the chosen trial marked.

import { el } from "./dom.js";
import { shownValue } from "./format.js";
import { chosenTune, isChosenFit, prunedWhy, variedKnobs } from "./records.js";

// The columns of a search's table, each [variable, heading, kind]: trial and status, the knobs
// it varied, then each of `measured` (the service's columns of the search, `GET /choices`
// trial_columns: variable, heading, kind) some trial has a value of.
export function columnsOf(trials, search, measured) {
  const fit = search === "fit";
  const varied = variedKnobs(trials, fit ? "model." : "tune.");
  const knobs = varied.map((k) => [k, k.split(".").slice(1).join("."), "figure"]);
  const has = ({ variable }) => trials.some((t) => t.v[variable] !== undefined && t.v[variable] !== null);
  const shown = measured.filter(has).map(({ variable, heading, kind }) => [variable, heading, kind]);
  return [["trial_id", "trial", "text"], ["status", "status", "text"], ...knobs, ...shown];
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

export function trialsTable(trials, search, answer, measured = []) {
  if (!trials.length) return el("p", { class: "note" }, `No ${search} trials recorded.`);
  const columns = columnsOf(trials, search, measured);
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
