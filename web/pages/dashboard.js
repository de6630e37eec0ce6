// #/dashboard (admins): live figures from the SSE stream
// `api/v1/admin/stats/stream` (one snapshot a second; rates are the
// differences between consecutive snapshots), charts of the last 60 s, and
// the component statuses of `health/detailed` every 5 s. A refused stream
// is retried, except when the answer says it cannot work (403: no longer an
// admin; 400); a 401 (the session ended: the server ends the stream, and the
// browser's reconnect is refused) goes to the login form. A server restart
// (uptime or a total going down) starts the series over.

import { get, health, isAbort } from "../api.js";
import { drawChart } from "../chart.js";
import {
  $, el, td, clearError, formatBytes, formatRate, formatSecs, formatUptime,
} from "../dom.js";

const WINDOW_MS = 60000;
const HEALTH_MS = 5000;
const RETRY_MS = 2000;
/** Delivery transports in legend order; others the server adds follow. */
const DELIVERIES = ["poll", "long_poll", "sse", "websocket", "grpc"];
const CONNECTIONS = ["sse", "websocket", "long_poll", "grpc_streams"];

export function enter(life) {
  const state = {
    previous: null,
    events: [],
    deliveries: new Map(DELIVERIES.map((name) => [name, []])),
    errors: { stats: null, health: null },
    life,
  };
  clearError($("dashboard-error"));
  for (const id of ["events-total", "events-rate", "storage-events", "storage-bytes",
    "storage-oldest", "storage-compaction", "federation"]) $(id).textContent = "–";
  $("connections").replaceChildren();
  draw(state, Date.now());
  refreshHealth(state);
  life.every(HEALTH_MS, () => refreshHealth(state));
  life.on(window, "resize", () => state.previous && draw(state, state.previous.timestamp_ms));
  connect(state);
}

/** Shows the latest failure of either source, or nothing. */
function showErrors(state) {
  const node = $("dashboard-error");
  const message = state.errors.stats || state.errors.health;
  node.textContent = message || "";
  node.hidden = !message;
}

function connect(state) {
  const { life } = state;
  const live = $("dashboard-live");
  const source = life.source("api/v1/admin/stats/stream");
  source.onopen = () => {
    live.textContent = "Live: updated every second.";
  };
  source.onmessage = (message) => {
    let snapshot;
    try {
      snapshot = JSON.parse(message.data);
    } catch {
      return;
    }
    state.errors.stats = null;
    showErrors(state);
    update(state, snapshot);
  };
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) {
      live.textContent = "Reconnecting to the live figures…";
      // The server ends the stream when the session stops being an admin's:
      // ask at once (a 401 goes to the login form) rather than at the retry.
      get("api/v1/auth/me", { signal: life.signal }).catch(() => {});
      return;
    }
    // Refused (an error status): ask once more without SSE to learn why
    // (a 401 sends the user to the login form), then try again unless the
    // answer says that cannot help.
    source.close();
    live.textContent = "Live figures unavailable; retrying…";
    get("api/v1/admin/stats", { signal: life.signal })
      .then((snapshot) => {
        update(state, snapshot);
        life.after(RETRY_MS, () => connect(state));
      }, (e) => {
        if (isAbort(e) || e.status === 401) return;
        state.errors.stats = `Live figures: ${e.message}`;
        showErrors(state);
        if (e.status === 400 || e.status === 403) {
          live.textContent = "Live figures stopped.";
          return;
        }
        life.after(RETRY_MS, () => connect(state));
      });
  };
}

/** Appends `point` to `points`, dropping what left the window. */
function push(points, point) {
  points.push(point);
  while (points.length && points[0].t < point.t - WINDOW_MS) points.shift();
}

/** Whether `snap` comes from a server that restarted since `prev`. */
function restarted(prev, snap) {
  if (snap.uptime_seconds < prev.uptime_seconds) return true;
  if (snap.events_ingested < prev.events_ingested) return true;
  const before = prev.deliveries || {};
  return Object.entries(snap.deliveries || {})
    .some(([name, total]) => before[name] !== undefined && total < before[name]);
}

function update(state, snap) {
  if (state.previous && restarted(state.previous, snap)) {
    // Another run: its totals do not follow the last ones.
    state.previous = null;
    state.events = [];
    for (const name of state.deliveries.keys()) state.deliveries.set(name, []);
  }
  const prev = state.previous;
  const t = snap.timestamp_ms;
  state.previous = snap;
  if (prev && t > prev.timestamp_ms && snap.events_ingested >= prev.events_ingested) {
    const seconds = (t - prev.timestamp_ms) / 1000;
    const rate = (snap.events_ingested - prev.events_ingested) / seconds;
    push(state.events, { t, v: rate });
    $("events-rate").textContent = formatRate(rate);
    for (const [name, total] of Object.entries(snap.deliveries || {})) {
      const before = (prev.deliveries || {})[name];
      if (!state.deliveries.has(name)) state.deliveries.set(name, []);
      if (before !== undefined && total >= before) {
        push(state.deliveries.get(name), { t, v: (total - before) / seconds });
      }
    }
  } else if (!prev) {
    $("events-rate").textContent = "0";
  }
  $("events-total").textContent = String(snap.events_ingested);
  if (snap.version) $("version").textContent = snap.version;
  if (snap.uptime_seconds !== undefined) $("uptime").textContent = formatUptime(snap.uptime_seconds);
  showConnections(snap.connections || {});
  showStorage(snap.storage || {});
  showFederation(snap.federation);
  draw(state, t);
}

function draw(state, now) {
  drawChart($("chart-events"), {
    series: [{ name: "events", points: state.events }],
    now,
    what: "Events ingested per second",
  });
  drawChart($("chart-deliveries"), {
    series: [...state.deliveries].map(([name, points]) => ({ name, points })),
    now,
    what: "Deliveries per second by transport",
  });
}

/** One row per transport, updated in place. */
function showConnections(connections) {
  const body = $("connections");
  const names = [...CONNECTIONS, ...Object.keys(connections).filter((n) => !CONNECTIONS.includes(n))];
  for (const name of names) {
    let row = body.querySelector(`tr[data-transport="${CSS.escape(name)}"]`);
    if (!row) {
      row = el("tr", { data: { transport: name } },
        el("th", { scope: "row" }, name.replace("_", " ")), td(""));
      body.append(row);
    }
    row.cells[1].textContent = String(connections[name] ?? 0);
  }
}

function showStorage(storage) {
  $("storage-events").textContent = storage.events === undefined ? "–" : String(storage.events);
  const bytes = $("storage-bytes");
  bytes.textContent = storage.disk_bytes === undefined ? "–" : formatBytes(storage.disk_bytes);
  bytes.title = storage.disk_bytes === undefined ? "" : `${storage.disk_bytes} bytes`;
  $("storage-oldest").textContent = storage.oldest_event == null
    ? "none" : formatSecs(storage.oldest_event);
  $("storage-compaction").textContent = storage.last_compaction == null
    ? "never since start" : formatSecs(storage.last_compaction);
}

function showFederation(federation) {
  const node = $("federation");
  if (federation === null || federation === undefined || typeof federation !== "object") {
    node.textContent = "Not configured: this node runs alone.";
    return;
  }
  const f = federation;
  const c = f.cluster_connections || {};
  const pairs = [
    ["Node", f.node_id],
    ["Redis", f.redis + (f.required ? " (required for readiness)" : "")],
    ["Nodes alive", String(f.nodes_alive)],
    ["Forwarded / received", `${f.forwarded} / ${f.received}`],
    ["Skipped", String(f.skipped)],
    ["Forwarding behind by", `${f.forward_lag_events} events`],
    ["Receiving behind by", `${f.receive_lag_ms} ms`],
    ["Cluster connections",
      `${c.websocket} WebSocket, ${c.sse} SSE, ${c.long_poll} long poll, ${c.grpc_streams} gRPC`],
  ];
  if (f.last_error) pairs.push(["Last error", f.last_error]);
  const list = el("dl", { className: "pairs" });
  for (const [key, value] of pairs) {
    const bad = key === "Redis" && f.redis !== "up";
    list.append(el("dt", {}, key), el("dd", bad ? { className: "bad" } : {}, value));
  }
  const nodes = el("ul", {});
  for (const n of f.nodes || []) {
    nodes.append(el("li", {}, `${n.node_id}${n.self ? " (this node)" : ""}: seen ${formatSecs(n.last_seen)}`));
  }
  node.replaceChildren(list, nodes);
}

async function refreshHealth(state) {
  try {
    const h = await health({ signal: state.life.signal });
    $("status").textContent = h.status;
    $("status").className = h.status === "ok" ? "ok" : "bad";
    if (!state.previous) {
      $("version").textContent = h.version;
      $("uptime").textContent = formatUptime(h.uptime_seconds);
    }
    const rows = Object.entries(h.components || {}).map(([name, c]) => {
      const status = c.status || "unknown";
      return el("tr", {},
        el("th", { scope: "row" }, name),
        td(c.reason ? `${status}: ${c.reason}` : status, status === "ok" ? "ok" : "bad"));
    });
    $("components").replaceChildren(...rows);
    state.errors.health = h.reason ? `Degraded: ${h.reason}` : null;
  } catch (e) {
    if (isAbort(e) || e.status === 401) return;
    state.errors.health = `Health: ${e.message}`;
  }
  showErrors(state);
}
