// The saved profiles view.

import { api } from "./api.js";
import { el } from "./dom.js";
import { downloadProfile } from "./editor.js";
import { when } from "./format.js";
import { useTemplate, view } from "./page.js";

function profileRow(p) {
  const filename = `${p.name}-v${p.version}.yaml`;
  const get = el("button", {
    type: "button", class: "plain download", onclick: () => downloadProfile(p.name, p.version, filename),
  }, "Download YAML");
  return el("tr", { "data-profile": p.name },
    el("td", {}, p.name),
    el("td", { class: "num" }, `v${p.version} (${p.versions} saved)`),
    el("td", {}, p.stage ?? ""),
    el("td", {}, p.job_id ? el("a", { href: `#/jobs/${p.job_id}` }, p.job_id) : ""),
    el("td", {}, when(p.created)),
    el("td", {}, get));
}

export async function showProfiles() {
  useTemplate("profiles-view");
  let listed;
  try {
    listed = (await api("GET", "/profiles")).data;
  } catch (error) {
    view.append(el("p", { class: "problem" }, error.message));
    return;
  }
  const rows = listed.profiles.map(profileRow);
  if (!rows.length) {
    const hint = "No saved profiles yet. Open a finished job, edit a stage's configuration if you like, "
      + "and save it as a profile: it is listed here, versioned, to download or train with.";
    rows.push(el("tr", { class: "empty" }, el("td", { colspan: 6, class: "note" }, hint)));
  }
  document.querySelector("#profiles tbody").replaceChildren(...rows);
}
