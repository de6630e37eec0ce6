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
/** How often the session is checked while a page shows only public or streamed data. */
const SESSION_CHECK_MS = 5000;

/** Route name → page module, its section, and whether it needs ADMIN. */
const PAGES = {
  dashboard: { module: dashboard, section: "page-dashboard", admin: true },
  streams: { module: streams, section: "page-streams", admin: false },
  stream: { module: stream, section: "page-stream", admin: false },
  jobs: { module: jobs, section: "page-jobs", admin: true },
  consumers: { module: consumers, section: "page-consumers", admin: true },
  users: { module: users, section: "page-users", admin: true },
  settings: { module: settings, section: "page-settings", admin: true },
};
const SECTIONS = [...Object.values(PAGES).map((p) => p.section), "forbidden"];

let user = null;
let life = null;
let sessionTimer = null;

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

const isAdmin = () => Boolean(user && user.roles.includes("ADMIN"));
const defaultRoute = () => (isAdmin() ? "#/dashboard" : "#/streams");

/** Ends the current page: its fetches, timers and EventSources. */
function leavePage() {
  if (life) life.end();
  life = null;
  for (const id of SECTIONS) $(id).hidden = true;
}

function showLogin(message) {
  leavePage();
  clearInterval(sessionTimer);
  sessionTimer = null;
  user = null;
  $("who").hidden = true;
  $("nav").hidden = true;
  $("login").hidden = false;
  notice(message);
  $("username").focus();
}

function showApp(who) {
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
  route(false);
}

/**
 * An SSE page keeps streaming after its session ends, and the health answer
 * is public: ask who we are now and then (a 401 goes to `onUnauthorized`).
 */
async function checkSession() {
  try {
    if (user && !(await currentUser())) showLogin(EXPIRED);
  } catch {
    // A 401 was handled; anything else (server away) is for the page to say.
  }
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
  } else if (name === "stream" || !PAGES[name]) {
    // Unknown (or `#/stream` without a name): the user's home page.
    history.replaceState(null, "", defaultRoute());
    [name, arg] = parseHash();
  }
  const page = PAGES[name];
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
  if (user) showLogin(EXPIRED);
});

window.addEventListener("hashchange", () => {
  if (parseHash()) route(true);
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
    showApp(who);
  } catch (e) {
    error.textContent = e instanceof ApiError && e.status === 401
      ? "Wrong user name or password."
      : e.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});

$("logout").addEventListener("click", async () => {
  try {
    await logout();
    // The next user starts from their own default page.
    history.replaceState(null, "", location.pathname + location.search);
    showLogin("You are logged out.");
  } catch (e) {
    notice(`Logout failed: ${e.message}`);
  }
});

async function start() {
  try {
    const who = await currentUser();
    if (who) showApp(who);
    else showLogin();
  } catch (e) {
    showLogin(e instanceof ApiError && e.status === 401
      ? EXPIRED
      : `The server did not answer: ${e.message}`);
  }
}

start();
