// The dashboard's formatting and page writes: numbers and dates through Intl for the page's
// language, the page's strings (#strings, English or Portuguese), and writes that touch the page
// only when what they write changed. Shared by app.js and plots.js.
export const T = JSON.parse(document.getElementById("strings").textContent);
export const LANG = document.documentElement.lang || "en";
export const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------
const intFmt = new Intl.NumberFormat(LANG, { maximumFractionDigits: 0 });
const sciFmt = new Intl.NumberFormat(LANG, { notation: "scientific", maximumFractionDigits: 3 });
const piFmt = new Intl.NumberFormat(LANG, { minimumFractionDigits: 15, maximumFractionDigits: 15, useGrouping: false });
export const partialFmt = new Intl.NumberFormat(LANG, { notation: "scientific", maximumFractionDigits: 12 });
const compactFmt = new Intl.NumberFormat(LANG, { notation: "compact", maximumFractionDigits: 2 });
export const pctFmt = new Intl.NumberFormat(LANG, { style: "percent", maximumFractionDigits: 1 });
const durFmt = (u, digits) => new Intl.NumberFormat(LANG, { style: "unit", unit: u, maximumSignificantDigits: digits });
const sFmt = durFmt("second", 3), msFmt = durFmt("millisecond", 3), usFmt = durFmt("microsecond", 2), nsFmt = durFmt("nanosecond", 2);
const relFmt = new Intl.RelativeTimeFormat(LANG, { numeric: "auto", style: "short" });
const unit = (u) => new Intl.NumberFormat(LANG, { style: "unit", unit: u, unitDisplay: "narrow", maximumFractionDigits: 0 });
const hourFmt = unit("hour"), minFmt = unit("minute"), secFmt = unit("second");
const dateFmt = new Intl.DateTimeFormat(LANG, { dateStyle: "short", timeStyle: "medium" });

export const none = (v) => v === null || v === undefined;
export function fmtInt(n) {
  if (none(n)) return "–";
  try { return intFmt.format(typeof n === "string" ? BigInt(n) : n); } catch (e) { return String(n); }
}
export const fmtSci = (x) => none(x) ? "–" : sciFmt.format(x);
export const fmtPi = (x) => none(x) ? "–" : piFmt.format(x);
export const fmtRate = (x) => !x ? "–" : compactFmt.format(x);
export function fmtDuration(s) {
  if (none(s) || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const parts = [];
  if (h) parts.push(hourFmt.format(h));
  if (h || m) parts.push(minFmt.format(m));
  parts.push(secFmt.format(sec));
  return parts.join(" ");
}
// The server's uptime, to the minute ("< 1 min", "5 min", "2 h 5 min"): the page writes it
// once a minute, not each second, since each write costs the page a frame while nothing else
// changes.
export function fmtUptime(s) {
  if (none(s) || !isFinite(s)) return "–";
  const m = Math.floor(Math.max(0, s) / 60), h = Math.floor(m / 60);
  if (m === 0) return "< " + minFmt.format(1);
  return h ? hourFmt.format(h) + " " + minFmt.format(m % 60) : minFmt.format(m);
}
// A result's duration in the unit that suits it ("37 µs", "1.25 ms"); a duration of zero is
// below the clock's resolution, which is under a millisecond for every worker.
export function fmtSeconds(s) {
  if (none(s) || !isFinite(s)) return "–";
  if (s <= 0) return "< " + msFmt.format(1);
  if (s >= 1) return sFmt.format(s);
  if (s >= 1e-3) return msFmt.format(s * 1e3);
  if (s >= 1e-6) return usFmt.format(s * 1e6);
  return nsFmt.format(s * 1e9);
}
// "12 s ago", from a time in milliseconds since the epoch.
function fmtAgo(t, now) {
  if (isNaN(t)) return "–";
  const s = (t - now) / 1000;
  const a = Math.abs(s);
  if (a < 60) return relFmt.format(Math.round(s), "second");
  if (a < 3600) return relFmt.format(Math.round(s / 60), "minute");
  if (a < 86400) return relFmt.format(Math.round(s / 3600), "hour");
  return dateFmt.format(new Date(t));
}
export function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
}
// Bidirectional controls in a name could reorder what is shown ("evil" shown as "live"):
// each is replaced by its visible code.
const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;
export function clean(s) {
  return String(s).replace(BIDI, (c) => "[U+" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0") + "]");
}
export const stateName = (s) => T[s] || s;

// Writes only what changed: writing an unchanged text or attribute still costs the browser a
// new layout, and the page is updated four times a second.
export function put(el, text) {
  const t = el.firstChild;
  if (t && t.nodeType === 3 && t === el.lastChild) { if (t.data !== text) t.data = text; }
  else if (el.textContent !== text) el.textContent = text;
}
export function setText(id, value) {
  const el = $(id);
  if (el) put(el, none(value) ? "–" : String(value));
}
export function setAttr(el, name, value) {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}
// A property such as `hidden`, `disabled`, `title` or `value`.
export function setProp(el, name, value) {
  if (el[name] !== value) el[name] = value;
}
export function setData(el, key, value) {
  if (el.dataset[key] !== value) el.dataset[key] = value;
}
// A time cell of the worker table: relative, local; the UTC value on hover. The clock
// rewrites a cell only when its text can have changed (each second for seconds ago, each
// minute for hours ago, never for a date).
const clocks = new Map();  // cell → { t, next }
function tick(el, clock, now) {
  put(el, fmtAgo(clock.t, now));
  const age = Math.abs(now - clock.t);
  clock.next = isNaN(age) ? Infinity : now + (age < 60e3 ? 1000 : age < 3600e3 ? 10e3 : age < 86400e3 ? 60e3 : Infinity);
}
export function setTime(el, iso) {
  if (el.dataset.ts === iso && clocks.has(el)) return;
  el.dataset.ts = iso;
  setProp(el, "title", iso);
  const clock = { t: Date.parse(iso), next: 0 };
  clocks.set(el, clock);
  tick(el, clock, Date.now());
}
// A history row's or a run's time: the local clock time (its date if not today), the UTC
// value on hover. Written once with the row: a history does not change by itself, so a page of
// history left alone costs nothing (a relative "12 s ago" in every row rewrote them all each
// second).
const clockFmt = new Intl.DateTimeFormat(LANG, { timeStyle: "medium" });
const dayFmt = new Intl.DateTimeFormat(LANG, { dateStyle: "short" });
export function setStamp(el, iso) {
  if (el.dataset.ts === iso) return;
  el.dataset.ts = iso;
  setProp(el, "title", iso);
  const t = new Date(iso);
  if (isNaN(t)) { put(el, "–"); return; }
  put(el, t.toDateString() === new Date().toDateString() ? clockFmt.format(t) : dayFmt.format(t));
}
setInterval(() => {
  const now = Date.now();
  clocks.forEach((clock, el) => {
    if (!el.isConnected) clocks.delete(el);
    else if (now >= clock.next) tick(el, clock, now);
  });
}, 1000);

