// Small hand-written line charts: an inline <svg> of the page (it keeps its
// <title> and <desc>) redrawn at its own pixel size, one polyline per series
// over the last `windowMs`, a legend inside the chart when there are several
// series, and the figures in words in <desc> for screen readers.

import { formatRate } from "./dom.js";

const HEIGHT = 160;
const PAD = { left: 40, right: 8, top: 8, bottom: 20 };
const CHAR_PX = 6.2;

/** A nice upper bound for the y axis: 1, 2 or 5 times a power of ten. */
function niceMax(value) {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

/** An SVG element in the chart's namespace (taken from the page's <svg>). */
function node(svg, tag, attrs, text) {
  const child = document.createElementNS(svg.namespaceURI, tag);
  for (const [name, value] of Object.entries(attrs)) child.setAttribute(name, String(value));
  if (text !== undefined) child.textContent = text;
  return child;
}

/** Legend items laid out in rows that fit `width`; returns their height. */
function legend(svg, series, width, group) {
  let x = PAD.left;
  let row = 0;
  series.forEach((s, i) => {
    const last = s.points.length ? s.points[s.points.length - 1].v : 0;
    const label = `${s.name} ${formatRate(last)}/s`;
    const itemWidth = 18 + label.length * CHAR_PX + 12;
    if (x + itemWidth > width && x > PAD.left) {
      x = PAD.left;
      row += 1;
    }
    const y = PAD.top + row * 18 + 6;
    group.append(
      node(svg, "rect", { x, y: y - 4, width: 12, height: 4, class: `swatch series-${i}` }),
      node(svg, "text", { x: x + 16, y: y + 1, class: "chart-text legend-text" }, label),
    );
    x += itemWidth;
  });
  return (row + 1) * 18 + 4;
}

/**
 * Draws `series` ([{name, points: [{t, v}]}], `t` in ms) into `svg` for the
 * window ending at `now`; `what` names the figure in the description.
 */
export function drawChart(svg, { series, now, windowMs = 60000, what }) {
  const width = Math.max(200, Math.round(svg.getBoundingClientRect().width) || 300);
  svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  for (const child of [...svg.children]) {
    if (child.tagName !== "title" && child.tagName !== "desc") child.remove();
  }
  const group = node(svg, "g", { "aria-hidden": "true" });
  svg.append(group);

  const top = series.length > 1 ? PAD.top + legend(svg, series, width, group) : PAD.top;
  const bottom = HEIGHT - PAD.bottom;
  const right = width - PAD.right;
  const start = now - windowMs;
  const peak = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.v)));
  const max = niceMax(peak);
  const xOf = (t) => PAD.left + ((t - start) / windowMs) * (right - PAD.left);
  const yOf = (v) => bottom - (v / max) * (bottom - top);

  for (const v of [0, max / 2, max]) {
    const y = yOf(v);
    group.append(
      node(svg, "line", { x1: PAD.left, x2: right, y1: y, y2: y, class: "grid" }),
      node(svg, "text", { x: PAD.left - 4, y: y + 4, class: "chart-text", "text-anchor": "end" },
        formatRate(v)),
    );
  }
  group.append(
    node(svg, "text", { x: PAD.left, y: HEIGHT - 4, class: "chart-text" }, "−60 s"),
    node(svg, "text", { x: right, y: HEIGHT - 4, class: "chart-text", "text-anchor": "end" }, "now"),
  );
  series.forEach((s, i) => {
    const points = s.points.filter((p) => p.t >= start)
      .map((p) => `${xOf(p.t).toFixed(1)},${yOf(p.v).toFixed(1)}`).join(" ");
    if (points) {
      group.append(node(svg, "polyline", {
        points, class: `line series-${i}`, "data-series": s.name,
      }));
    }
  });

  const desc = svg.querySelector("desc");
  if (desc) desc.textContent = describe(series, what);
}

/** The chart in words: each series' latest and highest rate. */
function describe(series, what) {
  const parts = series.map((s) => {
    if (!s.points.length) return `${s.name}: no data yet`;
    const latest = s.points[s.points.length - 1].v;
    const highest = Math.max(...s.points.map((p) => p.v));
    return `${s.name}: now ${formatRate(latest)} per second, highest ${formatRate(highest)}`;
  });
  return `${what}, last 60 seconds. ${parts.join("; ")}.`;
}
