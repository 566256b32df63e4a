// The results page's start: the view the address names. The page's scripts, in the order
// index.html loads them: common.js (the API, helpers, routing), then one per view (jobs.js,
// job.js, compare.js, editor.js, plots.js, trials.js, profiles.js), then this one.
"use strict";

route();
