// The admin parts of a stream page: the sample generator's controls
// (`api/v1/events/stream/<name>/start|pause|resume|stop`) and the stream's
// settings (`GET`/`PUT api/v1/streams/<name>`, for a stream stored already).

import { get, post, put, seg } from "../api.js";
import { $, busy, clearError, say, showError, splitList } from "../dom.js";

const REFRESH_MS = 5000;
const WHOLE = /^\d+$/;

export function startStreamAdmin(life, name) {
  const path = `api/v1/streams/${seg(name)}`;
  $("gen-state").textContent = "stopped";
  $("gen-interval").value = "";
  say($("settings-result"), "");
  fillSettings(null);
  // Bumped by each control, so that a read begun before it does not undo it.
  const gen = { version: 0 };
  const control = (action, next) => life.on($(`gen-${action}`), "click", (event) =>
    generator(life, name, gen, action, next, event.currentTarget));
  control("start", "running");
  control("pause", "paused");
  control("resume", "running");
  control("stop", "stopped");
  life.on($("settings-form"), "submit", (event) => saveSettings(event, life, path));
  load(life, name, path, gen, true);
  life.every(REFRESH_MS, () => load(life, name, path, gen, false));
}

function generatorState(generator) {
  if (!generator || !generator.running) return "stopped";
  return generator.paused ? "paused" : "running";
}

/**
 * The generator's state from the stream list (which also names streams not
 * stored yet); `first`: the settings too, read only for a stored stream so
 * that a new one costs no 404.
 */
async function load(life, name, path, gen, first) {
  const version = gen.version;
  try {
    const list = await get("api/v1/events/streams", { signal: life.signal });
    const info = ((list && list.data) || {})[name];
    if (info && version === gen.version) $("gen-state").textContent = generatorState(info.generator);
    if (!first) return;
    if (!info || !info.stored) {
      say($("settings-result"), "This stream has no settings yet: saving creates it.");
      return;
    }
    const stream = await get(path, { signal: life.signal });
    fillSettings(stream);
    if (stream.generator && stream.generator.interval_ms) {
      $("gen-interval").value = String(stream.generator.interval_ms);
    }
  } catch (e) {
    showError($(first ? "settings-error" : "gen-error"), e);
  }
}

async function generator(life, name, gen, action, next, button) {
  const error = $("gen-error");
  clearError(error);
  let body;
  if (action === "start") {
    const interval = $("gen-interval").value.trim();
    if (interval && !WHOLE.test(interval)) {
      showError(error, new Error("The interval is a whole number of milliseconds."));
      $("gen-interval").focus();
      return;
    }
    body = interval ? { interval_ms: Number(interval) } : {};
  }
  gen.version += 1;
  try {
    await busy(button, () =>
      post(`api/v1/events/stream/${seg(name)}/${action}`, body, { signal: life.signal }));
    gen.version += 1;
    $("gen-state").textContent = next;
  } catch (e) {
    showError(error, e);
  }
}

function fillSettings(stream) {
  const s = stream || {};
  $("set-max-age").value = s.max_age_secs == null ? "" : String(s.max_age_secs);
  $("set-max-events").value = s.max_events == null ? "" : String(s.max_events);
  $("set-subscribe").value = (s.subscribe || []).join(", ");
  $("set-publish").value = (s.publish || []).join(", ");
  $("set-description").value = s.description || "";
}

/** The form as a `PUT` body; empty fields are left out (unset). */
function settingsBody() {
  const body = {};
  for (const [id, field] of [["set-max-age", "max_age_secs"], ["set-max-events", "max_events"]]) {
    const text = $(id).value.trim();
    if (!text) continue;
    if (!WHOLE.test(text)) {
      throw new Error(`${$(id).labels[0].textContent} is a whole number; leave it empty for no limit.`);
    }
    body[field] = Number(text);
  }
  for (const [id, field] of [["set-subscribe", "subscribe"], ["set-publish", "publish"]]) {
    const roles = splitList($(id).value);
    if (roles.length) body[field] = roles;
  }
  const description = $("set-description").value.trim();
  if (description) body.description = description;
  return body;
}

async function saveSettings(event, life, path) {
  event.preventDefault();
  const error = $("settings-error");
  clearError(error);
  say($("settings-result"), "");
  let body;
  try {
    body = settingsBody();
  } catch (e) {
    showError(error, e);
    return;
  }
  const button = event.submitter || $("settings-form").querySelector("button[type=submit]");
  try {
    const stream = await busy(button, () => put(path, body, { signal: life.signal }));
    fillSettings(stream);
    say($("settings-result"), "Settings saved.");
  } catch (e) {
    showError(error, e);
  }
}
