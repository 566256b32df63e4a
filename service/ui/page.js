// The page's one view (the element the address's view fills) and its refresh.

export const view = document.getElementById("view");
let timer = null;

// Run `update` every `ms` milliseconds, in place of the view's last refresh.
export function refresh(update, ms = 2000) {
  clearInterval(timer);
  timer = setInterval(update, ms);
}

export function stopRefresh() {
  clearInterval(timer);
  timer = null;
}

// The view filled with a copy of the template `id` of index.html.
export function useTemplate(id) {
  view.replaceChildren(document.getElementById(id).content.cloneNode(true));
}
