// The video wall: every camera of the city as a tile, grouped by district or site kind,
// paged; snapshots refresh for the visible page only, offline tiles stand out with since
// when; zones and live detections drawn over the tiles when switched on.
import { h, replace, select, Disposer, coalesce } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { fmtAgo, fmtShort } from "../fmt.js";
import { snapshotUrl } from "../actions.js";
import { drawOverlay } from "../overlay.js";
import { normDetections } from "../model.js";

const PREFS = "monitor.wall";
const NATURAL = new Intl.Collator("zh-CN", { numeric: true });
const PAGE_SIZES = [12, 24, 48, 96, 200];
const OVERLAY_MAX_CAMERAS = 48;   // live detections subscribed for at most this many tiles

function loadPrefs(store) {
  const base = { group: "district", kind: "", state: "", overlay: false, pageSize: store.settings.page_size || 24, page: 0, q: "" };
  try { return { ...base, ...JSON.parse(localStorage.getItem(PREFS) || "{}"), page: 0 }; } catch { return base; }
}

export function mount(el, { store, live, missing, navigate, query }) {
  const d = new Disposer();
  const prefs = loadPrefs(store);
  if (query.site) prefs.q = query.site;
  const save = () => { try { localStorage.setItem(PREFS, JSON.stringify(prefs)); } catch { /* ignore */ } };
  const toolbar = h("div", { class: "toolbar" });
  const grid = h("div", { class: "wall" });
  const pager = h("div", { class: "pager" });
  el.append(toolbar, grid, pager);
  let tiles = new Map();        // camera id -> tile record, for the visible page
  let releaseDetections = null;
  const detections = new Map(); // camera id -> latest detections (visible tiles only)

  function cameraList() {
    const q = prefs.q.trim().toLowerCase();
    const out = [];
    for (const c of store.cameras.values()) {
      const s = store.sites.get(c.site) || { name: c.site, district: "", kind: "" };
      if (prefs.kind && s.kind !== prefs.kind) continue;
      if (prefs.state === "offline" && c.state === "online") continue;
      if (q && !`${s.name} ${s.id} ${c.name} ${c.id}`.toLowerCase().includes(q)) continue;
      out.push({ c, s });
    }
    const key = ({ s }) => (prefs.group === "district" ? s.district || "—" : prefs.group === "kind" ? s.kind : "");
    // Stations before outlets; names in natural order (第2号 before 第10号).
    out.sort((a, b) => key(a).localeCompare(key(b), "zh-CN") || (b.s.kind || "").localeCompare(a.s.kind || "")
      || NATURAL.compare(a.s.name, b.s.name) || NATURAL.compare(a.c.id, b.c.id));
    return out.map((x) => ({ ...x, group: key(x) }));
  }

  function renderToolbar(all) {
    const on = all.filter(({ c }) => c.state === "online").length;
    replace(toolbar,
      h("input", { class: "search", type: "search", placeholder: t("wall.search"), value: prefs.q,
        oninput: (e) => { prefs.q = e.target.value; prefs.page = 0; render(); } }),
      h("label", null, t("wall.group"), select([["district", t("wall.group.district")], ["kind", t("wall.group.kind")],
        ["none", t("wall.group.none")]], prefs.group, (v) => { prefs.group = v; prefs.page = 0; save(); render(); })),
      h("label", null, t("wall.kind"), select([["", t("common.all")], ["station", t("kind.station")], ["outlet", t("kind.outlet")]],
        prefs.kind, (v) => { prefs.kind = v; prefs.page = 0; save(); render(); })),
      h("label", null, t("wall.state"), select([["", t("wall.state.all")], ["offline", t("wall.state.offline")]],
        prefs.state, (v) => { prefs.state = v; prefs.page = 0; save(); render(); })),
      h("label", null, t("wall.pagesize"), select(PAGE_SIZES.map((n) => [String(n), String(n)]), String(prefs.pageSize),
        (v) => { prefs.pageSize = Number(v); prefs.page = 0; save(); render(); })),
      h("label", { class: "check" }, h("input", { type: "checkbox", checked: prefs.overlay, name: "overlay",
        onchange: (e) => { prefs.overlay = e.target.checked; save(); render(); } }), t("wall.overlay")),
      counts);
    paintCounts(all, on);
  }

  // The toolbar's online / offline tally follows every camera event, not only full renders.
  const counts = h("span", { class: "counts" });
  function paintCounts(all = cameraList(), on = all.filter(({ c }) => c.state === "online").length) {
    counts.textContent = t("wall.counts", { on, off: all.length - on, n: all.length });
  }

  function tile({ c, s }) {
    const img = h("img", { alt: "", decoding: "async", draggable: "false" });
    const canvas = h("canvas", { class: "overlay" });
    const badge = h("span", { class: "state" });
    const offline = h("div", { class: "offline-note" });
    const el = h("div", { class: "tile", tabindex: 0, "data-camera": c.id, title: `${s.name} · ${c.name}`,
      onclick: () => navigate(`#/camera/${encodeURIComponent(c.id)}`),
      onkeydown: (e) => { if (e.key === "Enter") navigate(`#/camera/${encodeURIComponent(c.id)}`); } },
    h("div", { class: "media" }, img, canvas, offline),
    h("div", { class: "cap" }, h("span", { class: "site" }, s.name), h("span", { class: "cam" }, c.name), badge));
    const rec = { c, s, el, img, canvas, badge, offline, loading: false, loaded: false, next: 0 };
    img.onload = () => { rec.loading = false; rec.loaded = true; el.classList.add("has-image"); if (prefs.overlay) paint(rec); };
    img.onerror = () => {
      // No snapshot (camera not started, or unknown to the video part): ask again later.
      rec.loading = false;
      rec.next = performance.now() + 15000;
    };
    paintState(rec);
    return rec;
  }

  function paintState(rec) {
    const c = store.cameras.get(rec.c.id) || rec.c;
    rec.c = c;
    const off = c.state !== "online";
    rec.el.classList.toggle("offline", c.state === "offline" || c.state === "unassigned");
    rec.el.classList.toggle("degraded", c.state === "degraded");
    rec.badge.className = `state ${c.state}`;
    rec.badge.textContent = tOr(`cam.state.${c.state}`, c.state);
    if (off && c.since) {
      replace(rec.offline, h("strong", null, t("wall.offline.since", { t: fmtShort(c.since), d: fmtAgo(c.since) })),
        c.reason ? h("small", null, c.reason) : null);
    } else if (off) {
      replace(rec.offline, h("strong", null, tOr(`cam.state.${c.state}`, c.state)), c.reason ? h("small", null, c.reason) : null);
    } else {
      replace(rec.offline);
    }
  }

  function paint(rec) {
    if (!prefs.overlay) return;
    drawOverlay(rec.canvas, rec.img, { zones: rec.c.zones, detections: detections.get(rec.c.id) });
  }

  function render() {
    const all = cameraList();
    renderToolbar(all);
    const pages = Math.max(1, Math.ceil(all.length / prefs.pageSize));
    prefs.page = Math.min(prefs.page, pages - 1);
    const shown = all.slice(prefs.page * prefs.pageSize, (prefs.page + 1) * prefs.pageSize);
    const old = tiles;
    tiles = new Map();
    const children = [];
    let group = null;
    for (const x of shown) {
      if (prefs.group !== "none" && x.group !== group) {
        group = x.group;
        children.push(h("div", { class: "group" }, prefs.group === "kind" ? tOr(`kind.${group}`, group) : group));
      }
      // Keep a tile (and its loaded image) across re-renders.
      const rec = old.get(x.c.id) || tile(x);
      rec.s = x.s;
      paintState(rec);
      tiles.set(x.c.id, rec);
      children.push(rec.el);
    }
    for (const [id, rec] of old) if (!tiles.has(id)) { rec.img.removeAttribute("src"); rec.img.onload = rec.img.onerror = null; }
    grid.className = `wall size-${shown.length <= 12 ? "l" : shown.length <= 24 ? "m" : shown.length <= 48 ? "s" : "xs"}`;
    grid.classList.toggle("with-overlay", prefs.overlay);
    if (!all.length) children.push(h("div", { class: "empty" },
      missing.has("/api/v1/cameras") ? t("common.unavailable", { what: "GET /api/v1/cameras" }) : t("wall.nocams")));
    replace(grid, children);
    replace(pager,
      h("button", { class: "btn small", disabled: prefs.page === 0, onclick: () => { prefs.page--; render(); } }, t("common.prev")),
      h("span", null, t("common.page", { p: prefs.page + 1, n: pages })),
      h("button", { class: "btn small", disabled: prefs.page >= pages - 1, onclick: () => { prefs.page++; render(); } }, t("common.nextpage")));
    subscribeDetections();
    schedule(true);
    if (prefs.overlay) for (const rec of tiles.values()) paint(rec);
  }

  function subscribeDetections() {
    if (releaseDetections) { releaseDetections(); releaseDetections = null; }
    detections.clear();
    if (!prefs.overlay) return;
    const ids = [...tiles.keys()].slice(0, OVERLAY_MAX_CAMERAS);
    if (ids.length) releaseDetections = live.subscribe(ids.map((id) => `detections:${id}`));
  }

  // Snapshot refresh: each visible online tile once per period, spread over the period,
  // never two requests for one tile at a time; paused while the page is hidden.
  function schedule(reset) {
    const period = Math.max(0.5, Number(store.settings.snapshot_refresh_s) || 2) * 1000;
    const now = performance.now();
    let i = 0;
    for (const rec of tiles.values()) {
      if (reset || !rec.next) rec.next = now + (period * i++) / Math.max(1, tiles.size);
    }
  }

  function tick() {
    if (document.hidden) return;
    const period = Math.max(0.5, Number(store.settings.snapshot_refresh_s) || 2) * 1000;
    const now = performance.now();
    for (const rec of tiles.values()) {
      if (rec.loading || now < rec.next) continue;
      if (rec.c.state !== "online" && rec.loaded) continue;   // an offline tile keeps its last picture
      rec.next = now + period;
      rec.loading = true;
      rec.img.src = `${snapshotUrl(rec.c.id)}?t=${Date.now()}`;
    }
  }

  d.interval(tick, 100);
  d.interval(() => {
    if (!prefs.overlay) return;
    for (const rec of tiles.values()) paint(rec);
  }, 250);
  d.interval(() => { for (const rec of tiles.values()) if (rec.c.state !== "online") paintState(rec); }, 15000);
  const rerender = coalesce(render);
  d.add(rerender.cancel);
  const recount = coalesce(() => paintCounts());   // a burst of camera events: one tally
  d.add(recount.cancel);
  d.add(store.on("cameras", (id) => {
    if (id === null) { rerender(); return; }
    const rec = tiles.get(id);
    if (rec) { paintState(rec); recount(); } else if (tiles.size < prefs.pageSize) rerender(); else recount();
  }));
  d.add(store.on("sites", rerender));
  d.add(store.on("missing", rerender));
  d.add(live.on("detections", (ev) => {
    const det = normDetections(ev);
    if (det.camera && tiles.has(det.camera)) detections.set(det.camera, det);
  }));
  render();
  return () => {
    d.dispose();
    if (releaseDetections) releaseDetections();
    for (const rec of tiles.values()) { rec.img.onload = rec.img.onerror = null; rec.img.removeAttribute("src"); }
    tiles.clear();
    detections.clear();
  };
}
