// Hand-drawn SVG charts: a line chart (scale trace), a heat map (fills per station per
// hour) and horizontal bars against a limit (stock vs capacity). No library, no build.
import { h } from "./dom.js";

const W = 640;

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** series: [{name, points: [{x: number (ms), y: number}]}] (or one points array); marks: [{x, label}]. */
export function lineChart(series, { height = 180, yLabel = "", xFormat = String, marks = [], width = W } = {}) {
  const pad = { l: 44, r: 10, t: 10, b: 22 };
  if (series.length && series[0].x !== undefined) series = [{ name: "", points: series }];
  const points = series.flatMap((s) => s.points);
  const svg = h("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none",
    role: "img", "aria-label": yLabel });
  if (!points.length) return svg;
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const yMax = niceMax(Math.max(...ys)), yMin = Math.min(0, Math.min(...ys));
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - ((y - yMin) / (yMax - yMin || 1)) * (height - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const v = yMin + ((yMax - yMin) * i) / 4;
    svg.append(h("line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: Y(v), y2: Y(v) }),
      h("text", { class: "axis", x: pad.l - 4, y: Y(v) + 4, "text-anchor": "end" }, String(Math.round(v * 10) / 10)));
  }
  for (let i = 0; i <= 4; i++) {
    const v = x0 + ((x1 - x0) * i) / 4;
    svg.append(h("text", { class: "axis", x: X(v), y: height - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" },
      xFormat(v)));
  }
  for (const m of marks) {
    if (m.x < x0 || m.x > x1) continue;
    svg.append(h("line", { class: "mark", x1: X(m.x), x2: X(m.x), y1: pad.t, y2: height - pad.b },
      h("title", null, m.label || "")));
  }
  series.forEach((s, i) => {
    svg.append(h("polyline", { class: `series s${i % 4}`, points: s.points.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(" ") },
      h("title", null, s.name)));
    if (s.name && series.length > 1) svg.append(h("text", { class: `legend-t s${i % 4}`, x: width - pad.r - 4, y: pad.t + 12 + i * 12, "text-anchor": "end" }, s.name));
  });
  return svg;
}

/** rows: [{label, values: [n per column]}], columns: [label]; cell colour by value. */
export function heatmap(rows, columns, { cell = 18, labelW = 150, title = "" } = {}) {
  const width = labelW + columns.length * cell + 50;
  const height = 20 + rows.length * cell + 4;
  const max = Math.max(1, ...rows.flatMap((r) => r.values));
  const svg = h("svg", { class: "chart heat", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  columns.forEach((c, j) => {
    if (j % 3 === 0) svg.append(h("text", { class: "axis", x: labelW + j * cell + cell / 2, y: 13, "text-anchor": "middle" }, c));
  });
  rows.forEach((r, i) => {
    const y = 20 + i * cell;
    svg.append(h("text", { class: "label", x: labelW - 6, y: y + cell * 0.7, "text-anchor": "end" }, r.label));
    let sum = 0;
    r.values.forEach((v, j) => {
      sum += v;
      const a = v > 0 ? 0.15 + 0.85 * (v / max) : 0;
      svg.append(h("rect", { class: v > 0 ? "cell" : "cell empty", x: labelW + j * cell + 1, y: y + 1, width: cell - 2,
        height: cell - 2, style: v > 0 ? `fill-opacity:${a.toFixed(2)}` : null },
      h("title", null, `${r.label} ${columns[j]}: ${v}`)));
    });
    svg.append(h("text", { class: "axis", x: labelW + columns.length * cell + 6, y: y + cell * 0.7 }, String(sum)));
  });
  return svg;
}

/** items: [{label, value, limit}] as horizontal bars; over the limit is marked. */
export function limitBars(items, { row = 18, labelW = 150, width = W, title = "" } = {}) {
  const height = items.length * row + 6;
  const max = Math.max(1, ...items.map((i) => Math.max(i.value || 0, i.limit || 0)));
  const scale = (v) => ((width - labelW - 60) * v) / max;
  const svg = h("svg", { class: "chart bars", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  items.forEach((it, i) => {
    const y = 3 + i * row;
    const over = it.limit !== null && it.limit !== undefined && it.value > it.limit;
    svg.append(
      h("text", { class: "label", x: labelW - 6, y: y + row * 0.7, "text-anchor": "end" }, it.label),
      h("rect", { class: "track", x: labelW, y: y + 3, width: scale(it.limit || 0), height: row - 6 }),
      h("rect", { class: over ? "bar over" : "bar", x: labelW, y: y + 3, width: Math.max(1, scale(it.value || 0)), height: row - 6 },
        h("title", null, `${it.label}: ${it.value} / ${it.limit ?? "?"}`)),
      it.limit ? h("line", { class: "limit", x1: labelW + scale(it.limit), x2: labelW + scale(it.limit), y1: y + 1, y2: y + row - 1 }) : null,
      h("text", { class: over ? "value over" : "value", x: labelW + Math.max(scale(it.value || 0), scale(it.limit || 0)) + 6,
        y: y + row * 0.7 }, `${it.value ?? "—"} / ${it.limit ?? "—"}`),
    );
  });
  return svg;
}
