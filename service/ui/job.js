// One job: its progress while it runs, then its three stage answers side by side with the figures behind them.
"use strict";

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
  const b = answer.batching || {};
  const items = [
    ["Atom budget", b.max_atoms_per_batch ? `${b.max_atoms_per_batch.toLocaleString()} atoms a batch` : "none (fixed batches)"],
    ["On your data", b.cycle_minutes_on_data ? `${number(b.complexes_per_batch)} complexes a batch, ${number(b.cycle_minutes_on_data)} min a cycle, ${number(b.throughput_on_data)} complexes/s` : ""],
    ["Batch size", answer.batch_size], ["Largest batch that fits", p.max_batch_size],
    ["Parameters", p.capacity?.toLocaleString()], ["Peak memory", `${bytes(p.peak_bytes)} of ${bytes(p.limit_bytes)}`],
    ["Cycle (450 batches, worst case)", p.cycle_minutes ? `${number(p.cycle_minutes)} min` : ""],
    ["Throughput", p.throughput ? `${number(p.throughput)} samples/s` : ""],
    ["Measured on", answer.device?.device_model ?? ""], ["Probe steps", p.probe_steps],
    ["Validation loss", v ? `${number(v.val_loss, 4)} after ${v.epochs} epochs` : "not tuned"],
  ];
  return el("dl", { class: "figures" }, ...items.flatMap(([k, value]) => [el("div", {}, el("dt", {}, k), el("dd", {}, value ?? ""))]));
}
