// The admin UI: a login form, then a dashboard fed by /health/detailed.
// Plain ES modules, no build step; every URL is relative to the page.

import { ApiError, currentUser, health, login, logout } from "./api.js";

const REFRESH_MS = 5000;
const EXPIRED = "Your session has expired; please log in again.";
const $ = (id) => document.getElementById(id);
let timer = null;

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

function showLogin(message) {
  clearInterval(timer);
  timer = null;
  $("dashboard").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  notice(message);
  $("username").focus();
}

function showDashboard(user) {
  $("login").hidden = true;
  $("who-name").textContent = `${user.name} (${user.roles.join(", ") || "no role"})`;
  $("who").hidden = false;
  $("dashboard").hidden = false;
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

function formatUptime(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return [d && `${d}d`, (d || h) && `${h}h`, (d || h || m) && `${m}m`, `${s}s`]
    .filter(Boolean).join(" ");
}

function statusCell(status) {
  const cell = document.createElement("td");
  cell.textContent = status;
  cell.className = status === "ok" ? "ok" : "bad";
  return cell;
}

async function refresh() {
  try {
    // The health answer is public: ask for the session too, so that an
    // expired one sends the operator back to the login form.
    const [user, h] = await Promise.all([currentUser(), health()]);
    if (!user) {
      showLogin(EXPIRED);
      return;
    }
    $("status").textContent = h.status;
    $("status").className = h.status === "ok" ? "ok" : "bad";
    $("version").textContent = h.version;
    $("uptime").textContent = formatUptime(h.uptime_seconds);
    const rows = Object.entries(h.components || {}).map(([name, c]) => {
      const row = document.createElement("tr");
      const label = document.createElement("th");
      label.scope = "row";
      label.textContent = name;
      row.append(label, statusCell(c.status || "unknown"));
      return row;
    });
    $("components").replaceChildren(...rows);
    notice(h.reason ? `Degraded: ${h.reason}` : "");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) showLogin(EXPIRED);
    else notice(`Could not read the server's health: ${e.message}`);
  }
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.submitter || $("login-form").querySelector("button");
  const error = $("login-error");
  error.hidden = true;
  button.disabled = true;
  try {
    const user = await login($("username").value, $("password").value);
    $("password").value = "";
    notice("");
    showDashboard(user);
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
    showLogin("You are logged out.");
  } catch (e) {
    notice(`Logout failed: ${e.message}`);
  }
});

async function start() {
  try {
    const user = await currentUser();
    if (user) showDashboard(user);
    else showLogin();
  } catch (e) {
    showLogin(e instanceof ApiError && e.status === 401
      ? EXPIRED
      : `The server did not answer: ${e.message}`);
  }
}

start();
