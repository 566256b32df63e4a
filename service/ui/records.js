// The trials of a job as the page reads them: `GET /jobs/{id}/trials` gives one typed row per
// variable of each trial (trials.csv); grouped, a trial is {stage, search, trial_id, status, v},
// `v` its variables by name. Pure functions (tests/service/test_ui_units.py tests them).

import { figure } from "./format.js";

export function groupTrials(rows) {
  const trials = new Map();
  for (const row of rows) {
    const key = `${row.stage}/${row.search}/${row.trial_id}`;
    if (!trials.has(key)) {
      const { stage, search, trial_id, status } = row;
      trials.set(key, { stage, search, trial_id, status, v: {} });
    }
    trials.get(key).v[row.variable] = row.value;
  }
  return [...trials.values()];
}

// A fit trial's model knobs, without their "model." prefix.
export function knobsOf(t) {
  const model = Object.entries(t.v).filter(([k]) => k.startsWith("model."));
  return Object.fromEntries(model.map(([k, v]) => [k.slice(6), v]));
}

// The tune search's answer: a trial that ran every epoch before one ASHA stopped, then the
// lowest validation loss (the rule the job chose by).
export function chosenTune(trials) {
  const finished = trials.filter((t) => typeof t.v["result.val_loss"] === "number");
  if (!finished.length) return null;
  const rank = (t) => [t.status === "completed" ? 0 : 1, t.v["result.val_loss"]];
  return finished.reduce((a, b) => {
    const [ra, rb] = [rank(a), rank(b)];
    return ra[0] < rb[0] || (ra[0] === rb[0] && ra[1] <= rb[1]) ? a : b;
  });
}

// The model the stage chose: the probed fit trial with its knobs.
export function isChosenFit(t, answer) {
  const knobs = Object.entries(answer.model || {});
  return t.status === "probed" && knobs.every(([k, v]) => !(`model.${k}` in t.v) || t.v[`model.${k}`] === v);
}

// The knobs (model.* for the fit search, tune.* for the tune search) whose value differs
// between the trials: what the search searched.
export function variedKnobs(trials, prefix) {
  const values = new Map();
  for (const t of trials) {
    for (const [k, v] of Object.entries(t.v)) {
      if (!k.startsWith(prefix)) continue;
      if (!values.has(k)) values.set(k, new Set());
      values.get(k).add(JSON.stringify(v));
    }
  }
  const varied = [...values].filter(([, seen]) => seen.size > 1 || prefix === "tune.");
  return varied.map(([k]) => k).sort();
}

// Why a configuration was answered without a probe, in words.
export function prunedWhy(t) {
  const failed = Object.entries(t.v).filter(([k]) => k.startsWith("pruned_by."));
  if (failed.length) {
    return `dominates ${failed.map(([k, v]) => `${k.slice(10)} ${v}`).join(", ")}, which did not fit`;
  }
  if (t.v["pruned.bound"] !== undefined) {
    const [bound, best] = [figure(t.v["pruned.bound"]), figure(t.v["pruned.best"])];
    return `its score can be at most ${bound}, below the best found, ${best}`;
  }
  return "answered without a probe";
}

// Where a pruned configuration goes on the fit plot: it never ran (throughput 0); its
// parameters as counted when it was pruned (the service counts them for a job that did not);
// for a job of an earlier version, those of the model it dominates (a lower bound); null when
// none is known.
export function prunedCapacity(t, probed) {
  if (t.v["pruned.capacity"]) return t.v["pruned.capacity"];
  const failed = Object.entries(t.v).filter(([k]) => k.startsWith("pruned_by."));
  if (!failed.length) return null;
  const twin = probed.find((p) => failed.every(([k, v]) => p.v[`model.${k.slice(10)}`] === v));
  return twin ? twin.v["probe.capacity"] : null;
}
