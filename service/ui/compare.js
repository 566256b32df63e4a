// The job's stages side by side in one table, one column per stage: while the job runs, each
// search's progress, the stages not started yet and an estimate of the time left; once it
// succeeded, each stage's answer (model, batch, memory, cycle, throughput, validation), with units.
// The plan and the time left are pure functions (tests/service/test_ui_units.py tests them).

import { el, lines, meter } from "./dom.js";
import { bytes, figure, loss, minutes, modelWords, plural, seconds } from "./format.js";

export const ALL_STAGES = ["prototyping", "validation", "production"];

// What a job runs: its options, else its preset's, else the service's defaults (JobSpec's).
export function jobPlan(job, choices) {
  const given = job.options || {};
  const preset = choices?.presets?.[given.preset ?? "default"] || {};
  const pick = (name, fallback) => given[name] ?? preset[name] ?? fallback;
  const stages = pick("stages", null) || choices?.stages || ALL_STAGES;
  return {
    stages: ALL_STAGES.filter((s) => stages.includes(s)),
    fit: pick("fit_trials", 16),
    tune: pick("tune", true) ? pick("tune_trials", 12) : 0,
  };
}

// Trials finished and still to run, per stage of the plan (a search not started yet runs its
// whole count; a fit search may end sooner, when its space is exhausted).
export function trialCounts(plan, progress) {
  const counts = {};
  for (const stage of plan.stages) {
    counts[stage] = { done: 0, left: 0 };
    for (const [search, planned] of [["fit", plan.fit], ["tune", plan.tune]]) {
      const p = progress?.[stage]?.[search];
      counts[stage].done += p?.done ?? 0;
      counts[stage].left += Math.max(0, (p?.total ?? planned) - (p?.done ?? 0));
    }
  }
  return counts;
}

// The time left, from the pace of the trials so far: in all, and when each stage should end;
// with the basis of the estimate in words.
export function timeLeft(job, plan) {
  const counts = trialCounts(plan, job.progress);
  const done = Object.values(counts).reduce((n, c) => n + c.done, 0);
  const left = Object.values(counts).reduce((n, c) => n + c.left, 0);
  if (!job.elapsed_seconds || !done) {
    return { seconds: null, stages: {}, basis: "an estimate follows once a trial has finished" };
  }
  const pace = job.elapsed_seconds / done;
  const stages = {};
  let until = 0;
  for (const stage of plan.stages) {
    until += counts[stage].left * pace;
    stages[stage] = counts[stage].left ? { left: counts[stage].left, until } : null;
  }
  return {
    seconds: pace * left,
    stages,
    basis: `${plural(left, "trial")} to go at the pace so far: ${plural(done, "trial")} finished in ` +
      `${seconds(job.elapsed_seconds)}, one every ${seconds(pace)} with the trials that run at once. ` +
      "A training trial takes longer than a probe, so the estimate is rough",
  };
}

export function stageTimeLeft(estimate, stage, state) {
  if (state === "finished") return "done";
  const mine = estimate.stages[stage];
  if (!mine) return estimate.seconds === null ? "not known yet" : "";
  return lines(`ends in about ${seconds(mine.until)}`, `${plural(mine.left, "trial")} left`);
}

// A search's best so far, as progress.json records it: what the trial chose and the figure it
// won on, with its unit. A job of an earlier version recorded it in words: those are shown as
// they are.
export function bestWords(search, best) {
  if (typeof best === "string") return `best so far: ${best}`;
  const value = `${best.metric === "val_loss" ? loss(best.value) : figure(best.value)} ${best.unit}`;
  if (search === "fit") return `best so far: ${modelWords(best.config) || "a model"}: ${value}`;
  return "lowest validation loss so far, of any finished trial (stopped early ones included; " +
    `the answer prefers one that ran every epoch): ${value}`;
}

export function searchWords(stage, search, p) {
  if (!p) return "not started";
  const total = p.total ? ` of ${p.total}` : "";
  const parts = [`${p.done ?? 0}${total} done`];
  if (p.running) parts.push(`${p.running} running`);
  if (p.pruned) parts.push(`${p.pruned} pruned`);
  if (p.stopped_early) parts.push(`${p.stopped_early} stopped early`);
  if (p.errored) parts.push(`${p.errored} failed`);
  if (!p.best) return parts.join(", ");
  return [parts.join(", "), el("br"), el("span", { class: "note" }, bestWords(search, p.best))];
}

export function stageState(plan, job, stage) {
  const progress = job.progress || {};
  if (!progress[stage]) return "not started";
  const later = plan.stages.slice(plan.stages.indexOf(stage) + 1);
  const search = progress[stage][plan.tune ? "tune" : "fit"];
  const searched = search && !search.running && !search.pending && search.done >= (search.total ?? 1);
  if (later.some((s) => progress[s]) || job.state === "succeeded" || searched) return "finished";
  return ["running", "queued"].includes(job.state) ? "running" : job.state;
}

function stagesTable(stages, rows) {
  return el("table", { id: "stages", class: "compare" },
    el("thead", {}, el("tr", {}, el("th", {}, ""),
      ...stages.map((s) => el("th", { "data-stage": s, scope: "col" }, s)))),
    el("tbody", {}, ...rows.map(([key, label, cell]) => el("tr", { "data-row": key },
      el("th", { scope: "row" }, label),
      ...stages.map((s) => el("td", { "data-stage": s }, cell(s) ?? ""))))));
}

// The live view: every stage of the job, started or not, and the time left.
export function progressView(job, choices) {
  const plan = jobPlan(job, choices);
  const left = timeLeft(job, plan);
  const running = job.state === "running" || job.state === "queued";
  const table = stagesTable(plan.stages, [
    ["state", "State", (s) => {
      const state = stageState(plan, job, s);
      return el("span", { class: `stage-state ${state.replace(" ", "-")}` }, state);
    }],
    ["fit", "Fit search (architecture probes)", (s) => searchWords(s, "fit", job.progress?.[s]?.fit)],
    ["tune", "Tune search (training trials)",
      (s) => (plan.tune ? searchWords(s, "tune", job.progress?.[s]?.tune) : "off: hardware-only answer")],
    ...(running ? [["left", "Time left (estimate)", (s) => stageTimeLeft(left, s, stageState(plan, job, s))]] : []),
  ]);
  const known = left.seconds === null ? "Time left: not known yet" : `Time left: about ${seconds(left.seconds)}`;
  const estimate = running
    ? el("p", { id: "time-left" }, el("strong", {}, known), el("span", { class: "note" }, `. ${left.basis}.`))
    : null;
  return [estimate, table];
}

// --- the answers ---------------------------------------------------------------------------

function memoryCell(p) {
  if (!p?.peak_bytes) return "";
  const share = `${Math.round((100 * p.peak_bytes) / p.limit_bytes)} %`;
  return [meter(p.peak_bytes, p.limit_bytes, `${share} of the limit`),
    ...lines(`${bytes(p.peak_bytes)} of ${bytes(p.limit_bytes)} (${share})`,
      "one step at the largest batch, worst-case complexes")];
}

function cycleCell(a) {
  const p = a.probe || {};
  const b = a.batching || {};
  const cycle = b.cycle_minutes_on_data ?? p.cycle_minutes;
  if (!cycle) return "";
  const allowed = a.budget ? a.budget.minutes_allowed : null;
  const batches = a.budget?.cycle_batches ?? 450;
  const limit = allowed ? ` of ${minutes(allowed)} allowed` : a.budget ? " (no time limit)" : "";
  const basis = b.cycle_minutes_on_data
    ? `${batches} batches of the job's data; ${minutes(p.cycle_minutes)} with worst-case complexes`
    : `${batches} batches of worst-case complexes`;
  return [meter(cycle, allowed, "share of the stage's time budget"), ...lines(`${minutes(cycle)}${limit}`, basis)];
}

function throughputCell(a) {
  const p = a.probe || {};
  const b = a.batching || {};
  const step = p.step_seconds ? `, a step ${figure(p.step_seconds * 1000)} ms` : "";
  if (b.throughput_on_data) {
    return lines(`${figure(b.throughput_on_data)} complexes/s on the job's data`,
      `${figure(p.throughput)} complexes/s worst case${step}`);
  }
  return p.throughput ? lines(`${figure(p.throughput)} complexes/s`, `worst-case complexes${step}`) : "";
}

function validationCell(a) {
  const v = a.validation;
  if (!v) return "not tuned (hardware-only answer)";
  const rmse = v.val_rmse === null ? "" : `RMSE ${figure(v.val_rmse)}`;
  const r = v.val_pearson === null ? "" : `Pearson r ${figure(v.val_pearson, 2)}`;
  const notes = [rmse, r, `after ${plural(v.epochs, "epoch")}`].filter(Boolean).join(", ");
  const baseline = v.baseline_loss == null ? "" : `predicting the mean: ${loss(v.baseline_loss)}`;
  // the verdict on the validation complexes: whether this is a winner at all (absent before it was kept)
  return lines(`loss ${loss(v.val_loss)} (MSE)`, notes, baseline, v.verdict_words || "");
}

function searchesCell(a) {
  const v = a.validation;
  const tuned = v
    ? `${plural(v.trials, "training trial")}, ${v.stopped_early} stopped early by ASHA`
    : "no tune search";
  return lines(`${a.probed} probed, ${a.pruned} pruned`, tuned);
}

function atomsCell(a) {
  const b = a.batching;
  if (!b?.max_atoms_per_batch) return "none (fixed batches)";
  const held = b.complexes_per_batch ? `about ${figure(b.complexes_per_batch)} complexes of the job's data` : "";
  return lines(`${b.max_atoms_per_batch.toLocaleString("en")} atoms a batch`, held);
}

// Production's data-parallel workers: how many, and their cycle as measured at that count
// (absent for other stages and from results before it was kept).
function workersCell(a) {
  const w = a.workers;
  if (!w) return "";
  if (w.step_seconds == null) return lines(plural(w.count, "worker"), w.reason);
  return lines(`${w.count} workers, one GPU each`,
    `${minutes(w.cycle_minutes)} per cycle, ${figure(w.throughput)} complexes/s, measured at ${w.count}`,
    `a step's batches ${figure(100 * (w.atom_imbalance ?? 0))} % apart in atoms`);
}

const ANSWER_ROWS = [
  ["model", "Model",
    (a) => lines(modelWords(a.model), a.probe ? `${a.probe.capacity.toLocaleString("en")} parameters` : "")],
  ["batch", "Batch",
    (a) => lines(`${a.batch_size} complexes`, a.probe ? `the largest that fits: ${a.probe.max_batch_size}` : "")],
  ["atoms", "Atom budget", atomsCell],
  ["memory", "Peak memory against the limit", (a) => memoryCell(a.probe)],
  ["cycle", "Cycle against the stage's budget", cycleCell],
  ["throughput", "Throughput", throughputCell],
  ["workers", "Workers", workersCell],
  ["validation", "Validation", validationCell],
  ["searches", "Searches", searchesCell],
  ["device", "Measured on", (a) => (a.device ? `${a.device.device_model ?? "?"} (${a.device.device ?? "?"})` : "")],
];

// The answers of a succeeded job, side by side; `open(stage, view)` shows a stage's details.
export function answersView(result, open) {
  const stages = ALL_STAGES.filter((s) => result.stages[s]);
  const answer = (s) => result.stages[s];
  const rows = [
    ["answer", "Answer", (s) => {
      const { feasible, reason } = answer(s);
      return el("span", { class: feasible ? "" : "problem" }, feasible ? reason : `no configuration: ${reason}`);
    }],
    ...ANSWER_ROWS.map(([key, label, cell]) => [key, label, (s) => (answer(s).feasible ? cell(answer(s)) : "")]),
    ["open", "Details", (s) => (answer(s).feasible ? [
      el("button", { type: "button", class: "plain open-config", "data-stage": s, onclick: () => open(s, "config") },
        "Configuration"), " ",
      el("button", { type: "button", class: "plain open-trials", "data-stage": s, onclick: () => open(s, "trials") },
        "Trials and plots"),
    ] : "")],
  ];
  return stagesTable(stages, rows);
}
