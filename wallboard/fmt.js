// Times: UTC in the API, the city's time zone (Asia/Shanghai by default) on screen.
import { currentLang, t } from "./i18n.js";

let zone = "Asia/Shanghai";
const cache = new Map();

export function setTimeZone(tz) {
  if (tz && tz !== zone) { zone = tz; cache.clear(); }
}
export function timeZone() { return zone; }

function formatter(kind) {
  const key = `${currentLang()}|${kind}|${zone}`;
  let f = cache.get(key);
  if (!f) {
    const loc = currentLang() === "en" ? "en-GB" : "zh-CN";
    const opts = { timeZone: zone, hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" };
    if (kind === "full") Object.assign(opts, { year: "numeric", month: "2-digit", day: "2-digit" });
    if (kind === "short") Object.assign(opts, { month: "2-digit", day: "2-digit" });
    if (kind === "hour") { delete opts.second; delete opts.minute; opts.hour = "2-digit"; }
    f = new Intl.DateTimeFormat(loc, opts);
    cache.set(key, f);
  }
  return f;
}

export function toDate(v) {
  if (v === null || v === undefined || v === "") return null;
  if (v instanceof Date) return v;
  const d = typeof v === "number" ? new Date(v < 1e12 ? v * 1000 : v) : new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** 2024-05-01 13:04:05 in the city's zone. */
export function fmtTime(v) {
  const d = toDate(v);
  return d ? formatter("full").format(d).replace(/\//g, "-") : "—";
}

/** 05-01 13:04:05: dense lists. */
export function fmtShort(v) {
  const d = toDate(v);
  return d ? formatter("short").format(d).replace(/\//g, "-") : "—";
}

export function fmtClock(d = new Date()) { return formatter("time").format(d); }

export function fmtHour(v) {
  const d = toDate(v);
  return d ? formatter("hour").format(d) : "";
}

export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return t("common.dur.s", { n: s });
  if (s < 3600) return t("common.dur.m", { n: Math.floor(s / 60) });
  if (s < 86400) return t("common.dur.h", { n: Math.floor(s / 3600) });
  return t("common.dur.d", { n: Math.floor(s / 86400) });
}

export function fmtAgo(v, now = Date.now()) {
  const d = toDate(v);
  if (!d) return "—";
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  if (s < 60) return t("common.ago.s", { n: s });
  if (s < 3600) return t("common.ago.m", { n: Math.floor(s / 60) });
  if (s < 86400) return t("common.ago.h", { n: Math.floor(s / 3600) });
  return t("common.ago.d", { n: Math.floor(s / 86400) });
}
