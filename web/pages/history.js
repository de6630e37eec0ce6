// The history of a stream page: `api/v1/events?streams=NAME&after=ID&limit=N`
// pages of stored events, oldest first. The browser keeps the stack of
// `after` cursors it used: Next pushes the answer's cursor, Previous pops,
// First starts over. The last page (not full) refreshes itself.

import { get, withQuery } from "../api.js";
import { $, el, td, clearError, formatSecs, say, showError } from "../dom.js";

const PAGE = 50;
const REFRESH_MS = 3000;
const DATA_CHARS = 120;

export function startHistory(life, name) {
  const state = { life, name, cursors: [null], next: null, full: false, loading: false };
  $("history-table").tBodies[0].replaceChildren();
  say($("history-page"), "");
  life.on($("history-first"), "click", () => {
    state.cursors = [null];
    load(state);
  });
  life.on($("history-prev"), "click", () => {
    if (state.cursors.length > 1) state.cursors.pop();
    load(state);
  });
  life.on($("history-next"), "click", () => {
    if (!state.full || state.next === null) return;
    state.cursors.push(state.next);
    load(state, true);
  });
  load(state);
  life.every(REFRESH_MS, () => {
    if (!state.full && !state.loading) load(state, false, true);
  });
}

/** Loads the page of the top cursor; `forward`: an empty answer steps back. */
async function load(state, forward = false, quiet = false) {
  const { life, name } = state;
  const after = state.cursors[state.cursors.length - 1];
  const error = $("history-error");
  state.loading = true;
  let answer;
  try {
    answer = await get(withQuery("api/v1/events", { streams: name, after, limit: PAGE }),
      { signal: life.signal, exact: true });
  } catch (e) {
    if (forward) state.cursors.pop();
    showError(error, e);
    return;
  } finally {
    state.loading = false;
  }
  if (life.ended) return;
  clearError(error);
  const events = (answer && answer.events) || [];
  if (forward && events.length === 0) {
    state.cursors.pop();
    state.full = false;
    buttons(state);
    say($("history-page"), "No newer events.");
    return;
  }
  state.next = answer.cursor ?? null;
  state.full = events.length === PAGE;
  buttons(state);
  if (quiet && events.length === $("history-table").tBodies[0].rows.length) return;
  render(events);
  const first = (state.cursors.length - 1) * PAGE;
  say($("history-page"), events.length
    ? `events ${first + 1}–${first + events.length}`
    : "no events");
}

function buttons(state) {
  const atStart = state.cursors.length <= 1;
  $("history-first").disabled = atStart;
  $("history-prev").disabled = atStart;
  $("history-next").disabled = !state.full;
}

function render(events) {
  const rows = events.map((event) => {
    const data = JSON.stringify(event.data ?? null);
    const short = data.length > DATA_CHARS ? `${data.slice(0, DATA_CHARS - 1)}…` : data;
    const cell = td(short, "data");
    if (short !== data) cell.title = data;
    return el("tr", { data: { id: String(event.id) } },
      td(event.id),
      td(event.time || formatSecs(event.timestamp), "nowrap"),
      td(event.type),
      cell);
  });
  $("history-table").tBodies[0].replaceChildren(...rows);
}
