// The dashboard's plots, drawn as SVG at the element's own size so that text stays readable on a
// phone: the error against the terms summed, the throughput of each worker, and the coverage of
// the run's range. Each draws what it is given; app.js decides when.
import { T, $, none, fmtInt, fmtSci, fmtRate, fill, clean, setText } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function tip(node, text) { node.appendChild(el("title", {}, text)); return node; }
// Text cut with "…" to fit `max` px in the plots' font, measured on a canvas (no layout of the
// page), once per text and width.
const fitted = new Map();
let pen = null;
function fitText(text, max) {
  const key = max + "\u0000" + text;
  if (fitted.has(key)) return fitted.get(key);
  if (!pen) {
    pen = document.createElement("canvas").getContext("2d");
    pen.font = "12px " + getComputedStyle(document.body).fontFamily;
  }
  const chars = Array.from(text);
  let out = text;
  if (pen.measureText(text).width > max) {
    let lo = 0, hi = chars.length;  // the longest prefix that fits with its "…"
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (pen.measureText(chars.slice(0, mid).join("") + "…").width <= max) lo = mid; else hi = mid - 1;
    }
    out = chars.slice(0, lo).join("") + "…";
  }
  if (fitted.size > 1000) fitted.clear();
  fitted.set(key, out);
  return out;
}
function size(svg, height) {
  const w = Math.max(280, Math.round(svg.clientWidth || 600));
  svg.setAttribute("viewBox", "0 0 " + w + " " + height);
  svg.style.height = height + "px";
  return w;
}
function noData(svg) {
  size(svg, 80);
  svg.replaceChildren(el("text", { x: 16, y: 44 }, T.no_data));
}
const SUP = { "-": "⁻", "0": "⁰", "1": "¹", "2": "²", "3": "³", "4": "⁴", "5": "⁵", "6": "⁶", "7": "⁷", "8": "⁸", "9": "⁹" };
const pow10 = (d) => "10" + String(d).split("").map((c) => SUP[c] || c).join("");

// The corrected estimate's error reaches the limit of double precision (π's last bit is
// 4.4·10⁻¹⁶; an error of 0 has no logarithm): such points are drawn at this floor, which is
// marked and explained, and the axis goes one decade below it.
const FLOOR = 1e-16;
export function drawErrorPlot(points) {
  const svg = $("error-plot");
  // Terms are decimal strings in the API (like every term count); a plot needs numbers.
  const pts = points.map((p) => ({ ...p, terms: Number(p.done_terms) })).filter((p) => p.terms > 0 && p.error > 0);
  if (pts.length < 1) return noData(svg);
  const H0 = 240, W = size(svg, H0), L = 52, R = 14, TOP = 10, B = 30;
  const lx = (v) => Math.log10(v);
  const corrected = (p) => (none(p.corrected_error) ? null : Math.max(FLOOR, p.corrected_error));
  const floored = pts.filter((p) => !none(p.corrected_error) && p.corrected_error <= FLOOR).length;
  const ys = [];
  pts.forEach((p) => { ys.push(lx(p.error)); const c = corrected(p); if (c !== null) ys.push(lx(c)); });
  let x0 = Math.floor(lx(pts[0].terms)), x1 = Math.ceil(lx(pts[pts.length - 1].terms));
  // A decade of room below the lowest line, so that no line is drawn on the axis.
  let y0 = Math.floor(Math.min(...ys)) - 1, y1 = Math.ceil(Math.max(...ys));
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1;
  const X = (v) => L + (W - L - R) * (lx(v) - x0) / (x1 - x0);
  const Y = (v) => TOP + (H0 - TOP - B) * (y1 - lx(v)) / (y1 - y0);
  const kids = [];
  kids.push(el("line", { x1: L, y1: H0 - B, x2: W - R, y2: H0 - B, class: "axis" }));
  kids.push(el("line", { x1: L, y1: TOP, x2: L, y2: H0 - B, class: "axis" }));
  const xstep = Math.max(1, Math.ceil((x1 - x0) / Math.max(2, Math.floor((W - L) / 70))));
  for (let d = x0; d <= x1; d += xstep) {
    const x = L + (W - L - R) * (d - x0) / (x1 - x0);
    kids.push(el("line", { x1: x, y1: TOP, x2: x, y2: H0 - B, class: "axis" }));
    kids.push(el("text", { x: x, y: H0 - B + 18, "text-anchor": d === x1 ? "end" : "middle" }, pow10(d)));
  }
  const ystep = Math.max(1, Math.ceil((y1 - y0) / 6));
  for (let d = y0; d <= y1; d += ystep) {
    const y = TOP + (H0 - TOP - B) * (y1 - d) / (y1 - y0);
    kids.push(el("line", { x1: L, y1: y, x2: W - R, y2: y, class: "axis" }));
    kids.push(el("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, pow10(d)));
  }
  const path = (value) => {
    let d = "";
    pts.forEach((p) => {
      const v = value(p);
      if (v !== null) d += (d ? " L" : "M") + X(p.terms).toFixed(1) + " " + Y(v).toFixed(1);
    });
    return d;
  };
  const raw = path((p) => p.error);
  if (raw) kids.push(el("path", { d: raw, class: "raw" }));
  if (floored) {
    // The floor: a dotted line with its explanation, above the axis.
    const y = Y(FLOOR);
    kids.push(el("line", { x1: L, y1: y, x2: W - R, y2: y, class: "floor" }));
    kids.push(tip(el("text", { x: W - R - 4, y: y - 5, "text-anchor": "end", class: "floor-note" }, "≤ " + pow10(-16)),
      fill(T.corrected_floor, { n: fmtInt(floored) })));
  }
  const cor = path(corrected);
  if (cor) kids.push(el("path", { d: cor, class: "corrected" }));
  // Hover values: one target per point.
  const step = Math.max(1, Math.ceil(pts.length / 80));
  pts.forEach((p, i) => {
    if (i % step !== 0 && i !== pts.length - 1) return;
    kids.push(tip(el("circle", { cx: X(p.terms).toFixed(1), cy: Y(p.error).toFixed(1), r: 5, class: "dot" }),
      fill(T.error_tip, { terms: fmtInt(p.terms), error: fmtSci(p.error) })));
  });
  svg.replaceChildren(...kids);
}

export function drawThroughput(workers, total) {
  const svg = $("throughput-plot");
  const ws = workers.filter((w) => w.terms_per_s > 0).slice(0, 20);
  const more = Math.max(0, total - ws.length);
  setText("throughput-more", more ? fill(T.more_workers, { n: fmtInt(more) }) : "");
  $("throughput-more").hidden = !more;
  if (!ws.length) return noData(svg);
  const rowH = 22, H0 = ws.length * rowH + 12;
  const W = size(svg, H0);
  const L = Math.min(170, Math.round(W * 0.32)), VAL = 64;
  const max = Math.max(...ws.map((w) => w.terms_per_s));
  const kids = [];
  ws.forEach((w, i) => {
    const y = 6 + i * rowH;
    const full = clean(w.worker);
    // Cut by its drawn width, not by characters (a W is four times an i): it ends before its bar.
    const name = fitText(full, L - 12);
    kids.push(el("text", { x: 4, y: y + 15 }, name));
    const width = Math.max(2, (W - L - VAL - 8) * w.terms_per_s / max);
    kids.push(tip(el("rect", { x: L, y: y + 3, width: width.toFixed(1), height: rowH - 6, class: "bar" }),
      full + ": " + fmtInt(Math.round(w.terms_per_s)) + " " + T.terms_per_s));
    kids.push(el("text", { x: L + width + 4, y: y + 15 }, fmtRate(w.terms_per_s)));
  });
  svg.replaceChildren(...kids);
}

// Adjacent buckets of one state are one stretch, drawn as one rectangle on whole units (a
// finished run is one solid bar, with no seams between buckets); its hover value sums them.
export function drawCoverage(map) {
  const svg = $("coverage-map");
  if (!map.buckets.length) { setText("coverage-span", ""); svg.replaceChildren(); return; }
  const n = map.buckets.length, w = 1000 / n;
  const state = (b) => {
    const total = b.done + b.in_flight + b.given_back + b.not_started;
    if (b.rejected > 0) return "rejected";
    if (b.given_back > 0) return "given_back";
    if (b.in_flight > 0) return "in_flight";
    if (b.done === total && total > 0) return "done";
    if (b.done > 0) return "partial";
    return "not_started";
  };
  const states = map.buckets.map(state);
  const kids = [];
  for (let i = 0; i < n;) {
    const sum = { done: 0, in_flight: 0, given_back: 0, rejected: 0, not_started: 0 };
    let j = i;
    for (; j < n && states[j] === states[i]; j++) for (const k in sum) sum[k] += map.buckets[j][k];
    const x0 = Math.round(i * w), x1 = Math.round(j * w);
    const r = el("rect", { x: x0, y: 0, width: x1 - x0, height: 40, class: "cov-" + states[i] });
    const lo = i * map.width, hi = Math.min(map.span, j * map.width) - 1;
    kids.push(tip(r, fill(T.coverage_tip, {
      lo: fmtInt(lo), hi: fmtInt(hi), done: fmtInt(sum.done), in_flight: fmtInt(sum.in_flight),
      given_back: fmtInt(sum.given_back), rejected: fmtInt(sum.rejected), not_started: fmtInt(sum.not_started),
    })));
    i = j;
  }
  svg.replaceChildren(...kids);
  setText("coverage-span", "[0, " + fmtInt(map.span * map.chunk) + ")");
}

