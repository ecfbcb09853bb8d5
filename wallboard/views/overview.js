// The city overview: the sites drawn at their coordinates (no map tiles), coloured by
// state; counts of open alerts, cameras offline, guns locked; fills per hour per station
// and outlet stock against capacity.
import { h, replace, Disposer, coalesce } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { fmtHour } from "../fmt.js";
import { api } from "../api.js";
import { ACTIVE_STATES, SEVERITY_RANK, atLeast } from "../model.js";
import { heatmap, limitBars } from "../chart.js";

const CHART_REFRESH_MS = 60000;
const HOURS = 24;
const MAP_W = 1000;

/** A site's state on the map, most urgent first. */
export function siteState(site, store) {
  let sev = 0;
  for (const a of store.alerts.values()) {
    if (a.site === site.id && ACTIVE_STATES.includes(a.state)) sev = Math.max(sev, SEVERITY_RANK[a.severity] || 0);
  }
  if (sev === 3 || site.state === "critical") return "critical";
  if (store.gunsOf(site.id).some((g) => g.locked) || site.state === "locked") return "locked";
  if (sev > 0 || site.state === "warning") return "warning";
  const cams = site.cameras.map((id) => store.cameras.get(id)).filter(Boolean);
  if (cams.some((c) => c.state === "offline") || site.state === "offline") return "offline";
  return "ok";
}

function convexHull(pts) {
  const p = [...pts].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (p.length < 3) return p;
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower = [], upper = [];
  for (const q of p) { while (lower.length >= 2 && cross(lower.at(-2), lower.at(-1), q) <= 0) lower.pop(); lower.push(q); }
  for (const q of p.reverse()) { while (upper.length >= 2 && cross(upper.at(-2), upper.at(-1), q) <= 0) upper.pop(); upper.push(q); }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

export function mount(el, { store }) {
  const d = new Disposer();
  const counts = h("div", { class: "kpis" });
  const map = h("div", { class: "map" });
  const side = h("div", { class: "site-card" });
  const fills = h("div", { class: "chart-box" }, h("div", { class: "empty small" }, t("common.loading")));
  const stock = h("div", { class: "chart-box" }, h("div", { class: "empty small" }, t("common.loading")));
  el.append(h("div", { class: "overview" },
    counts,
    h("div", { class: "ov-main" },
      h("section", { class: "map-box" }, h("h3", null, t("ov.map")), map, legend(), side),
      h("div", { class: "ov-charts" },
        h("section", null, h("h3", null, t("ov.fills", { h: HOURS })), fills),
        h("section", null, h("h3", null, t("ov.stock")), stock)))));
  let selected = null;

  function legend() {
    return h("div", { class: "legend" }, ["ok", "warning", "critical", "locked", "offline"].map((s) =>
      h("span", { class: `lg ${s}` }, h("i"), t(`ov.legend.${s}`))),
    h("span", { class: "lg" }, h("i", { class: "sq" }), t("kind.station")), h("span", { class: "lg" }, h("i", { class: "dot" }), t("kind.outlet")));
  }

  function localCounts() {
    const c = { sites: store.sites.size, stations: 0, outlets: 0, cameras: store.cameras.size, cameras_offline: 0,
      alerts_open: 0, alerts_critical: 0, guns: 0, guns_locked: 0 };
    for (const s of store.sites.values()) { c[s.kind === "station" ? "stations" : "outlets"]++; c.guns += s.guns.length; }
    for (const cam of store.cameras.values()) if (cam.state === "offline") c.cameras_offline++;
    for (const a of store.alerts.values()) if (ACTIVE_STATES.includes(a.state)) { c.alerts_open++; if (a.severity === "critical") c.alerts_critical++; }
    for (const g of store.guns.values()) if (g.locked) c.guns_locked++;
    return c;
  }

  function renderCounts() {
    const c = { ...localCounts(), ...(store.counts || {}) };
    const kpi = (key, label, cls) => h("div", { class: ["kpi", cls && c[key] > 0 && cls], "data-kpi": key },
      h("span", { class: "v" }, String(c[key] ?? "—")), h("span", { class: "k" }, label));
    replace(counts,
      kpi("stations", t("ov.stations")), kpi("outlets", t("ov.outlets")), kpi("cameras", t("ov.cameras")),
      kpi("cameras_offline", t("ov.offline"), "bad"), kpi("alerts_open", t("ov.alerts"), "warn"),
      kpi("alerts_critical", t("ov.critical"), "bad"), kpi("guns", t("ov.guns")), kpi("guns_locked", t("ov.locked"), "lock"));
  }

  function renderMap() {
    const sites = [...store.sites.values()].filter((s) => s.location);
    if (!sites.length) { replace(map, h("div", { class: "empty" }, t("ov.nodata"))); return; }
    const lons = sites.map((s) => s.location[0]), lats = sites.map((s) => s.location[1]);
    const lat0 = (Math.min(...lats) + Math.max(...lats)) / 2;
    const k = Math.cos((lat0 * Math.PI) / 180);
    const minX = Math.min(...lons) * k, maxX = Math.max(...lons) * k, minY = -Math.max(...lats), maxY = -Math.min(...lats);
    const spanX = Math.max(maxX - minX, 0.01), spanY = Math.max(maxY - minY, 0.01);
    const pad = 0.08;
    const scale = MAP_W / (spanX * (1 + 2 * pad));
    const H = Math.max(300, Math.round(spanY * (1 + 2 * pad) * scale));
    const P = ([lon, lat]) => [(lon * k - minX + spanX * pad) * scale, (-lat - minY + spanY * pad) * scale + (H - spanY * (1 + 2 * pad) * scale) / 2];
    const svg = h("svg", { class: "citymap", viewBox: `0 0 ${MAP_W} ${H}`, role: "img", "aria-label": t("ov.map") });
    // graticule every 0.05 degrees
    const step = 0.05;
    for (let lon = Math.ceil(Math.min(...lons) / step) * step; lon <= Math.max(...lons); lon += step) {
      const [x] = P([lon, lat0]);
      svg.append(h("line", { class: "grat", x1: x, x2: x, y1: 0, y2: H }), h("text", { class: "grat-l", x: x + 2, y: H - 4 }, `${lon.toFixed(2)}°E`));
    }
    for (let lat = Math.ceil(Math.min(...lats) / step) * step; lat <= Math.max(...lats); lat += step) {
      const [, y] = P([Math.min(...lons), lat]);
      svg.append(h("line", { class: "grat", x1: 0, x2: MAP_W, y1: y, y2: y }), h("text", { class: "grat-l", x: 4, y: y - 2 }, `${lat.toFixed(2)}°N`));
    }
    // districts: the hull of their sites, faintly, with the name at the centre
    const byDistrict = new Map();
    for (const s of sites) { const l = byDistrict.get(s.district) || []; l.push(P(s.location)); byDistrict.set(s.district, l); }
    for (const [name, pts] of byDistrict) {
      if (!name) continue;
      const hull = convexHull(pts);
      if (hull.length >= 3) svg.append(h("polygon", { class: "district", points: hull.map((p) => p.join(",")).join(" ") }));
      const cx = pts.reduce((s, p) => s + p[0], 0) / pts.length, cy = pts.reduce((s, p) => s + p[1], 0) / pts.length;
      svg.append(h("text", { class: "district-l", x: cx, y: cy, "text-anchor": "middle" }, name));
    }
    // outlets under stations
    for (const s of [...sites].sort((a, b) => (a.kind === "station") - (b.kind === "station"))) {
      const [x, y] = P(s.location);
      const st = siteState(s, store);
      const c = s.counts;
      const tip = h("title", null, t("ov.site.tip", { name: s.name, a: c.alerts_open, o: c.cameras_offline, l: c.guns_locked }));
      const attrs = { class: ["site", s.kind, st, selected === s.id && "sel"], "data-site": s.id, "data-state": st,
        onclick: () => { selected = s.id; renderMap(); renderSide(); } };
      svg.append(s.kind === "station"
        ? h("rect", { ...attrs, x: x - 7, y: y - 7, width: 14, height: 14, rx: 2 }, tip)
        : h("circle", { ...attrs, cx: x, cy: y, r: 4.5 }, tip));
      if (s.kind === "station") svg.append(h("text", { class: "site-l", x: x + 10, y: y + 4 }, s.name.replace(/(液化气|液化石油气)?(充装站|气站)$/, "")));
    }
    replace(map, svg);
  }

  function renderSide() {
    const s = selected && store.sites.get(selected);
    if (!s) { replace(side); return; }
    const st = siteState(s, store);
    const active = [...store.alerts.values()].filter((a) => a.site === s.id && ACTIVE_STATES.includes(a.state));
    replace(side,
      h("h4", null, s.name, h("span", { class: `pill ${st}` }, t(`ov.legend.${st}`))),
      h("div", null, `${tOr(`kind.${s.kind}`, s.kind)} · ${s.district} · ${t("ov.capacity")} ${s.capacity ?? "—"}`),
      h("div", null, `${t("ov.alerts")} ${active.length} · ${t("ov.offline")} ${s.counts.cameras_offline} · ${t("ov.locked")} ${s.counts.guns_locked}`),
      h("div", { class: "links" },
        h("a", { class: "btn small", href: `#/wall?site=${encodeURIComponent(s.id)}` }, t("nav.wall")),
        h("a", { class: "btn small", href: `#/alerts?site=${encodeURIComponent(s.id)}` }, t("nav.alerts")),
        s.kind === "station" && atLeast(store.me, "viewer") ? h("a", { class: "btn small", href: "#/stations" }, t("nav.stations")) : null));
  }

  async function loadCharts() {
    try {
      const f = await api.get("/api/v1/charts/fills", { hours: HOURS });
      const cols = (f.hours || []).map((x) => fmtHour(x));
      const rows = (f.stations || []).map((s) => ({ label: s.name || s.site, values: s.counts || [] }));
      replace(fills, rows.length && rows.some((r) => r.values.some((v) => v > 0)) ? heatmap(rows, cols, { title: t("ov.fills", { h: HOURS }) })
        : h("div", { class: "empty small" }, t("ov.nodata")));
    } catch (e) {
      replace(fills, h("div", { class: "empty small" }, e.routeMissing ? t("common.unavailable", { what: "GET /api/v1/charts/fills" }) : t("ov.nodata")));
    }
    try {
      const s = await api.get("/api/v1/charts/stock");
      const items = (s.outlets || []).map((o) => ({ label: o.name || o.site, value: o.stock ?? o.video_count ?? 0, limit: o.capacity }))
        .sort((a, b) => (b.value / (b.limit || 1)) - (a.value / (a.limit || 1))).slice(0, 20);
      replace(stock, items.length ? limitBars(items, { title: t("ov.stock") }) : h("div", { class: "empty small" }, t("ov.nodata")));
    } catch (e) {
      replace(stock, h("div", { class: "empty small" }, e.routeMissing ? t("common.unavailable", { what: "GET /api/v1/charts/stock" }) : t("ov.nodata")));
    }
  }

  const redraw = coalesce(() => { renderCounts(); renderMap(); renderSide(); });
  d.add(redraw.cancel);
  for (const kind of ["sites", "cameras", "alerts", "guns", "counts"]) d.add(store.on(kind, redraw));
  d.interval(loadCharts, CHART_REFRESH_MS);
  d.add(store.on("resynced", loadCharts));
  renderCounts();
  renderMap();
  loadCharts();
  return () => d.dispose();
}
