// Building the page: elements from data, always as text, never as HTML.

// An element: `attrs` set (a class, `on...` listeners, other attributes; null, undefined and
// false left out), then its children, text or nodes.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

// An SVG element, with its text.
export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// A figure and the notes under it, a line each.
export function lines(first, ...notes) {
  return [first, ...notes.filter(Boolean).flatMap((n) => [el("br"), el("span", { class: "note" }, n)])];
}

export function meter(value, max, what) {
  if (!value || !max) return null;
  const attrs = { min: 0, max, value: Math.min(value, max), low: max * 0.8, high: max * 0.999 };
  return el("meter", { ...attrs, optimum: 0, title: what });
}

export function stateBadge(state) {
  return el("span", { class: `state ${state}`, "data-state": state }, state);
}

// `text` saved by the browser as `filename`.
export function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
