// The service's API, with the bearer token the person gives (kept in the tab's session storage).

const TOKEN_KEY = "stagetune-token";

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && typeof body === "object" ? body.detail : body;
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.body = body;
  }
}

// One request: `{status, data}` (JSON, else text); an `ApiError` for an answer that is not ok.
// A 401 asks for a token first.
export async function api(method, path, body, accept = "application/json") {
  const headers = { Accept: accept };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const sent = body === undefined ? undefined : JSON.stringify(body);
  const answer = await fetch(path, { method, headers, body: sent });
  if (answer.status === 401) {
    askForToken(token ? "That token was refused." : "");
    throw new ApiError(401, "a token is needed");
  }
  const text = await answer.text();
  const isJson = (answer.headers.get("content-type") || "").includes("json");
  const data = isJson && text ? JSON.parse(text) : text;
  if (!answer.ok) throw new ApiError(answer.status, data);
  return { status: answer.status, data };
}

function askForToken(problem) {
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-problem").textContent = problem;
  if (!dialog.open) dialog.showModal();
}

// Whether the page must ask for a token before its first request: the service says whether it
// needs one (`GET /healthz`, which needs none), so a page opened without one sends no request
// that is refused (each a 401 in the browser's console).
export async function tokenMissing() {
  if (sessionStorage.getItem(TOKEN_KEY)) return false;
  const health = await fetch("/healthz").then((r) => r.json()).catch(() => null);
  if (!health?.token) return false;
  askForToken("");
  return true;
}

// The token dialog's form and the "forget" link; `signedIn` runs once a token is given.
export function tokenForm(signedIn) {
  const forget = document.getElementById("forget-token");
  document.getElementById("token-form").addEventListener("submit", () => {
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    forget.hidden = false;
    signedIn();
  });
  forget.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  forget.hidden = !sessionStorage.getItem(TOKEN_KEY);
}
