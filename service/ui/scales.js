// The plots' scales: pure functions of numbers (tests/service/test_ui_units.py tests them).

import { figure } from "./format.js";

// A step of 1, 2 or 5 times a power of ten that cuts `span` into at most `parts` pieces.
export function niceStep(span, parts) {
  const raw = span / parts || 1;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * magnitude;
}

function logTicks(lo, hi) {
  const a = Math.floor(Math.log10(lo));
  const b = Math.ceil(Math.log10(hi));
  const steps = b - a <= 2 ? [1, 2, 5] : [1];
  const ticks = [];
  for (let e = a; e <= b; e++) for (const m of steps) ticks.push(m * 10 ** e);
  const inside = ticks.filter((t) => t >= lo / 1.0001 && t <= hi * 1.0001);
  return inside.length < 2 ? [lo, hi] : inside;
}

// An axis over [lo, hi] drawn from `from` to `to`: widened to whole steps, with ticks at round
// numbers (whole numbers only when `integer`; 1, 2, 5 x 10^k when `log`) and labels with just
// the digits they need. A function from a value to its place, with `ticks` and `label`.
export function axis(lo, hi, from, to, { log = false, integer = false, parts = 5 } = {}) {
  let ticks;
  if (log) {
    ticks = logTicks(lo, hi);
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
  const digits = { minimumFractionDigits: ticks.decimals, maximumFractionDigits: ticks.decimals };
  map.ticks = ticks;
  map.label = (t) => (log ? figure(t) : t.toLocaleString("en", digits));
  return map;
}
