// #/consumers (admins): every named consumer with its lag per stream
// (`api/v1/consumers`); Reset rewinds it to the start of its streams (an ack
// of cursor 0), Delete removes its positions. Both ask first.

import { del, get, post, seg } from "../api.js";
import { $, el, td, busy, clearError, say, showError } from "../dom.js";

const REFRESH_MS = 5000;

export function enter(life) {
  clearError($("consumers-error"));
  say($("consumers-result"), "");
  $("consumers-table").tBodies[0].replaceChildren();
  $("consumers-empty").hidden = true;
  life.on($("consumers-table"), "click", (event) => act(event, life));
  refresh(life);
  life.every(REFRESH_MS, () => refresh(life));
}

function lagList(streams) {
  if (!streams.length) return "–";
  return el("ul", { className: "plain" }, ...streams.map((s) =>
    el("li", {},
      el("code", {}, s.stream), `: ${s.lag}${s.lag_capped ? "+" : ""} behind (at ${s.cursor})`)));
}

function button(className, label, name) {
  return el("button", {
    type: "button",
    className: `${className} ${className.endsWith("delete") ? "danger" : "secondary"}`,
    attrs: { "aria-label": `${label} consumer ${name}` },
  }, label);
}

/** Rows are rebuilt only for what changed, so that focus stays on a button. */
async function refresh(life) {
  let answer;
  try {
    answer = await get("api/v1/consumers", { signal: life.signal });
  } catch (e) {
    showError($("consumers-error"), e);
    return;
  }
  if (life.ended) return;
  clearError($("consumers-error"));
  const consumers = (answer && answer.consumers) || [];
  const body = $("consumers-table").tBodies[0];
  const rows = new Map([...body.rows].map((row) => [row.dataset.consumer, row]));
  const names = new Set(consumers.map((c) => c.name));
  for (const [name, row] of rows) if (!names.has(name)) row.remove();
  for (const consumer of consumers) {
    const { name } = consumer;
    let row = rows.get(name);
    if (!row) {
      row = el("tr", { data: { consumer: name } },
        el("th", { scope: "row" }, name), td(""),
        el("td", { className: "actions" },
          button("consumer-reset", "Reset", name), button("consumer-delete", "Delete", name)));
      body.append(row);
    }
    const lag = JSON.stringify(consumer.streams || []);
    if (row.dataset.lag !== lag) {
      row.dataset.lag = lag;
      row.cells[1].replaceChildren(lagList(consumer.streams || []));
    }
  }
  $("consumers-empty").hidden = consumers.length > 0;
}

async function act(event, life) {
  const target = event.target.closest("button");
  const row = target && target.closest("tr[data-consumer]");
  if (!row) return;
  const name = row.dataset.consumer;
  const error = $("consumers-error");
  const result = $("consumers-result");
  clearError(error);
  say(result, "");
  try {
    if (target.classList.contains("consumer-reset")) {
      if (!confirm(`Rewind consumer ${name} to the start of its streams?`)) return;
      await busy(target, () => post(`api/v1/consumers/${seg(name)}/ack`, { cursor: "0" },
        { signal: life.signal }));
      say(result, `Consumer ${name} was reset.`);
    } else if (target.classList.contains("consumer-delete")) {
      if (!confirm(`Delete consumer ${name} and its positions?`)) return;
      await busy(target, () => del(`api/v1/consumers/${seg(name)}`, { signal: life.signal }));
      say(result, `Consumer ${name} was deleted.`);
      $("consumers-title").focus();
    } else {
      return;
    }
    await refresh(life);
  } catch (e) {
    showError(error, e);
  }
}
