// #/streams/<name>: one stream's live tail, history, publish form, and (for
// admins) its generator and settings. Each part lives in its own module.

import { post } from "../api.js";
import { $, busy, clearError, say, showError, STREAM_NAME } from "../dom.js";
import { startHistory } from "./history.js";
import { startStreamAdmin } from "./stream-admin.js";
import { startTail } from "./tail.js";

/** Buttons that act on the stream: disabled while its name is not valid. */
const ACTIONS = ["history-first", "history-prev", "history-next", "gen-start", "gen-pause",
  "gen-resume", "gen-stop"];

export function enter(life, { admin, arg: name }) {
  $("stream-title").textContent = name;
  document.title = `${name} · Tidings`;
  life.defer(() => {
    document.title = "Tidings";
  });
  for (const id of ["tail-error", "history-error", "publish-error", "gen-error", "settings-error"]) {
    clearError($(id));
  }
  say($("publish-result"), "");
  say($("settings-result"), "");
  // First, whatever the name: the forms never submit natively (a reload).
  for (const id of ["publish-form", "settings-form"]) {
    life.on($(id), "submit", (event) => event.preventDefault());
  }
  if (!STREAM_NAME.test(name)) {
    showError($("tail-error"), new Error(`${JSON.stringify(name)} is not a stream name: `
      + "1 to 128 of A-Z a-z 0-9 . _ : -, and not . or .."));
    $("tail").replaceChildren();
    $("tail-state").textContent = "closed";
    $("history-table").tBodies[0].replaceChildren();
    say($("history-page"), "");
    const off = [...ACTIONS.map($), ...document.querySelectorAll(
      "#publish-form button, #settings-form button, #tail-pause")];
    for (const node of off) node.disabled = true;
    life.defer(() => {
      for (const node of off) node.disabled = false;
    });
    return;
  }
  startTail(life, name);
  startHistory(life, name);
  life.on($("publish-form"), "submit", (event) => publish(event, life, name));
  if (admin) startStreamAdmin(life, name);
}

/** Publishes the form's event; invalid JSON is refused here and nothing is sent. */
async function publish(event, life, name) {
  event.preventDefault();
  const error = $("publish-error");
  const result = $("publish-result");
  clearError(error);
  say(result, "");
  const text = $("publish-data").value.trim();
  if (text) {
    try {
      JSON.parse(text);
    } catch (e) {
      showError(error, new Error(`The data is not valid JSON: ${e.message}`));
      $("publish-data").focus();
      return;
    }
  }
  // The data goes as typed (not re-encoded), so large numbers keep their digits.
  const body = `{"stream_id":${JSON.stringify(name)},"type":${JSON.stringify($("publish-type").value.trim())}`
    + (text ? `,"data":${text}}` : "}");
  const button = event.submitter || $("publish-form").querySelector("button[type=submit]");
  try {
    const answer = await busy(button, () =>
      post("api/v1/events", body, { signal: life.signal, raw: true }));
    say(result, answer.duplicate
      ? `Already stored as event ${answer.id}.`
      : `Published event ${answer.id}.`);
  } catch (e) {
    showError(error, e);
  }
}
