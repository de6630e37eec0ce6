// The live tail of a stream page: an EventSource on
// `api/v1/events/stream/<name>` (the session cookie authenticates it),
// newest event first, at most 200 kept; Pause holds new events (at most
// 200) until Resume; the type filter applies to events that arrive after it
// is typed. A refused connection is retried from the last id seen.

import { get, parseExact, seg, withQuery } from "../api.js";
import { $, el, clearError, showError, splitList } from "../dom.js";

const KEEP = 200;
const RETRY_MS = 3000;

export function startTail(life, name) {
  const state = {
    life, name, paused: false, open: false, tried: false, closed: false,
    held: [], types: [], lastId: null,
  };
  $("tail").replaceChildren();
  $("tail-filter").value = "";
  setPaused(state, false);
  life.on($("tail-pause"), "click", () => setPaused(state, !state.paused));
  life.on($("tail-filter"), "input", () => {
    state.types = splitList($("tail-filter").value);
  });
  connect(state);
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
  if (!paused) {
    for (const event of state.held.splice(0)) show(event);
  }
  showState(state);
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
    prepend(el("li", { className: "tail-gap" },
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
    get(withQuery("api/v1/events", { streams: name, limit: 1 }), { signal: life.signal })
      .then(() => {
        showError($("tail-error"),
          new Error(`The live tail was refused; retrying every ${RETRY_MS / 1000} s.`));
        life.after(RETRY_MS, () => connect(state));
      }, (e) => {
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
  if (state.paused) {
    state.held.push(event);
    if (state.held.length > KEEP) state.held.shift();
    return;
  }
  show(event);
}

function show(event) {
  const id = String(event.id ?? "");
  prepend(el("li", { className: "tail-event", data: { id } },
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
