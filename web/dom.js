// Small DOM helpers shared by the pages: element building (text only, never
// HTML), error lines, formatting, and `Life`, what a page opened and must
// close when it is left.

import { isAbort } from "./api.js";

export const $ = (id) => document.getElementById(id);

/**
 * `<tag>` with properties (`className`, `type`, …; `data` for dataset,
 * `attrs` for attributes) and children (nodes or strings, as text).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "data") Object.assign(node.dataset, value);
    else if (key === "attrs") {
      for (const [name, v] of Object.entries(value)) node.setAttribute(name, v);
    } else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** A table cell holding `text`. */
export const td = (text, className) => el("td", className ? { className } : {}, String(text ?? ""));

/** Shows the error's message in `node` (an `.error`); nothing for a left page or a 401. */
export function showError(node, e) {
  if (isAbort(e) || (e && e.status === 401)) return;
  node.textContent = (e && e.message) || String(e);
  node.hidden = false;
}

export function clearError(node) {
  node.textContent = "";
  node.hidden = true;
}

/** A status line (`role=status`): `text`, shown. */
export function say(node, text) {
  node.textContent = text;
  node.hidden = !text;
}

const pad = (n) => String(n).padStart(2, "0");

/** `YYYY-MM-DD HH:MM:SS`, local time, of a time in milliseconds. */
export function formatTime(ms) {
  if (ms === null || ms === undefined) return "–";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The same, of Unix seconds. */
export const formatSecs = (secs) =>
  secs === null || secs === undefined ? "–" : formatTime(secs * 1000);

/** `1d 2h 3m 4s`, leading zero units left out. */
export function formatUptime(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  return [d && `${d}d`, (d || h) && `${h}h`, (d || h || m) && `${m}m`, `${s}s`]
    .filter(Boolean).join(" ");
}

/** A duration in its largest whole units: `7d`, `1h 30m`, `45s`. */
export function formatDuration(seconds) {
  const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
  const parts = [];
  let rest = seconds;
  for (const [name, size] of units) {
    const n = Math.floor(rest / size);
    if (n) parts.push(`${n}${name}`);
    rest %= size;
  }
  return parts.slice(0, 2).join(" ") || "0s";
}

/** `12.3 KiB`. */
export function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A rate as plain digits: one decimal below 10, whole above. */
export function formatRate(rate) {
  if (!Number.isFinite(rate) || rate <= 0) return "0";
  return rate < 10 ? String(Math.round(rate * 10) / 10) : String(Math.round(rate));
}

/** A comma-separated list as trimmed, non-empty items. */
export const splitList = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

/**
 * The valid stream (and consumer) names: 1 to 128 of `A-Z a-z 0-9 . _ : -`,
 * and not `.` or `..` (a URL path would resolve them away).
 */
export const STREAM_NAME = /^(?!\.\.?$)[A-Za-z0-9._:-]{1,128}$/;

/** The valid user and token names: 1 to 64 of `A-Z a-z 0-9 . _ @ -`, not `.` or `..`. */
export const USER_NAME = /^(?!\.\.?$)[A-Za-z0-9._@-]{1,64}$/;

/**
 * What a page opened: fetches (`signal`), listeners (`on`), timers and
 * EventSources; `end()` cancels and closes them all. A timer that fired or
 * a source that was closed is forgotten at once, so retries do not pile up.
 */
export class Life {
  constructor() {
    this.controller = new AbortController();
    this.signal = this.controller.signal;
    this.cleanups = new Set();
  }

  get ended() {
    return this.signal.aborted;
  }

  on(target, type, fn) {
    target.addEventListener(type, fn, { signal: this.signal });
  }

  every(ms, fn) {
    const timer = setInterval(fn, ms);
    this.cleanups.add(() => clearInterval(timer));
  }

  after(ms, fn) {
    const cancel = () => clearTimeout(timer);
    const timer = setTimeout(() => {
      this.cleanups.delete(cancel);
      if (!this.ended) fn();
    }, ms);
    this.cleanups.add(cancel);
  }

  /** An EventSource on `url`; its `close()` also forgets it here. */
  source(url) {
    const source = new EventSource(url);
    const close = () => {
      this.cleanups.delete(close);
      EventSource.prototype.close.call(source);
    };
    source.close = close;
    this.cleanups.add(close);
    return source;
  }

  defer(fn) {
    this.cleanups.add(fn);
  }

  end() {
    this.controller.abort();
    const fns = [...this.cleanups];
    this.cleanups.clear();
    for (const fn of fns) fn();
  }
}

/** Disables `button` while `work` runs. */
export async function busy(button, work) {
  if (button) button.disabled = true;
  try {
    return await work();
  } finally {
    if (button) button.disabled = false;
  }
}
