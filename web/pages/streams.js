// #/streams: the streams the caller may read (`api/v1/events/streams`),
// refreshed every 2 s; events/s is the change of `published` between two
// refreshes. Rows are updated in place so that focus stays on a link.

import { get } from "../api.js";
import {
  $, el, td, clearError, formatDuration, formatRate, showError, STREAM_NAME,
} from "../dom.js";

const REFRESH_MS = 2000;

export function enter(life) {
  const state = { life, previous: new Map(), at: 0 };
  clearError($("streams-error"));
  clearError($("stream-open-error"));
  $("streams-table").tBodies[0].replaceChildren();
  $("streams-empty").hidden = true;
  $("stream-open-name").value = "";
  life.on($("stream-open-form"), "submit", openStream);
  refresh(state);
  life.every(REFRESH_MS, () => refresh(state));
}

function openStream(event) {
  event.preventDefault();
  const name = $("stream-open-name").value.trim();
  const error = $("stream-open-error");
  clearError(error);
  if (!STREAM_NAME.test(name)) {
    showError(error, new Error(
      "A stream name is 1 to 128 of the characters A-Z a-z 0-9 . _ : -, and not . or .."));
    $("stream-open-name").focus();
    return;
  }
  location.hash = `#/streams/${name}`;
}

/** `max 7d · 1000 events`, or how the server decides. */
function retention(info) {
  const parts = [];
  if (info.max_age_secs != null) parts.push(`max ${formatDuration(info.max_age_secs)}`);
  if (info.max_events != null) parts.push(`${info.max_events} events`);
  return parts.length ? parts.join(" · ") : "server default";
}

function generatorState(info) {
  const g = info.generator || {};
  if (!g.running) return "stopped";
  return g.paused ? "paused" : "running";
}

async function refresh(state) {
  const { life } = state;
  let answer;
  try {
    answer = await get("api/v1/events/streams", { signal: life.signal });
  } catch (e) {
    showError($("streams-error"), e);
    return;
  }
  if (life.ended) return;
  clearError($("streams-error"));
  const now = performance.now();
  const seconds = state.at ? (now - state.at) / 1000 : 0;
  state.at = now;
  const data = (answer && answer.data) || {};
  const names = Object.keys(data).sort();
  const body = $("streams-table").tBodies[0];
  const rows = new Map([...body.rows].map((row) => [row.dataset.stream, row]));
  for (const [name, row] of rows) if (!(name in data)) row.remove();
  let before = null;
  for (const name of [...names].reverse()) {
    const info = data[name];
    let row = rows.get(name);
    if (!row) {
      row = el("tr", { data: { stream: name } },
        el("th", { scope: "row" }, el("a", { href: `#/streams/${name}` }, name)),
        td(""), td(""), td(""), td(""));
      body.insertBefore(row, before);
    }
    before = row;
    row.cells[1].textContent = String(info.clients ?? 0);
    row.cells[2].textContent = rate(state, name, info.published, seconds);
    row.cells[3].textContent = retention(info);
    row.cells[4].textContent = generatorState(info);
  }
  $("streams-empty").hidden = names.length > 0;
}

/** Events/s from the change of `published`; `–` while the server does not send it. */
function rate(state, name, published, seconds) {
  if (typeof published !== "number") return "–";
  const previous = state.previous.get(name);
  state.previous.set(name, published);
  if (previous === undefined || seconds <= 0 || published < previous) return "0";
  return formatRate((published - previous) / seconds);
}
