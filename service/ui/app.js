// The results page's start (index.html loads it, a module, which imports the rest): the view
// the address names, again whenever it changes or a token is given.

import { tokenForm, tokenMissing } from "./api.js";
import { showJob } from "./job.js";
import { showJobs } from "./jobs.js";
import { stopRefresh } from "./page.js";
import { showProfiles } from "./profiles.js";

function route() {
  stopRefresh();
  const hash = location.hash || "#/";
  const current = hash.startsWith("#/profiles") ? "profiles" : "jobs";
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("current", link.dataset.nav === current);
  }
  const job = hash.match(/^#\/jobs\/([A-Za-z0-9_.-]+)$/);
  if (job) return showJob(job[1]);
  if (hash.startsWith("#/profiles")) return showProfiles();
  return showJobs();
}

tokenForm(route);
window.addEventListener("hashchange", route);
if (!(await tokenMissing())) route(); // else the token form routes once it is given
