// The jobs view: every job, its state and progress, and the form that starts a new one.

import { api } from "./api.js";
import { el, stateBadge } from "./dom.js";
import { progressText, seconds, when } from "./format.js";
import { refresh, useTemplate } from "./page.js";

export async function showJobs() {
  useTemplate("jobs-view");
  const form = document.getElementById("new-job");
  try {
    fillForm(form, (await api("GET", "/choices")).data);
  } catch (error) {
    if (error.status !== 401) document.getElementById("new-job-problem").textContent = error.message;
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    startJob(form);
  });
  await refreshJobs();
  refresh(refreshJobs);
}

function fillForm(form, choices) {
  const preset = form.elements.preset;
  preset.replaceChildren(...Object.keys(choices.presets).map((p) => el("option", { value: p }, p)));
  preset.value = choices.presets.quick ? "quick" : preset.options[0]?.value;
  const stages = form.querySelector("fieldset.stages");
  for (const stage of choices.stages) {
    const box = el("input", { type: "checkbox", name: "stages", value: stage, checked: true });
    stages.append(el("label", {}, box, stage));
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
  const what = (job) => (job.kind === "train"
    ? `training run of profile ${job.options.profile} v${job.options.version}`
    : progressText(job.progress));
  body.replaceChildren(...listed.jobs.map((job) => el("tr", { "data-job": job.job_id },
    el("td", {}, el("a", { href: `#/jobs/${job.job_id}` }, job.job_id)),
    el("td", {}, stateBadge(job.state)),
    el("td", { class: "note" }, what(job)),
    el("td", { class: "num" }, seconds(job.elapsed_seconds)),
    el("td", {}, when(job.created)),
  )));
}
