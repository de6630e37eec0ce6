// #/users (admins): local users (`api/v1/admin/users`) and API tokens
// (`api/v1/admin/tokens`): create, change a password (prompt), delete and
// revoke (confirm). A new token's secret is shown once, with a copy button.

import { del, get, patch, post, seg } from "../api.js";
import {
  $, el, td, busy, clearError, formatSecs, say, showError, splitList, USER_NAME,
} from "../dom.js";

const NAME_RULE = "1 to 64 of A-Z a-z 0-9 . _ @ -, and not . or ..";

export function enter(life) {
  for (const id of ["users-error", "user-error", "token-error"]) clearError($(id));
  say($("users-result"), "");
  hideSecret();
  $("users-table").tBodies[0].replaceChildren();
  $("tokens-table").tBodies[0].replaceChildren();
  life.defer(hideSecret);
  // A typed password does not outlive the page.
  $("user-password").value = "";
  life.defer(() => {
    $("user-password").value = "";
  });
  life.on($("users-table"), "click", (event) => userAction(event, life));
  life.on($("tokens-table"), "click", (event) => revoke(event, life));
  life.on($("user-form"), "submit", (event) => createUser(event, life));
  life.on($("token-form"), "submit", (event) => createToken(event, life));
  life.on($("token-copy"), "click", copySecret);
  refresh(life);
}

function hideSecret() {
  $("token-secret").textContent = "";
  say($("token-copy-result"), "");
  $("token-created").hidden = true;
}

const action = (className, label, what) => el("button", {
  type: "button",
  className: `${className} ${/delete|revoke/.test(className) ? "danger" : "secondary"}`,
  attrs: { "aria-label": `${label}: ${what}` },
}, label);

async function refresh(life) {
  try {
    const [users, tokens] = await Promise.all([
      get("api/v1/admin/users", { signal: life.signal }),
      get("api/v1/admin/tokens", { signal: life.signal }),
    ]);
    if (life.ended) return;
    $("users-table").tBodies[0].replaceChildren(...(users.users || []).map((u) =>
      el("tr", { data: { user: u.name } },
        el("th", { scope: "row" }, u.name), td(u.role), td(formatSecs(u.created)),
        el("td", { className: "actions" },
          action("user-password", "Change password", `user ${u.name}`),
          action("user-delete", "Delete", `user ${u.name}`)))));
    $("tokens-table").tBodies[0].replaceChildren(...(tokens.tokens || []).map((t) =>
      el("tr", { data: { token: t.id } },
        el("th", { scope: "row" }, el("code", {}, t.id)), td(t.name), td(t.role),
        td(t.streams ? t.streams.join(", ") : "(role decides)"),
        td(formatSecs(t.created)), td(t.expires_at == null ? "never" : formatSecs(t.expires_at)),
        el("td", { className: "actions" }, action("token-revoke", "Revoke", `token ${t.name}`)))));
  } catch (e) {
    showError($("users-error"), e);
  }
}

/** Runs `work` (a change), says `done`, reloads the tables; errors go to `#users-error`. */
async function change(life, button, work, done) {
  clearError($("users-error"));
  say($("users-result"), "");
  try {
    await busy(button, work);
    say($("users-result"), done);
    await refresh(life);
  } catch (e) {
    showError($("users-error"), e);
  }
}

async function userAction(event, life) {
  const button = event.target.closest("button");
  const row = button && button.closest("tr[data-user]");
  if (!row) return;
  const name = row.dataset.user;
  if (button.classList.contains("user-password")) {
    const password = prompt(`New password for ${name} (at least 8 characters):`);
    if (password === null) return;
    await change(life, button,
      () => patch(`api/v1/admin/users/${seg(name)}`, { password }, { signal: life.signal }),
      `The password of ${name} was changed; their sessions ended.`);
  } else if (button.classList.contains("user-delete")) {
    if (!confirm(`Delete user ${name}? Their sessions end at once.`)) return;
    await change(life, button,
      () => del(`api/v1/admin/users/${seg(name)}`, { signal: life.signal }),
      `User ${name} was deleted.`);
    $("users-title").focus();
  }
}

async function revoke(event, life) {
  const button = event.target.closest("button.token-revoke");
  const row = button && button.closest("tr[data-token]");
  if (!row) return;
  const id = row.dataset.token;
  if (!confirm(`Revoke token ${id}? Clients using it are refused at once.`)) return;
  await change(life, button,
    () => del(`api/v1/admin/tokens/${seg(id)}`, { signal: life.signal }),
    `Token ${id} was revoked.`);
  $("users-title").focus();
}

async function createUser(event, life) {
  event.preventDefault();
  const error = $("user-error");
  clearError(error);
  const body = {
    name: $("user-name").value.trim(),
    password: $("user-password").value,
    role: $("user-role").value,
  };
  if (!USER_NAME.test(body.name)) {
    showError(error, new Error(`A user name is ${NAME_RULE}.`));
    $("user-name").focus();
    return;
  }
  const button = event.submitter || $("user-form").querySelector("button[type=submit]");
  try {
    await busy(button, () => post("api/v1/admin/users", body, { signal: life.signal }));
    $("user-name").value = "";
    $("user-password").value = "";
    say($("users-result"), `User ${body.name} was created.`);
    await refresh(life);
  } catch (e) {
    showError(error, e);
  }
}

async function createToken(event, life) {
  event.preventDefault();
  const error = $("token-error");
  clearError(error);
  hideSecret();
  const body = { name: $("token-name").value.trim(), role: $("token-roles").value };
  if (!USER_NAME.test(body.name)) {
    showError(error, new Error(`A token name is ${NAME_RULE}.`));
    $("token-name").focus();
    return;
  }
  const streams = splitList($("token-streams").value);
  if (streams.length) body.streams = streams;
  const expires = $("token-expires").value.trim();
  if (expires) {
    if (!/^\d+$/.test(expires)) {
      showError(error, new Error("The lifetime is a whole number of seconds; leave it empty for none."));
      return;
    }
    body.expires_in_secs = Number(expires);
  }
  const button = event.submitter || $("token-form").querySelector("button[type=submit]");
  try {
    const created = await busy(button, () => post("api/v1/admin/tokens", body, { signal: life.signal }));
    $("token-name").value = "";
    $("token-streams").value = "";
    $("token-expires").value = "";
    $("token-secret").textContent = created.token;
    $("token-created").hidden = false;
    say($("users-result"), `Token ${created.name} was created: copy its secret now.`);
    $("token-secret").focus();
    await refresh(life);
  } catch (e) {
    showError(error, e);
  }
}

/** Copies the secret; without clipboard access, selects it for Ctrl+C. */
async function copySecret() {
  const secret = $("token-secret");
  try {
    await navigator.clipboard.writeText(secret.textContent);
    say($("token-copy-result"), "Copied.");
  } catch {
    const range = document.createRange();
    range.selectNodeContents(secret);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    secret.focus();
    say($("token-copy-result"), "Selected: press Ctrl+C (⌘C) to copy.");
  }
}
