// Calls to the Tidings HTTP API with the login session: the HttpOnly
// session cookie is sent by the browser; writes echo the CSRF token from
// the login answer in `x-csrf-token`. Every path is relative to the page.

let csrfToken = null;
let unauthorized = () => {};

/**
 * `JSON.parse` that keeps numbers a double would change (big integers, long
 * decimals) as their source text, so that `JSON.stringify` shows them as
 * sent; where the browser lacks `JSON.rawJSON`, plain `JSON.parse`.
 */
export function parseExact(text) {
  if (typeof JSON.rawJSON !== "function") return JSON.parse(text);
  return JSON.parse(text, (key, value, context) =>
    typeof value === "number" && context && context.source !== undefined
      && String(value) !== context.source ? JSON.rawJSON(context.source) : value);
}

/** An answer that is not 2xx, with the server's `{error:{code,message}}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Whether `e` is a fetch cancelled because its page was left. */
export function isAbort(e) {
  return e && e.name === "AbortError";
}

/** `fn` runs whenever a call answers 401 (the session has ended). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/** The server's message, with the details of a validation error. */
function errorText(error, fallback) {
  const details = Array.isArray(error.details)
    ? error.details.map((d) => d && d.message).filter(Boolean)
    : [];
  const message = error.message || fallback;
  return details.length ? `${message}: ${details.join("; ")}` : message;
}

/**
 * `fetch` of a same-origin path, relative to the page; parses JSON.
 * `options.signal` cancels it; `options.quiet401` leaves a 401 to the caller;
 * `options.raw`: `body` is JSON text already (kept exactly as typed);
 * `options.exact`: numbers are read with `parseExact`.
 */
export async function call(method, path, body, options = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["x-csrf-token"] = csrfToken;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    cache: "no-store",
    signal: options.signal,
    body: body === undefined || options.raw ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? (options.exact ? parseExact(text) : JSON.parse(text)) : null;
  } catch {
    data = null;
  }
  // /health/detailed answers 503 with its body when degraded: still data.
  if (!response.ok && !(response.status === 503 && data && data.components)) {
    const error = (data && data.error) || {};
    const failure = new ApiError(response.status, error.code || "http_error",
      errorText(error, `${method} ${path}: HTTP ${response.status}`));
    if (response.status === 401 && !options.quiet401) unauthorized(failure);
    throw failure;
  }
  return data;
}

export const get = (path, options) => call("GET", path, undefined, options);
export const post = (path, body, options) => call("POST", path, body, options);
export const put = (path, body, options) => call("PUT", path, body, options);
export const patch = (path, body, options) => call("PATCH", path, body, options);
export const del = (path, options) => call("DELETE", path, undefined, options);

/** `path?k=v&…` for the defined values of `params`, encoded. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** A path segment: stream, user, consumer and token names, encoded. */
export const seg = (name) => encodeURIComponent(name);

/** Who the browser's session belongs to, or null when not logged in. */
export async function currentUser() {
  const me = await get("api/v1/auth/me");
  if (!me || !me.subject || !me.csrf_token) return null;
  csrfToken = me.csrf_token;
  return { name: me.subject, roles: me.roles || [] };
}

export async function login(username, password) {
  const answer = await call("POST", "api/v1/auth/login", { username, password },
    { quiet401: true });
  csrfToken = answer.csrf_token;
  return { name: answer.user.name, roles: [answer.user.role] };
}

/** Ends the session; the CSRF token is forgotten only once that worked (a failed call can be retried). */
export async function logout() {
  await call("POST", "api/v1/auth/logout", undefined, { quiet401: true });
  csrfToken = null;
}

export function health(options) {
  return get("health/detailed", options);
}
