// Calls to the Tidings HTTP API with the login session: the HttpOnly
// session cookie is sent by the browser; writes echo the CSRF token from
// the login answer in `x-csrf-token`.

let csrfToken = null;

/** An answer that is not 2xx, with the server's `{error:{code,message}}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** `fetch` of a same-origin path, relative to the page; parses JSON. */
export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["x-csrf-token"] = csrfToken;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  // /health/detailed answers 503 with its body when degraded: still data.
  if (!response.ok && !(response.status === 503 && data && data.components)) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "http_error",
      error.message || `${method} ${path}: HTTP ${response.status}`);
  }
  return data;
}

/** Who the browser's session belongs to, or null when not logged in. */
export async function currentUser() {
  const me = await call("GET", "api/v1/auth/me");
  if (!me || !me.subject || !me.csrf_token) return null;
  csrfToken = me.csrf_token;
  return { name: me.subject, roles: me.roles || [] };
}

export async function login(username, password) {
  const answer = await call("POST", "api/v1/auth/login", { username, password });
  csrfToken = answer.csrf_token;
  return { name: answer.user.name, roles: [answer.user.role] };
}

export async function logout() {
  try {
    await call("POST", "api/v1/auth/logout");
  } finally {
    csrfToken = null;
  }
}

export function health() {
  return call("GET", "health/detailed");
}
