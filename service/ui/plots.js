// The plots of a stage, drawn as SVG: the fit search (parameters against throughput) and the tune search (validation loss per epoch).
"use strict";

// --- plots ---------------------------------------------------------------------------------

function groupTrials(rows) {
  const trials = new Map();
  for (const row of rows) {
    const key = `${row.stage}/${row.search}/${row.trial_id}`;
    if (!trials.has(key)) trials.set(key, { stage: row.stage, search: row.search, trial_id: row.trial_id, status: row.status, v: {} });
    trials.get(key).v[row.variable] = row.value;
  }
  return [...trials.values()];
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// A step of 1, 2 or 5 times a power of ten that cuts `span` into at most `parts` pieces.
function niceStep(span, parts) {
  const raw = span / parts || 1;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * magnitude;
}

// An axis over [lo, hi]: widened to whole steps, with ticks at round numbers (whole numbers
// only when `integer`; 1, 2, 5 x 10^k when `log`) and labels with just the digits they need.
function axis(lo, hi, from, to, { log = false, integer = false, parts = 5 } = {}) {
  let ticks;
  if (log) {
    const a = Math.floor(Math.log10(lo));
    const b = Math.ceil(Math.log10(hi));
    const steps = b - a <= 2 ? [1, 2, 5] : [1];
    ticks = [];
    for (let e = a; e <= b; e++) for (const m of steps) ticks.push(m * 10 ** e);
    ticks = ticks.filter((t) => t >= lo / 1.0001 && t <= hi * 1.0001);
    if (ticks.length < 2) ticks = [lo, hi];
  } else {
    let step = niceStep(hi - lo, parts);
    if (integer) step = Math.max(1, Math.round(step));
    lo = Math.floor(lo / step) * step;
    hi = Math.max(Math.ceil(hi / step) * step, lo + step);
    ticks = [];
    for (let t = lo; t <= hi + step / 1e6; t += step) ticks.push(Number(t.toPrecision(12)));
    ticks.decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  }
  const f = log ? Math.log10 : (v) => v;
  const [a, b] = [f(lo), f(hi) === f(lo) ? f(lo) + 1 : f(hi)];
  const map = (v) => from + ((f(v) - a) / (b - a)) * (to - from);
  map.ticks = ticks;
  map.label = (t) => (log ? figure(t) : t.toLocaleString("en", { minimumFractionDigits: ticks.decimals, maximumFractionDigits: ticks.decimals }));
  return map;
}

function frame(width, height, xs, ys, xLabel, yLabel) {
  const plot = svg("svg", { class: "plot", viewBox: `0 0 ${width} ${height}`, role: "img" });
  const m = { l: 64, r: 18, t: 14, b: 40 };
  const x = axis(xs.lo, xs.hi, m.l, width - m.r, xs);
  const y = axis(ys.lo, ys.hi, height - m.b, m.t, { ...ys, parts: 4 });
  for (const t of x.ticks) {
    plot.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: m.t, y2: height - m.b }));
    plot.append(svg("text", { class: "tick x-tick", x: x(t), y: height - m.b + 14, "text-anchor": "middle" }, x.label(t)));
  }
  for (const t of y.ticks) {
    plot.append(svg("line", { class: "grid", x1: m.l, x2: width - m.r, y1: y(t), y2: y(t) }));
    plot.append(svg("text", { class: "tick y-tick", x: m.l - 4, y: y(t) + 4, "text-anchor": "end" }, y.label(t)));
  }
  plot.append(svg("line", { class: "axis", x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b }));
  plot.append(svg("line", { class: "axis", x1: m.l, x2: m.l, y1: m.t, y2: height - m.b }));
  plot.append(svg("text", { x: (m.l + width - m.r) / 2, y: height - 6, "text-anchor": "middle" }, xLabel));
  plot.append(svg("text", { x: 12, y: (m.t + height - m.b) / 2, transform: `rotate(-90 12 ${(m.t + height - m.b) / 2})`, "text-anchor": "middle" }, yLabel));
  return { plot, x, y, m, width, height };
}

// Where a pruned configuration goes on the fit plot: it never ran (throughput 0); its
// parameters as counted when it was pruned; for a job of an earlier version, those of the
// model it dominates (a lower bound), or the bound production pruned it by (its parameter
// count); null when none is known.
function prunedCapacity(t, probed) {
  if (t.v["pruned.capacity"]) return t.v["pruned.capacity"];
  const failed = Object.entries(t.v).filter(([k]) => k.startsWith("pruned_by."));
  if (failed.length) {
    const twin = probed.find((p) => failed.every(([k, v]) => p.v[`model.${k.slice(10)}`] === v));
    return twin ? twin.v["probe.capacity"] : null;
  }
  return t.v["stage.policy"] === "largest_capacity" && t.v["pruned.bound"] > 0 ? t.v["pruned.bound"] : null;
}

function fitPlot(trials, answer) {
  const probed = trials.filter((t) => t.status === "probed" && t.v["probe.capacity"]);
  if (!probed.length) return el("p", { class: "note" }, "No probes recorded for this search.");
  // the policy's own judgement and budget, as the job recorded them; jobs from before they
  // were recorded carry the stage's time budget in every fit trial
  const allowed = answer.budget ? answer.budget.minutes_allowed : probed[0].v["stage.minutes_allowed"];
  const judged = (t) => t.v["probe.fits"] && t.v["probe.throughput"] && (!allowed || t.v["probe.cycle_minutes"] <= allowed);
  const feasible = (t) => (typeof t.v["probe.feasible"] === "boolean" ? t.v["probe.feasible"] : judged(t));
  const pruned = trials.filter((t) => t.status === "pruned").map((t) => [t, prunedCapacity(t, probed)]);
  const chosen = answer.probe;
  const batches = answer.budget?.cycle_batches || probed[0].v["probe.cycle_batches"] || 450;
  const budget = allowed && answer.batch_size ? (batches * answer.batch_size) / (allowed * 60) : null;
  const capacity = [...probed.map((t) => t.v["probe.capacity"]), ...pruned.map(([, c]) => c).filter(Boolean), chosen?.capacity].filter(Boolean);
  const xMax = Math.max(...probed.map((t) => t.v["probe.throughput"] || 0), chosen?.throughput || 0, budget || 0) * 1.05 || 1;
  const [cMin, cMax] = [Math.min(...capacity), Math.max(...capacity)];
  const log = cMax / cMin > 20;
  const { plot, x, y, m, height } = frame(560, 320, { lo: 0, hi: xMax },
    log ? { lo: cMin / 1.3, hi: cMax * 1.3, log } : { lo: 0, hi: cMax * 1.1 },
    "throughput at the largest batch that fits (complexes/s, worst case; 0: did not fit)", "parameters");
  plot.classList.add("fit-plot");
  if (budget) {
    plot.append(svg("line", { class: "budget", x1: x(budget), x2: x(budget), y1: m.t, y2: height - m.b }));
    plot.append(svg("text", { x: x(budget) + 4, y: m.t + 10 }, `${allowed} min a cycle at batch ${answer.batch_size}`));
  }
  for (const t of probed) {
    const [cx, cy] = [x(t.v["probe.throughput"] || 0), y(t.v["probe.capacity"])];
    const ok = feasible(t);
    const mark = ok ? svg("circle", { class: "feasible", cx, cy, r: 4 }) : svg("rect", { class: "infeasible", x: cx - 4, y: cy - 4, width: 8, height: 8 });
    mark.append(svg("title", {}, `${ok ? "feasible" : "infeasible"}: ${modelWords(knobsOf(t))}; ${t.v["probe.capacity"].toLocaleString("en")} parameters, ${figure(t.v["probe.throughput"] || 0)} complexes/s, batch ${t.v["probe.max_batch_size"] ?? "none"}, cycle ${minutes(t.v["probe.cycle_minutes"] || 0)}`));
    plot.append(mark);
  }
  for (const [t, c] of pruned) {
    const [cx, cy] = [x(0), c ? y(c) : height - m.b];
    const mark = svg("path", { class: "pruned", d: `M${cx - 4},${cy - 4}L${cx + 4},${cy + 4}M${cx - 4},${cy + 4}L${cx + 4},${cy - 4}` });
    mark.append(svg("title", {}, `pruned without a probe: ${modelWords(knobsOf(t))}; ${prunedWhy(t)}${c ? `; at least ${c.toLocaleString("en")} parameters` : ""}`));
    plot.append(mark);
  }
  if (chosen?.throughput) {
    plot.append(svg("circle", { class: "chosen", cx: x(chosen.throughput), cy: y(chosen.capacity), r: 9 }));
  }
  return el("figure", {}, plot, el("figcaption", { class: "note" },
    `● feasible, □ infeasible (did not fit${allowed ? " or over the time budget" : ""}), × pruned without a probe (at throughput 0, at the parameters of the model it dominates), ◯ chosen. ${probed.length} probed, ${pruned.length} pruned.`));
}

function knobsOf(t) {
  return Object.fromEntries(Object.entries(t.v).filter(([k]) => k.startsWith("model.")).map(([k, v]) => [k.slice(6), v]));
}

// The tune search's answer: a trial that ran every epoch before one ASHA stopped, then the
// lowest validation loss (the rule the job chose by).
function chosenTune(trials) {
  const finished = trials.filter((t) => typeof t.v["result.val_loss"] === "number");
  if (!finished.length) return null;
  const rank = (t) => [t.status === "completed" ? 0 : 1, t.v["result.val_loss"]];
  return finished.reduce((a, b) => {
    const [ra, rb] = [rank(a), rank(b)];
    return ra[0] < rb[0] || (ra[0] === rb[0] && ra[1] <= rb[1]) ? a : b;
  });
}

function tunePlot(trials) {
  const finished = trials.filter((t) => typeof t.v["result.val_loss"] === "number");
  if (!finished.length) return el("p", { class: "note" }, "No tune search for this stage (hardware-only answer).");
  const historyOf = (t) => {
    const history = t.v["result.val_loss_by_epoch"];
    return Array.isArray(history) && history.length ? history : null;
  };
  const epochsOf = (t) => historyOf(t)?.length ?? t.v["train.epochs_run"];
  const losses = finished.flatMap((t) => historyOf(t) ?? [t.v["result.val_loss"]]).filter(Number.isFinite);
  const maxEpochs = Math.max(...finished.map((t) => t.v["train.max_epochs"] || epochsOf(t)));
  const [lo, hi] = [Math.min(...losses), Math.max(...losses)];
  const pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.01 || 0.01;
  const { plot, x, y } = frame(560, 320, { lo: 1, hi: Math.max(2, maxEpochs), integer: true },
    { lo: lo - pad, hi: hi + pad }, "epoch (ASHA's budget: the most a trial may run)", "validation loss (MSE)");
  plot.classList.add("tune-plot");
  const best = chosenTune(finished);
  for (const t of finished) {
    const history = historyOf(t);
    const points = history ? history.map((l, i) => [i + 1, l]) : [[epochsOf(t), t.v["result.val_loss"]]];
    const kind = t.status === "stopped_early" ? "stopped" : "completed";
    const line = svg("polyline", { class: `${kind}${t === best ? " best" : ""}`, points: points.map(([e, l]) => `${x(e)},${y(l)}`).join(" ") });
    line.append(svg("title", {}, `${t.trial_id}: ${t.status}, validation loss ${loss(t.v["result.val_loss"])} after ${plural(epochsOf(t), "epoch")}`));
    plot.append(line);
    const [e, l] = points.at(-1);
    plot.append(svg("circle", { cx: x(e), cy: y(l), r: 3, class: kind === "stopped" ? "infeasible" : "feasible" }));
  }
  const stopped = finished.filter((t) => t.status === "stopped_early").length;
  return el("figure", {}, plot, el("figcaption", { class: "note" },
    `solid, ending in ●: ran every epoch; dashed, ending in ○: stopped early by ASHA (${stopped} of ${finished.length}); thick: the chosen trial (validation loss ${loss(best.v["result.val_loss"])}).`));
}
