// The history of a stream page: `api/v1/events?streams=NAME&after=ID&limit=N`
// pages of stored events, oldest first. The browser keeps the stack of
// `after` cursors it used: Next pushes the answer's cursor, Previous pops,
// First starts over. The last page (not full) refreshes itself.
//
// Only the latest load may draw (each has a number; older answers, such as
// a background refresh overtaken by a click, are dropped), the three buttons
// are disabled while a click's load runs, at most one background refresh
// runs at a time, and a click whose load fails (or whose Next finds nothing
// newer) puts the cursor stack back as it was before the click.

import { ApiError, get, withQuery } from "../api.js";
import { $, el, td, clearError, formatSecs, say, showError } from "../dom.js";

/** Events a page asks for; less when the server allows less (`invalid_limit`). */
const PAGE = 50;
const REFRESH_MS = 3000;
const DATA_CHARS = 120;
const BUTTONS = ["history-first", "history-prev", "history-next"];

export function startHistory(life, name) {
  const state = {
    life, name, cursors: [null], next: null, full: false, loading: false, refreshing: false,
    seq: 0, page: PAGE,
  };
  /** Runs a click: `move` changes the cursor stack; a failed load undoes it. */
  const click = (move) => {
    if (state.loading) return;
    const before = state.cursors.slice();
    if (move() === false) return;
    load(state, { before });
  };
  $("history-table").tBodies[0].replaceChildren();
  say($("history-page"), "");
  life.on($("history-first"), "click", () => click(() => {
    state.cursors = [null];
  }));
  life.on($("history-prev"), "click", () => click(() => {
    if (state.cursors.length > 1) state.cursors.pop();
  }));
  life.on($("history-next"), "click", () => click(() => {
    if (!state.full || state.next === null) return false;
    state.cursors.push(state.next);
    return true;
  }));
  load(state);
  life.every(REFRESH_MS, () => {
    if (!state.full && !state.loading && !state.refreshing) load(state, { quiet: true });
  });
}

/** The maximum an `invalid_limit` message names ("… from 1 to 20"), or null. */
function allowedLimit(e) {
  const match = /from 1 to (\d+)/.exec((e && e.message) || "");
  return match ? Number(match[1]) : null;
}

/**
 * Loads the page of the top cursor. `before`: the cursor stack before the
 * click that asked for this load (put back when it fails, or when a Next
 * finds nothing newer); `quiet`: a background refresh, which redraws only
 * when something changed.
 */
async function load(state, { before, quiet = false } = {}) {
  const { life, name } = state;
  const seq = ++state.seq;
  const after = state.cursors[state.cursors.length - 1];
  const error = $("history-error");
  const wentNext = before !== undefined && state.cursors.length > before.length;
  // Only the latest load gets here (see the `seq` checks below).
  const undo = () => {
    if (before !== undefined) state.cursors = before;
  };
  // A background refresh leaves the buttons alone: a click supersedes it.
  if (quiet) state.refreshing = true;
  else setLoading(state, true);
  let answer;
  try {
    answer = await get(withQuery("api/v1/events", { streams: name, after, limit: state.page }),
      { signal: life.signal, exact: true });
  } catch (e) {
    if (quiet) state.refreshing = false;
    if (seq !== state.seq || life.ended) return;
    const max = e instanceof ApiError && e.code === "invalid_limit" ? allowedLimit(e) : null;
    if (max && max < state.page) {
      // The server allows fewer events an answer: ask again with its maximum.
      state.page = max;
      state.cursors = [null];
      load(state);
      return;
    }
    undo();
    setLoading(state, false);
    showError(error, e);
    return;
  }
  if (quiet) state.refreshing = false;
  // A newer load (or leaving the page) made this answer stale.
  if (seq !== state.seq || life.ended) return;
  clearError(error);
  const events = (answer && answer.events) || [];
  if (wentNext && events.length === 0) {
    undo();
    state.full = false;
    setLoading(state, false);
    say($("history-page"), "No newer events.");
    return;
  }
  state.next = answer.cursor ?? null;
  state.full = events.length === state.page;
  setLoading(state, false);
  if (quiet && events.length === $("history-table").tBodies[0].rows.length) return;
  render(events);
  const first = (state.cursors.length - 1) * state.page;
  say($("history-page"), events.length
    ? `events ${first + 1}–${first + events.length}`
    : "no events");
}

/** While a load runs the buttons are disabled; after it, they say where one can go. */
function setLoading(state, loading) {
  state.loading = loading;
  if (loading) {
    for (const id of BUTTONS) $(id).disabled = true;
    return;
  }
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
