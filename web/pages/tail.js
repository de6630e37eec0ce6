// The live tail of a stream page: an EventSource on
// `api/v1/events/stream/<name>` (the session cookie authenticates it),
// newest event first, at most 200 kept; Pause holds what arrives (at most
// 200 lines, `#tail-held` counts the events) until Resume shows it, with a
// notice of how many older ones did not fit; the type filter applies to
// events that arrive after it is typed. The tail starts after the newest
// event stored when it opened (`health/detailed`'s `last_id`), and a refused
// connection is retried from the last id seen (or that head), so that what
// is published during an outage still shows.

import { get, health, parseExact, seg, withQuery } from "../api.js";
import { $, el, clearError, showError, splitList } from "../dom.js";

const KEEP = 200;
const RETRY_MS = 3000;

export function startTail(life, name) {
  const state = {
    life, name, paused: false, open: false, tried: false, closed: false,
    held: [], dropped: 0, types: [], lastId: null,
  };
  $("tail").replaceChildren();
  $("tail-filter").value = "";
  setPaused(state, false);
  life.on($("tail-pause"), "click", () => setPaused(state, !state.paused));
  life.on($("tail-filter"), "input", () => {
    state.types = splitList($("tail-filter").value);
  });
  connectFromHead(state);
}

/** Learns the newest id stored now (public health answer), then connects after it. */
async function connectFromHead(state) {
  try {
    const h = await health({ signal: state.life.signal });
    const head = h && h.components && h.components.store && h.components.store.last_id;
    if (state.lastId === null && /^\d+$/.test(String(head ?? ""))) state.lastId = String(head);
  } catch {
    // Without it the server starts at its head when the tail connects.
  }
  if (!state.life.ended) connect(state);
}

function showState(state) {
  let text = "connecting";
  if (state.closed) text = "closed";
  else if (state.paused) text = "paused";
  else if (state.open) text = "live";
  else if (state.tried) text = "reconnecting";
  $("tail-state").textContent = text;
}

function setPaused(state, paused) {
  state.paused = paused;
  const button = $("tail-pause");
  button.textContent = paused ? "Resume" : "Pause";
  button.setAttribute("aria-pressed", String(paused));
  if (!paused) resume(state);
  showState(state);
  showHeld(state);
}

const isEvent = (item) => item.classList.contains("tail-event");

/** Shows what was held, oldest first, below it a notice of what did not fit. */
function resume(state) {
  const items = state.held.splice(0);
  if (state.dropped) {
    // The notice takes one of the KEEP lines, below the events it precedes.
    const cut = items.splice(0, Math.max(0, items.length - (KEEP - 1)));
    const lost = state.dropped + cut.filter(isEvent).length;
    state.dropped = 0;
    prepend(el("li", { className: "tail-gap" },
      `${lost} older event${lost === 1 ? "" : "s"} that arrived while paused `
      + `${lost === 1 ? "is" : "are"} not shown: the tail keeps ${KEEP} lines.`));
  }
  for (const item of items) prepend(item);
}

/** A new line of the tail: shown at once, or held while paused. */
function add(state, item) {
  if (!state.paused) {
    prepend(item);
    return;
  }
  state.held.push(item);
  if (state.held.length > KEEP && isEvent(state.held.shift())) state.dropped += 1;
  showHeld(state);
}

/** While paused: how many events wait for Resume. */
function showHeld(state) {
  const n = state.held.filter(isEvent).length + state.dropped;
  const node = $("tail-held");
  node.textContent = state.paused && n
    ? `${n} new event${n === 1 ? "" : "s"} held${state.dropped ? " (more than the tail keeps)" : ""}`
    : "";
  node.hidden = !node.textContent;
}

function connect(state) {
  const { life, name } = state;
  const url = withQuery(`api/v1/events/stream/${seg(name)}`, { after: state.lastId });
  const source = life.source(url);
  source.onopen = () => {
    state.open = true;
    clearError($("tail-error"));
    showState(state);
  };
  source.onmessage = (message) => {
    if (message.lastEventId) state.lastId = message.lastEventId;
    let event;
    try {
      event = parseExact(message.data);
    } catch {
      return;
    }
    receive(state, event);
  };
  source.addEventListener("gap", (message) => {
    if (message.lastEventId) state.lastId = message.lastEventId;
    let gap = {};
    try {
      gap = JSON.parse(message.data);
    } catch {
      // The notice is still worth showing.
    }
    add(state, el("li", { className: "tail-gap" },
      `Events ${gap.from ?? "?"} to ${gap.to ?? "?"} were removed before they could be shown.`));
  });
  source.onerror = () => {
    state.open = false;
    state.tried = true;
    showState(state);
    if (source.readyState !== EventSource.CLOSED) return;
    // Refused with an error status: a read of the stream tells why (and a
    // 401 sends the user to the login form); then try again.
    source.close();
    get(withQuery("api/v1/events", { streams: name, after: state.lastId, limit: 1 }),
      { signal: life.signal })
      .then(() => {
        showError($("tail-error"),
          new Error(`The live tail was refused; retrying every ${RETRY_MS / 1000} s.`));
        life.after(RETRY_MS, () => connect(state));
      }, (e) => {
        if (e.code === "invalid_cursor") {
          // The server's log is behind the id the tail had seen (restored
          // from a backup, or data lost in a crash): follow it from its head.
          showError($("tail-error"), new Error(
            "The server no longer has the events this tail had seen; following from its newest."));
          state.lastId = null;
          connectFromHead(state);
          return;
        }
        showError($("tail-error"), e);
        // Not allowed, or not a stream: trying again would not help.
        if (e.status === 400 || e.status === 403) {
          state.closed = true;
          showState(state);
        } else life.after(RETRY_MS, () => connect(state));
      });
  };
}

function receive(state, event) {
  if (state.types.length && !state.types.includes(event.type)) return;
  const id = String(event.id ?? "");
  add(state, el("li", { className: "tail-event", data: { id } },
    el("div", { className: "tail-head" },
      el("strong", { className: "tail-type" }, String(event.type ?? "")),
      el("span", { className: "muted" }, ` #${id}${event.time ? ` · ${event.time}` : ""}`)),
    el("pre", { className: "json" }, JSON.stringify(event, null, 2))));
}

function prepend(item) {
  const list = $("tail");
  list.prepend(item);
  while (list.children.length > KEEP) list.lastElementChild.remove();
}
