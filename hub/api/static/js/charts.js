// Small SVG charts: a time-series line chart and a grouped bar chart. Hand-written
// so the console needs no build step and no third-party bundle.
import { esc } from "./api.js";

const NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f7ed8", "#e4572e", "#29a36a", "#f2a541", "#8e5ad6", "#4bc0c8"];

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function niceTicks(min, max, n = 5) {
  if (min === max) { min -= 1; max += 1; }
  const span = max - min;
  const step0 = Math.pow(10, Math.floor(Math.log10(span / n)));
  const step = [1, 2, 5, 10].map((m) => m * step0).find((s) => span / s <= n) || step0 * 10;
  const lo = Math.floor(min / step) * step;
  const hi = Math.max(lo + step, Math.ceil(max / step - 1e-9) * step);
  const out = [];
  for (let v = lo; v <= hi + step * 1e-6; v += step) out.push(+v.toFixed(10));
  return out;
}

// An HTML legend under a chart: a colour swatch and the name of each series, so it
// wraps on a phone instead of running off the SVG.
function legend(names, col, extra = []) {
  const div = document.createElement("div");
  div.className = "chart-legend";
  names.forEach((n, i) => {
    const s = document.createElement("span");
    s.innerHTML = `<i style="background:${col(i)}"></i>${esc(n)}`;
    div.append(s);
  });
  for (const x of extra) {
    const s = document.createElement("span");
    s.className = "threshold";
    s.innerHTML = `<i></i>${esc(x)}`;
    div.append(s);
  }
  return div;
}

// series: [{name, points: [[Date|ms, value], ...]}]; thresholds: [{value, label}]
// drawn as dashed lines (a rule's limit), and kept inside the value axis.
export function lineChart(container, series, { height = 220, unit = "", thresholds = [] } = {}) {
  container.innerHTML = "";
  const width = Math.max(320, container.clientWidth || 600);
  const m = { l: 52, r: 12, t: 12, b: 28 };
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) { container.innerHTML = '<div class="empty">–</div>'; return; }
  const xs = pts.map((p) => +new Date(p[0]));
  const ys = pts.map((p) => p[1]).filter((v) => v !== null && !Number.isNaN(v)).concat(thresholds.map((th) => th.value));
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const ticks = niceTicks(Math.min(...ys), Math.max(...ys));
  const y0 = ticks[0], y1 = ticks[ticks.length - 1];
  const X = (v) => m.l + ((+new Date(v) - x0) / (x1 - x0)) * (width - m.l - m.r);
  const Y = (v) => height - m.b - ((v - y0) / (y1 - y0 || 1)) * (height - m.t - m.b);
  for (const tv of ticks) {
    svg.append(el("line", { x1: m.l, x2: width - m.r, y1: Y(tv), y2: Y(tv), class: "grid" }));
    svg.append(el("text", { x: m.l - 6, y: Y(tv) + 4, "text-anchor": "end", class: "tick" }, `${tv}${unit && unit !== "%" ? "" : unit}`));
  }
  if (unit && unit !== "%") svg.append(el("text", { x: 4, y: m.t + 2, class: "tick unit" }, unit));
  const span = x1 - x0;
  for (let i = 0; i <= 4; i++) {
    const tx = x0 + (span * i) / 4;
    const d = new Date(tx);
    const label = span > 2 * 86400e3 ? `${d.getMonth() + 1}/${d.getDate()}` :
      `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
    svg.append(el("text", { x: X(tx), y: height - 8, "text-anchor": "middle", class: "tick" }, label));
  }
  for (const th of thresholds) {
    const ln = el("line", { x1: m.l, x2: width - m.r, y1: Y(th.value), y2: Y(th.value), class: "threshold", "data-threshold": th.value });
    ln.append(el("title", {}, th.label));
    svg.append(ln);
  }
  const col = (i) => PALETTE[i % PALETTE.length];
  series.forEach((s, i) => {
    const d = s.points.filter((p) => p[1] !== null)
      .map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
    svg.append(el("path", { d, fill: "none", stroke: col(i), "stroke-width": 2 }));
  });
  container.append(svg, legend(series.map((s) => s.name + (unit ? ` (${unit})` : "")), col, thresholds.map((th) => th.label)));
}

// groups: [{label, values: {seriesName: number}, total?}]; stacked or side by side.
// A stacked group's label is its own total where given (the segments must add up to
// it: each segment a disjoint share), else the segments' sum.
export function barChart(container, groups, seriesNames, { height = 240, stacked = false, fmt = (v) => v, colors } = {}) {
  container.innerHTML = "";
  if (!groups.length) { container.innerHTML = '<div class="empty">–</div>'; return; }
  const width = Math.max(320, container.clientWidth || 600);
  const m = { l: 56, r: 12, t: 18, b: 56 };
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const totals = groups.map((g) => stacked ? (g.total ?? seriesNames.reduce((a, s) => a + (g.values[s] || 0), 0))
    : Math.max(0, ...seriesNames.map((s) => g.values[s] || 0)));
  const ticks = niceTicks(0, Math.max(1, ...totals), 4);
  const top = ticks[ticks.length - 1];
  const Y = (v) => height - m.b - (v / top) * (height - m.t - m.b);
  for (const tv of ticks) {
    svg.append(el("line", { x1: m.l, x2: width - m.r, y1: Y(tv), y2: Y(tv), class: "grid" }));
    svg.append(el("text", { x: m.l - 6, y: Y(tv) + 4, "text-anchor": "end", class: "tick" }, fmt(tv)));
  }
  const gw = (width - m.l - m.r) / groups.length;
  const bw = stacked ? gw * 0.6 : (gw * 0.8) / seriesNames.length;
  const col = (i) => (colors && colors[i]) || PALETTE[i % PALETTE.length];
  groups.forEach((g, gi) => {
    let acc = 0;
    seriesNames.forEach((s, si) => {
      const v = g.values[s] || 0;
      const x = stacked ? m.l + gi * gw + gw * 0.2 : m.l + gi * gw + gw * 0.1 + si * bw;
      const yTop = stacked ? Y(acc + v) : Y(v);
      const h = stacked ? Y(acc) - Y(acc + v) : Y(0) - Y(v);
      const r = el("rect", { x, y: yTop, width: Math.max(1, bw - 2), height: Math.max(0, h), fill: col(si), "data-group": g.label, "data-series": s, "data-value": v });
      r.append(el("title", {}, `${g.label} · ${s}: ${fmt(v)}`));
      svg.append(r);
      if (!stacked && v) svg.append(el("text", { x: x + bw / 2 - 1, y: yTop - 3, "text-anchor": "middle", class: "val" }, fmt(v)));
      acc += v;
    });
    if (stacked && totals[gi]) svg.append(el("text", { x: m.l + gi * gw + gw / 2, y: Y(totals[gi]) - 3, "text-anchor": "middle", class: "val", "data-group": g.label, "data-total": totals[gi] }, fmt(totals[gi])));
    const lx = m.l + gi * gw + gw / 2, ly = height - m.b + 16;
    const text = g.label.length > 10 ? g.label.slice(0, 10) + "…" : g.label;
    // Narrow groups get slanted labels so neighbours do not overwrite each other.
    const attrs = gw < 80 ? { x: lx, y: ly - 6, "text-anchor": "end", class: "tick", transform: `rotate(-30 ${lx} ${ly - 6})` }
      : { x: lx, y: ly, "text-anchor": "middle", class: "tick" };
    svg.append(el("text", attrs, text));
  });
  container.append(svg, legend(seriesNames, col));
  container.setAttribute("aria-label", esc(seriesNames.join(", ")));
}
