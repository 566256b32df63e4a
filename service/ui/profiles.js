// The saved profiles view.
"use strict";

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
