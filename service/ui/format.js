// How the page writes figures for people, each with its unit: pure functions of their
// arguments, no page and no API (tests/service/test_ui_units.py tests them in Chromium).

// A duration: seconds under 90 s, minutes under 90 min, else hours.
export function seconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// A size in bytes, in binary units (KiB, MiB, ...), as the tuner writes sizes.
export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// A number to `digits` significant digits; compact (1.9K) from a thousand up.
export function number(x, digits = 3) {
  if (x === null || x === undefined) return "";
  if (Math.abs(x) >= 1000) {
    const compact = { notation: "compact", maximumSignificantDigits: digits };
    return new Intl.NumberFormat("en", compact).format(x);
  }
  return String(Number(Number(x).toPrecision(digits)));
}

// A figure for people: three significant digits, thousands grouped (1,940; 0.302; 58,772).
export function figure(x, digits = 3) {
  if (x === null || x === undefined || !Number.isFinite(Number(x))) return "";
  const n = Number(x);
  if (Math.abs(n) >= 10 ** digits) return Math.round(n).toLocaleString("en");
  if (n !== 0 && Math.abs(n) < 1e-3) return n.toExponential(digits - 1).replace(/\.?0+e/, "e");
  return new Intl.NumberFormat("en", { maximumSignificantDigits: digits }).format(n);
}

// The loss as the job's log writes it: four decimals.
export function loss(x) {
  return x === null || x === undefined || !Number.isFinite(x) ? "" : x.toFixed(4);
}

export function minutes(m) {
  if (m === null || m === undefined) return "";
  return m >= 180 ? `${figure(m / 60)} h` : `${figure(m)} min`;
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

export function when(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleString();
}

// A job's progress in one line: each search's trials done (of its total), and those running.
export function progressText(progress) {
  const parts = [];
  for (const [stage, searches] of Object.entries(progress || {})) {
    for (const [search, p] of Object.entries(searches)) {
      const total = p.total ? `/${p.total}` : "";
      const running = p.running ? ` (+${p.running} running)` : "";
      parts.push(`${stage} ${search}: ${p.done ?? 0}${total}${running}`);
    }
  }
  return parts.join("; ");
}

// A model as people name it: "16 channels × 2 layers, 2 heads, 8 RBF, cutoff 5 Å".
export function modelWords(m) {
  const parts = [];
  if (m.hidden_channels !== undefined) parts.push(`${m.hidden_channels} channels`);
  if (m.num_layers !== undefined) parts.push(plural(Number(m.num_layers), "layer"));
  const rest = [];
  if (m.num_heads !== undefined) rest.push(`${m.num_heads} heads`);
  if (m.num_rbf !== undefined) rest.push(`${m.num_rbf} RBF`);
  if (m.cutoff !== undefined && m.cutoff !== null) rest.push(`cutoff ${figure(m.cutoff)} Å`);
  return [parts.join(" × "), ...rest].filter(Boolean).join(", ");
}

// A trial's value in a table: `kind` picks the format (count, bytes, minutes, figure, loss);
// yes or no for a boolean, text as it is, anything else as JSON.
export function shownValue(value, kind) {
  if (value === null || value === undefined || value === "") return "";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value !== "number") return typeof value === "string" ? value : JSON.stringify(value);
  if (kind === "bytes") return bytes(value);
  if (kind === "count") return Math.round(value).toLocaleString("en");
  return kind === "loss" ? loss(value) : figure(value);
}
