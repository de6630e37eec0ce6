// #/settings (admins): the effective configuration with its secrets
// redacted (`api/v1/admin/config`) and a retention pass on demand
// (`POST api/v1/admin/compact`).

import { get, post } from "../api.js";
import { $, el, busy, clearError, formatBytes, say, showError } from "../dom.js";

export function enter(life) {
  clearError($("config-error"));
  clearError($("compact-error"));
  say($("compact-result"), "");
  $("config-text").textContent = "";
  $("config-redacted").replaceChildren();
  life.on($("compact-button"), "click", (event) => compact(life, event.currentTarget));
  load(life);
}

async function load(life) {
  try {
    const config = await get("api/v1/admin/config", { signal: life.signal });
    $("config-text").textContent = config.toml || "";
    const keys = config.redacted || [];
    $("config-redacted-note").textContent = keys.length ? "Redacted keys:" : "No key is redacted.";
    $("config-redacted").replaceChildren(...keys.map((key) => el("li", {}, el("code", {}, key))));
  } catch (e) {
    showError($("config-error"), e);
  }
}

async function compact(life, button) {
  const error = $("compact-error");
  clearError(error);
  say($("compact-result"), "Compacting…");
  try {
    const report = await busy(button, () =>
      post("api/v1/admin/compact", undefined, { signal: life.signal }));
    say($("compact-result"),
      `Done in ${report.duration_ms} ms: ${report.events_removed} events removed, `
      + `${formatBytes(report.bytes_reclaimed || 0)} reclaimed, `
      + `${report.segments_deleted} segments deleted and ${report.segments_rewritten} rewritten.`);
  } catch (e) {
    say($("compact-result"), "");
    showError(error, e);
  }
}
