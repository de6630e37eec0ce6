// The admin UI: a login form, then pages chosen by the URL's hash
// (`#/dashboard`, `#/streams/<name>`, …). Each page module has
// `enter(life, context)`; `life` (see dom.js) closes what the page opened
// when it is left. Plain ES modules, no build step; URLs are relative.

import { ApiError, currentUser, login, logout, onUnauthorized } from "./api.js";
import { $, Life } from "./dom.js";
import * as dashboard from "./pages/dashboard.js";
import * as streams from "./pages/streams.js";
import * as stream from "./pages/stream.js";
import * as jobs from "./pages/jobs.js";
import * as consumers from "./pages/consumers.js";
import * as users from "./pages/users.js";
import * as settings from "./pages/settings.js";

const EXPIRED = "Your session has expired; please log in again.";
const LOGGED_OUT = "You are logged out.";
/** How often the session is checked while a page shows only public or streamed data. */
const SESSION_CHECK_MS = 5000;
/** sessionStorage key of the notice to show once after a reset (see `reset`). */
const NOTICE_KEY = "tidings.notice";

/** Route name → page module, its section, and whether it needs ADMIN. */
const PAGES = new Map([
  ["dashboard", { module: dashboard, section: "page-dashboard", admin: true }],
  ["streams", { module: streams, section: "page-streams", admin: false }],
  ["stream", { module: stream, section: "page-stream", admin: false }],
  ["jobs", { module: jobs, section: "page-jobs", admin: true }],
  ["consumers", { module: consumers, section: "page-consumers", admin: true }],
  ["users", { module: users, section: "page-users", admin: true }],
  ["settings", { module: settings, section: "page-settings", admin: true }],
]);
const SECTIONS = [...[...PAGES.values()].map((p) => p.section), "forbidden"];

let user = null;
let life = null;
let sessionTimer = null;
/** Set while a logout is under way: the 401s it causes are not an expiry. */
let loggingOut = false;
/** Set once the page is being reloaded: nothing more happens in it. */
let resetting = false;

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

const isAdmin = () => Boolean(user && user.roles.includes("ADMIN"));
const defaultRoute = () => (isAdmin() ? "#/dashboard" : "#/streams");
const sameRoles = (a, b) => a.length === b.length && a.every((role) => b.includes(role));

/** Ends the current page: its fetches, timers and EventSources. */
function leavePage() {
  if (life) life.end();
  life = null;
  for (const id of SECTIONS) $(id).hidden = true;
}

/** Hides the application: pages, navigation, the user's name. */
function hideApp() {
  leavePage();
  clearInterval(sessionTimer);
  sessionTimer = null;
  user = null;
  $("who").hidden = true;
  $("nav").hidden = true;
}

function showLogin(message) {
  hideApp();
  $("login").hidden = false;
  notice(message);
  $("username").focus();
}

/**
 * Starts the page afresh after a logout, an expiry or a change of user, so
 * that nothing the previous user saw is left in the hidden pages or forms:
 * a reload, which then shows `message` once: on the login form, or (`app`,
 * a user name) above the application when the session is that user's.
 * `keepHash`: the same page after the next login. Without sessionStorage,
 * the login form without a reload.
 */
function reset(message, keepHash, app = null) {
  if (resetting) return;
  hideApp();
  if (!keepHash) history.replaceState(null, "", location.pathname + location.search);
  try {
    sessionStorage.setItem(NOTICE_KEY, JSON.stringify({ message, for: app }));
  } catch {
    // No reload: this page goes on, so its state must be usable again.
    loggingOut = false;
    $("logout").disabled = false;
    showLogin(message);
    return;
  }
  resetting = true;
  location.reload();
}

/** The notice a reset left for this load (once), or null. */
function takeNotice() {
  try {
    const saved = sessionStorage.getItem(NOTICE_KEY);
    sessionStorage.removeItem(NOTICE_KEY);
    return saved ? JSON.parse(saved) : null;
  } catch {
    return null;
  }
}

/** `focus`: the page's heading takes the focus (after a login). */
function showApp(who, focus = false) {
  user = who;
  $("login").hidden = true;
  $("who-name").textContent = `${who.name} (${who.roles.join(", ") || "no role"})`;
  $("who").hidden = false;
  const admin = isAdmin();
  document.body.classList.toggle("is-admin", admin);
  for (const node of document.querySelectorAll(".admin-only")) node.hidden = !admin;
  $("nav").hidden = false;
  clearInterval(sessionTimer);
  sessionTimer = setInterval(checkSession, SESSION_CHECK_MS);
  route(focus);
}

/**
 * An SSE page keeps streaming after its session ends, and the health answer
 * is public: ask who we are now and then (a 401 goes to `onUnauthorized`).
 * Another user's session (a login in another tab) starts the page afresh;
 * other roles re-route and re-hide the admin parts.
 */
async function checkSession() {
  const before = user;
  if (!before || loggingOut || resetting) return;
  let who;
  try {
    who = await currentUser();
  } catch {
    // A 401 was handled; anything else (server away) is for the page to say.
    return;
  }
  // A logout, a login or a reset happened meanwhile: this answer is stale.
  if (user !== before || loggingOut || resetting) return;
  if (!who) reset(EXPIRED, true);
  else if (who.name !== before.name) {
    reset(`This tab's session now belongs to ${who.name} (a login elsewhere in this browser).`,
      false, who.name);
  } else if (!sameRoles(who.roles, before.roles)) showApp(who);
}

/** `#/name/arg` → [name, arg]; null for a hash that is not a route. */
function parseHash() {
  const hash = location.hash;
  if (!hash.startsWith("#/")) return null;
  const [name, ...rest] = hash.slice(2).split("/");
  let arg = rest.join("/");
  try {
    arg = decodeURIComponent(arg);
  } catch {
    // Leave it as typed: the page reports a bad name.
  }
  return [name, arg];
}

/** Shows the page the hash names; `focus` moves the focus to its heading. */
function route(focus) {
  if (!user) return;
  let [name, arg] = parseHash() || [];
  if (name === "streams" && arg) {
    name = "stream";
  } else if (name === "stream" || !PAGES.has(name)) {
    // Unknown (or `#/stream` without a name): the user's home page.
    history.replaceState(null, "", defaultRoute());
    [name, arg] = parseHash();
  }
  const page = PAGES.get(name);
  leavePage();
  for (const link of $("nav").querySelectorAll("a")) {
    const current = link.getAttribute("href") === `#/${name === "stream" ? "streams" : name}`;
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const section = $(page.admin && !isAdmin() ? "forbidden" : page.section);
  section.hidden = false;
  if (section.id !== "forbidden") {
    life = new Life();
    page.module.enter(life, { user, admin: isAdmin(), arg });
  }
  if (focus) section.querySelector("h2").focus();
}

onUnauthorized(() => {
  if (user && !loggingOut) reset(EXPIRED, true);
});

window.addEventListener("hashchange", () => {
  if (!parseHash() || resetting) return;
  notice("");
  route(true);
});

$("skip").addEventListener("click", (event) => {
  event.preventDefault();
  $("main").focus();
});

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.submitter || $("login-form").querySelector("button");
  const error = $("login-error");
  error.hidden = true;
  button.disabled = true;
  try {
    const who = await login($("username").value, $("password").value);
    $("password").value = "";
    notice("");
    showApp(who, true);
  } catch (e) {
    error.textContent = e instanceof ApiError && e.status === 401
      ? "Wrong user name or password."
      : e.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});

$("logout").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  loggingOut = true;
  button.disabled = true;
  try {
    await logout();
  } catch (e) {
    // A 401: the session had ended already, which is what was asked.
    if (!(e instanceof ApiError && e.status === 401)) {
      loggingOut = false;
      button.disabled = false;
      notice(`Logout failed: ${e.message}`);
      return;
    }
  }
  // The next user starts from their own default page, in a fresh page.
  reset(LOGGED_OUT, false);
});

async function start() {
  // A reload may restore what the previous user typed: start empty.
  for (const form of document.forms) form.reset();
  const saved = takeNotice();
  try {
    const who = await currentUser();
    if (who) {
      showApp(who);
      // A notice about a change of user is only for that user's page.
      if (saved && saved.for === who.name) notice(saved.message);
    } else showLogin(saved && !saved.for ? saved.message : undefined);
  } catch (e) {
    if (saved) showLogin(saved.message);
    else {
      showLogin(e instanceof ApiError && e.status === 401
        ? EXPIRED
        : `The server did not answer: ${e.message}`);
    }
  }
}

start();
