// The plots of a stage, drawn as SVG: the fit search (parameters against throughput) and the
// tune search (validation loss per epoch).

import { el, svg } from "./dom.js";
import { figure, loss, minutes, modelWords, plural } from "./format.js";
import { chosenTune, knobsOf, prunedCapacity, prunedWhy } from "./records.js";
import { axis } from "./scales.js";

function frame(width, height, xs, ys, xLabel, yLabel) {
  const plot = svg("svg", { class: "plot", viewBox: `0 0 ${width} ${height}`, role: "img" });
  const m = { l: 64, r: 18, t: 14, b: 40 };
  const x = axis(xs.lo, xs.hi, m.l, width - m.r, xs);
  const y = axis(ys.lo, ys.hi, height - m.b, m.t, { ...ys, parts: 4 });
  for (const t of x.ticks) {
    plot.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: m.t, y2: height - m.b }));
    const at = { class: "tick x-tick", x: x(t), y: height - m.b + 14, "text-anchor": "middle" };
    plot.append(svg("text", at, x.label(t)));
  }
  for (const t of y.ticks) {
    plot.append(svg("line", { class: "grid", x1: m.l, x2: width - m.r, y1: y(t), y2: y(t) }));
    const at = { class: "tick y-tick", x: m.l - 4, y: y(t) + 4, "text-anchor": "end" };
    plot.append(svg("text", at, y.label(t)));
  }
  const bottom = height - m.b;
  plot.append(svg("line", { class: "axis", x1: m.l, x2: width - m.r, y1: bottom, y2: bottom }));
  plot.append(svg("line", { class: "axis", x1: m.l, x2: m.l, y1: m.t, y2: bottom }));
  plot.append(svg("text", { x: (m.l + width - m.r) / 2, y: height - 6, "text-anchor": "middle" }, xLabel));
  const middle = (m.t + bottom) / 2;
  const turned = { x: 12, y: middle, transform: `rotate(-90 12 ${middle})`, "text-anchor": "middle" };
  plot.append(svg("text", turned, yLabel));
  return { plot, x, y, m, width, height };
}

function probeMark(t, x, y, feasible) {
  const [cx, cy] = [x(t.v["probe.throughput"] || 0), y(t.v["probe.capacity"])];
  const mark = feasible
    ? svg("circle", { class: "feasible", cx, cy, r: 4 })
    : svg("rect", { class: "infeasible", x: cx - 4, y: cy - 4, width: 8, height: 8 });
  const figures = [
    `${t.v["probe.capacity"].toLocaleString("en")} parameters`,
    `${figure(t.v["probe.throughput"] || 0)} complexes/s`,
    `batch ${t.v["probe.max_batch_size"] ?? "none"}`,
    `cycle ${minutes(t.v["probe.cycle_minutes"] || 0)}`,
  ];
  const title = `${feasible ? "feasible" : "infeasible"}: ${modelWords(knobsOf(t))}; ${figures.join(", ")}`;
  mark.append(svg("title", {}, title));
  return mark;
}

function prunedMark(t, capacity, x, y, bottom) {
  const [cx, cy] = [x(0), capacity ? y(capacity) : bottom];
  const d = `M${cx - 4},${cy - 4}L${cx + 4},${cy + 4}M${cx - 4},${cy + 4}L${cx + 4},${cy - 4}`;
  const mark = svg("path", { class: "pruned", d });
  const least = capacity ? `; at least ${capacity.toLocaleString("en")} parameters` : "";
  mark.append(svg("title", {}, `pruned without a probe: ${modelWords(knobsOf(t))}; ${prunedWhy(t)}${least}`));
  return mark;
}

export function fitPlot(trials, answer) {
  const probed = trials.filter((t) => t.status === "probed" && t.v["probe.capacity"]);
  if (!probed.length) return el("p", { class: "note" }, "No probes recorded for this search.");
  // the policy's own judgement and budget, as the job recorded them; jobs from before they
  // were recorded carry the stage's time budget in every fit trial
  const allowed = answer.budget ? answer.budget.minutes_allowed : probed[0].v["stage.minutes_allowed"];
  const judged = (t) => t.v["probe.fits"] && t.v["probe.throughput"]
    && (!allowed || t.v["probe.cycle_minutes"] <= allowed);
  const feasible = (t) => (typeof t.v["probe.feasible"] === "boolean" ? t.v["probe.feasible"] : judged(t));
  const pruned = trials.filter((t) => t.status === "pruned").map((t) => [t, prunedCapacity(t, probed)]);
  const chosen = answer.probe;
  const batches = answer.budget?.cycle_batches || probed[0].v["probe.cycle_batches"] || 450;
  const budget = allowed && answer.batch_size ? (batches * answer.batch_size) / (allowed * 60) : null;
  const capacity = [
    ...probed.map((t) => t.v["probe.capacity"]), ...pruned.map(([, c]) => c), chosen?.capacity,
  ].filter(Boolean);
  const speeds = probed.map((t) => t.v["probe.throughput"] || 0);
  const xMax = Math.max(...speeds, chosen?.throughput || 0, budget || 0) * 1.05 || 1;
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
  for (const t of probed) plot.append(probeMark(t, x, y, feasible(t)));
  for (const [t, c] of pruned) plot.append(prunedMark(t, c, x, y, height - m.b));
  if (chosen?.throughput) {
    plot.append(svg("circle", { class: "chosen", cx: x(chosen.throughput), cy: y(chosen.capacity), r: 9 }));
  }
  const over = allowed ? " or over the time budget" : "";
  return el("figure", {}, plot, el("figcaption", { class: "note" },
    `● feasible, □ infeasible (did not fit${over}), × pruned without a probe (at throughput 0, at `
    + `the parameters of the model it dominates), ◯ chosen. ${probed.length} probed, ${pruned.length} pruned.`));
}

export function tunePlot(trials) {
  const finished = trials.filter((t) => typeof t.v["result.val_loss"] === "number");
  if (!finished.length) {
    return el("p", { class: "note" }, "No tune search for this stage (hardware-only answer).");
  }
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
    const drawn = points.map(([e, l]) => `${x(e)},${y(l)}`).join(" ");
    const line = svg("polyline", { class: `${kind}${t === best ? " best" : ""}`, points: drawn });
    const after = `validation loss ${loss(t.v["result.val_loss"])} after ${plural(epochsOf(t), "epoch")}`;
    line.append(svg("title", {}, `${t.trial_id}: ${t.status}, ${after}`));
    plot.append(line);
    const [e, l] = points.at(-1);
    plot.append(svg("circle", { cx: x(e), cy: y(l), r: 3, class: kind === "stopped" ? "infeasible" : "feasible" }));
  }
  const stopped = finished.filter((t) => t.status === "stopped_early").length;
  return el("figure", {}, plot, el("figcaption", { class: "note" },
    `solid, ending in ●: ran every epoch; dashed, ending in ○: stopped early by ASHA (${stopped} of `
    + `${finished.length}); thick: the chosen trial (validation loss ${loss(best.v["result.val_loss"])}).`));
}
