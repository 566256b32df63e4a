// One job: its stages side by side, live while it runs (compare.js), then each stage's answer,
// and per stage its editable configuration (editor.js), plots (plots.js) and trials (trials.js).

import { api } from "./api.js";
import { ALL_STAGES, answersView, progressView } from "./compare.js";
import { el, stateBadge } from "./dom.js";
import { configEditor } from "./editor.js";
import { number, plural, seconds, when } from "./format.js";
import { refresh, stopRefresh, view } from "./page.js";
import { fitPlot, tunePlot } from "./plots.js";
import { groupTrials } from "./records.js";
import { trialsTable } from "./trials.js";

export async function showJob(id) {
  view.replaceChildren(el("section", { class: "card", id: "job" },
    el("h1", {}, "Job ", el("code", {}, id), " ", el("span", { id: "job-state" })),
    el("p", { class: "note", id: "job-summary" }),
    el("p", { class: "problem", id: "job-problem" }),
    el("div", { id: "job-stages" })));
  const choices = await api("GET", "/choices").then((a) => a.data).catch(() => null);
  let shown = null;
  const update = async () => {
    let job;
    try {
      job = (await api("GET", `/jobs/${id}`)).data;
    } catch (error) {
      document.getElementById("job-problem").textContent = error.message;
      stopRefresh();
      return;
    }
    if (location.hash !== `#/jobs/${id}`) return; // the person went elsewhere
    document.getElementById("job-state").replaceChildren(stateBadge(job.state));
    const what = job.kind === "train"
      ? `training run of profile ${job.options.profile} version ${job.options.version}`
      : `preset ${job.options.preset ?? "default"}`;
    document.getElementById("job-summary").textContent =
      `${what}; elapsed ${seconds(job.elapsed_seconds)}; created ${when(job.created)}`;
    document.getElementById("job-problem").textContent = job.error || "";
    const done = ["succeeded", "failed", "cancelled"].includes(job.state);
    if (done) stopRefresh();
    if (job.kind !== "train" && !(done && job.state === "succeeded")) {
      const live = progressView(job, choices).filter(Boolean);
      document.getElementById("job-stages").replaceChildren(...live);
    }
    if (job.state === "succeeded" && shown !== id) {
      shown = id;
      await (job.kind === "train" ? showReport(job) : showResult(job, choices));
    }
  };
  await update();
  if (!shown) refresh(update);
}

async function showResult(job, choices) {
  const [result, trials] = await Promise.all([
    api("GET", `/jobs/${job.job_id}/result`).then((a) => a.data),
    api("GET", `/jobs/${job.job_id}/trials`).then((a) => a.data).catch(() => []),
  ]);
  const stages = ALL_STAGES.filter((s) => result.stages[s]?.feasible);
  const profileOf = (s) => api("GET", `/jobs/${job.job_id}/profiles/${s}?format=json`).then((a) => a.data);
  const profiles = await Promise.all(stages.map(profileOf));
  if (location.hash !== `#/jobs/${job.job_id}`) return; // the person went elsewhere
  const byTrial = groupTrials(trials);
  const details = el("section", { class: "card", id: "stage-details" });
  const open = (stage, which, scroll = true) => {
    for (const node of details.querySelectorAll("[data-stage]")) {
      const mine = node.dataset.stage === stage && (!node.dataset.view || node.dataset.view === which);
      if (node.matches("button")) node.setAttribute("aria-pressed", String(mine));
      else node.hidden = !mine;
    }
    if (scroll) details.scrollIntoView({ behavior: "instant", block: "start" });
  };
  document.getElementById("job-stages").replaceChildren(answersView(result, open));
  const tab = (s, which, words) => el("button", {
    type: "button", class: "tab", "data-stage": s, "data-view": which, onclick: () => open(s, which),
  }, words);
  details.append(el("h1", {}, "Stage details"), el("div", { class: "tabs" }, ...stages.flatMap((s) => [
    tab(s, "config", `${s}: configuration`),
    tab(s, "trials", `${s}: trials and plots`),
  ])));
  stages.forEach((stage, i) => {
    const profile = profiles[i];
    delete profile.meta;
    const mine = byTrial.filter((t) => t.stage === stage);
    details.append(stageDetails(stage, job.job_id, result.stages[stage], profile, mine, choices ?? {}));
  });
  view.append(details);
  if (stages.length) open(stages[0], "trials", false);
}

// A stage's editable configuration, and its searches' plots and trials.
function stageDetails(stage, jobId, answer, profile, trials, choices) {
  const fit = trials.filter((t) => t.search === "fit");
  const tune = trials.filter((t) => t.search === "tune");
  const columns = choices.trial_columns ?? {};
  const editor = configEditor(stage, jobId, profile, choices.config_choices ?? {});
  return el("section", { class: "stage", "data-stage": stage },
    el("div", { "data-stage": stage, "data-view": "config" }, editor),
    el("div", { "data-stage": stage, "data-view": "trials" },
      el("div", { class: "plots" },
        el("div", {}, el("h2", {}, "Fit search: parameters against throughput"), fitPlot(fit, answer)),
        el("div", {}, el("h2", {}, "Tune search: validation loss by epoch"), tunePlot(tune))),
      el("h2", {}, `Fit search: ${plural(fit.length, "configuration")} (click a heading to sort)`),
      trialsTable(fit, "fit", answer, columns.fit),
      el("h2", {}, `Tune search: ${plural(tune.length, "trial")}`),
      trialsTable(tune, "tune", answer, columns.tune)));
}

async function showReport(job) {
  const report = (await api("GET", `/jobs/${job.job_id}/result`)).data;
  if (location.hash !== `#/jobs/${job.job_id}`) return;
  const last = report.epochs.at(-1) || {};
  const columns = ["epoch", "train_loss", "val_loss", "val_rmse", "val_pearson", "lr", "seconds"];
  const cell = (e, c) => el("td", { class: "num" }, c === "epoch" ? e[c] : number(e[c], 4));
  view.append(el("section", { class: "card report" },
    el("h1", {}, "Training run"),
    el("dl", { class: "figures" }, ...[
      ["Parameters", report.parameters?.toLocaleString()],
      ["Device", `${report.device} (${report.precision})`],
      ["Complexes", `${report.train_complexes} training, ${report.val_complexes} validation`],
      ["Time", seconds(report.seconds)],
      ["Validation RMSE", number(last.val_rmse, 4)],
      ["Run folder", report.run_dir ?? ""],
    ].map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v ?? "")))),
    el("table", { class: "epochs" },
      el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c)))),
      el("tbody", {}, ...report.epochs.map((e) => el("tr", {}, ...columns.map((c) => cell(e, c))))))));
}
