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

function scale(lo, hi, from, to, log) {
  const f = log ? Math.log10 : (x) => x;
  const a = f(lo);
  const b = f(hi) === a ? a + 1 : f(hi);
  const map = (x) => from + ((f(x) - a) / (b - a)) * (to - from);
  map.ticks = () => {
    if (log) {
      const out = [];
      for (let e = Math.floor(a); e <= Math.ceil(b); e++) if (10 ** e >= lo / 1.0001 && 10 ** e <= hi * 1.0001) out.push(10 ** e);
      return out.length >= 2 ? out : [lo, hi];
    }
    return [0, 1, 2, 3, 4].map((i) => lo + ((hi - lo) * i) / 4);
  };
  return map;
}

function digitsFor(lo, hi) {
  // enough significant digits that neighbouring ticks read differently
  const span = Math.abs(hi - lo) || Math.abs(hi) || 1;
  return Math.min(8, Math.max(3, Math.ceil(Math.log10(Math.max(Math.abs(lo), Math.abs(hi)) / span)) + 2));
}

function frame(width, height, xs, ys, xLabel, yLabel) {
  const plot = svg("svg", { class: "plot", viewBox: `0 0 ${width} ${height}`, role: "img" });
  const m = { l: 72, r: 22, t: 14, b: 38 };
  const x = scale(xs[0], xs[1], m.l, width - m.r, xs[2]);
  const y = scale(ys[0], ys[1], height - m.b, m.t, ys[2]);
  for (const t of x.ticks()) {
    plot.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: m.t, y2: height - m.b }));
    plot.append(svg("text", { x: x(t), y: height - m.b + 14, "text-anchor": "middle" }, number(t, xs[2] ? 3 : digitsFor(xs[0], xs[1]))));
  }
  for (const t of y.ticks()) {
    plot.append(svg("line", { class: "grid", x1: m.l, x2: width - m.r, y1: y(t), y2: y(t) }));
    plot.append(svg("text", { x: m.l - 4, y: y(t) + 4, "text-anchor": "end" }, number(t, ys[2] ? 3 : digitsFor(ys[0], ys[1]))));
  }
  plot.append(svg("line", { class: "axis", x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b }));
  plot.append(svg("line", { class: "axis", x1: m.l, x2: m.l, y1: m.t, y2: height - m.b }));
  plot.append(svg("text", { x: (m.l + width - m.r) / 2, y: height - 6, "text-anchor": "middle" }, xLabel));
  plot.append(svg("text", { x: 12, y: (m.t + height - m.b) / 2, transform: `rotate(-90 12 ${(m.t + height - m.b) / 2})`, "text-anchor": "middle" }, yLabel));
  return { plot, x, y, m, width, height };
}

function fitPlot(trials, answer) {
  const probed = trials.filter((t) => t.status === "probed" && t.v["probe.capacity"]);
  if (!probed.length) return el("p", { class: "note" }, "No probes recorded for this search.");
  // the policy's own judgement and budget, as the job recorded them; jobs from before they
  // were recorded carry the stage's time budget in every fit trial
  const allowed = answer.budget ? answer.budget.minutes_allowed : probed[0].v["stage.minutes_allowed"];
  const judged = (t) => t.v["probe.fits"] && t.v["probe.throughput"] && (!allowed || t.v["probe.cycle_minutes"] <= allowed);
  const feasible = (t) => (typeof t.v["probe.feasible"] === "boolean" ? t.v["probe.feasible"] : judged(t));
  const throughput = probed.map((t) => t.v["probe.throughput"] || 0);
  const capacity = probed.map((t) => t.v["probe.capacity"]);
  const chosen = answer.probe;
  const batches = answer.budget?.cycle_batches || probed[0].v["probe.cycle_batches"] || 450;
  const budget = allowed && answer.batch_size ? (batches * answer.batch_size) / (allowed * 60) : null;
  const xMax = Math.max(...throughput, chosen?.throughput || 0, budget || 0) * 1.1 || 1;
  const cMin = Math.min(...capacity, chosen?.capacity || Infinity);
  const cMax = Math.max(...capacity, chosen?.capacity || 0);
  const log = cMax / cMin > 20;
  const { plot, x, y, m, height } = frame(520, 300, [0, xMax, false], [log ? cMin / 1.5 : 0, cMax * 1.15, log], "throughput (samples/s; 0: did not fit)", "parameters");
  plot.classList.add("fit-plot");
  if (budget) {
    plot.append(svg("line", { class: "budget", x1: x(budget), x2: x(budget), y1: m.t, y2: height - m.b }));
    plot.append(svg("text", { x: x(budget) + 4, y: m.t + 10 }, `time budget at batch ${answer.batch_size}: ${allowed} min`));
  }
  for (const t of probed) {
    const cx = x(t.v["probe.throughput"] || 0);
    const cy = y(t.v["probe.capacity"]);
    const ok = feasible(t);
    const mark = ok ? svg("circle", { class: "feasible", cx, cy, r: 4 }) : svg("rect", { class: "infeasible", x: cx - 4, y: cy - 4, width: 8, height: 8 });
    mark.append(svg("title", {}, `${ok ? "feasible" : "infeasible"}: ${t.v["probe.capacity"]} parameters, ${number(t.v["probe.throughput"] || 0)} samples/s, batch ${t.v["probe.max_batch_size"] ?? "none"}, cycle ${number(t.v["probe.cycle_minutes"] || 0)} min`));
    plot.append(mark);
  }
  if (chosen?.throughput) {
    plot.append(svg("circle", { class: "chosen", cx: x(chosen.throughput), cy: y(chosen.capacity), r: 9 }));
  }
  const pruned = trials.filter((t) => t.status === "pruned").length;
  return el("figure", {}, plot, el("figcaption", { class: "note" },
    `● feasible, □ infeasible (did not fit${allowed ? " or over the time budget" : ""}), ◯ chosen. ${probed.length} probed, ${pruned} pruned without a probe.`));
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
  const lo = Math.min(...losses);
  const hi = Math.max(...losses);
  const { plot, x, y } = frame(520, 260, [1, Math.max(2, maxEpochs), false], [lo - (hi - lo) * 0.1 || lo * 0.9, hi + (hi - lo) * 0.1 || hi * 1.1, false], "epochs (ASHA's budget)", "validation loss");
  plot.classList.add("tune-plot");
  const best = finished.reduce((a, b) => ((a.status === "completed") > (b.status === "completed") || ((a.status === "completed") === (b.status === "completed") && a.v["result.val_loss"] <= b.v["result.val_loss"]) ? a : b));
  for (const t of finished) {
    const history = historyOf(t);
    const points = history ? history.map((l, i) => [i + 1, l]) : [[epochsOf(t), t.v["result.val_loss"]]];
    const kind = t.status === "stopped_early" ? "stopped" : "completed";
    const line = svg("polyline", { class: `${kind}${t === best ? " best" : ""}`, points: points.map(([e, l]) => `${x(e)},${y(l)}`).join(" ") });
    line.append(svg("title", {}, `${t.trial_id}: ${t.status}, val_loss ${number(t.v["result.val_loss"], 4)} after ${epochsOf(t)} epoch(s)`));
    plot.append(line);
    const [e, l] = points.at(-1);
    plot.append(svg("circle", { cx: x(e), cy: y(l), r: 3, class: kind === "stopped" ? "infeasible" : "feasible" }));
  }
  const stopped = finished.filter((t) => t.status === "stopped_early").length;
  return el("figure", {}, plot, el("figcaption", { class: "note" },
    `solid, ending in ●: ran every epoch; dashed, ending in ○: stopped early by ASHA (${stopped} of ${finished.length}); thick: the chosen trial.`));
}
