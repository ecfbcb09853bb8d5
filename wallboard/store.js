// The wall's state in memory, bounded: a wall runs for weeks, so every collection has a
// cap and every listener an unsubscribe.
import { alertFromEvent, alertOrder, cameraFromEvent, cameraPatch, camerasOfSites, gunsFromEvent, normAlert, normCameras, normGuns,
  normSites, ACTIVE_STATES } from "./model.js";

export const MAX_ALERTS = 500;
const NATURAL = new Intl.Collator("en", { numeric: true });

export class Store {
  constructor() {
    this.me = null;
    this.version = null;   // the wallboard's files as first loaded
    this.settings = { timezone: "Asia/Shanghai", snapshot_refresh_s: 2, page_size: 24 };
    this.sites = new Map();
    this.cameras = new Map();
    this.alerts = new Map();
    this.guns = new Map();
    this.counts = null;
    this.listeners = new Map();
  }

  on(kind, fn) {
    let set = this.listeners.get(kind);
    if (!set) { set = new Set(); this.listeners.set(kind, set); }
    set.add(fn);
    return () => set.delete(fn);
  }

  emit(kind, detail) {
    const set = this.listeners.get(kind);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(detail); } catch (e) { console.error("listener", kind, e); }
    }
  }

  listenerCount() {
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }

  setSites(data) {
    this.sites = new Map(normSites(data).map((s) => [s.id, s]));
    // The configured cameras, until (and besides) what the video part says about them.
    let added = false;
    for (const c of camerasOfSites(data)) {
      if (!this.cameras.has(c.id)) { this.cameras.set(c.id, c); added = true; }
    }
    this.emit("sites");
    if (added) this.emit("cameras", null);
  }

  setCameras(data) {
    const fresh = new Map(normCameras(data).map((c) => [c.id, c]));
    for (const [id, c] of fresh) {
      const old = this.cameras.get(id);
      if (old && (!c.zones || !Object.keys(c.zones).length)) c.zones = old.zones;
    }
    for (const [id, c] of this.cameras) if (!fresh.has(id) && c.state === "unknown") fresh.set(id, c);
    this.cameras = fresh;
    this.emit("cameras", null);
  }

  cameraEvent(ev) {
    if (Array.isArray(ev.cameras)) {   // the state of every camera (greeting a new subscriber)
      for (const x of ev.cameras) this.cameraEvent(x);
      this.emit("cameras", null);
      return;
    }
    const p = cameraPatch(ev);
    if (!p) return;
    const old = this.cameras.get(p.id);
    this.cameras.set(p.id, old ? { ...old, ...p, reason: p.reason ?? null, since: p.since || old.since }
      : cameraFromEvent(ev));
    this.emit("cameras", p.id);
  }

  setAlerts(list) {
    const m = new Map();
    for (const a of list.map(normAlert)) m.set(String(a.id), a);
    this.alerts = m;
    this._bound();
    this.emit("alerts", null);
  }

  alertEvent(ev) {
    const a = alertFromEvent(ev);
    if (!a) return null;
    const id = String(a.id);
    const old = this.alerts.get(id);
    if (old && a.rev && old.rev && a.rev < old.rev) return { alert: old, fresh: false };  // an older event
    this.alerts.set(id, old ? { ...old, ...a } : a);
    this._bound();
    this.emit("alerts", { alert: a, fresh: !old });
    return { alert: a, fresh: !old };
  }

  /** Keep at most MAX_ALERTS: drop closed and resolved ones first, oldest first. */
  _bound() {
    if (this.alerts.size <= MAX_ALERTS) return;
    const sorted = [...this.alerts.values()].sort(alertOrder);
    this.alerts = new Map(sorted.slice(0, MAX_ALERTS).map((a) => [String(a.id), a]));
  }

  sortedAlerts(filter = {}) {
    const out = [];
    for (const a of this.alerts.values()) {
      if (filter.state === "active" ? !ACTIVE_STATES.includes(a.state) : (filter.state && a.state !== filter.state)) continue;
      if (filter.site && a.site !== filter.site) continue;
      if (filter.rule && a.rule !== filter.rule) continue;
      out.push(a);
    }
    return out.sort(alertOrder);
  }

  setGuns(data) {
    this.guns = new Map(normGuns(data).map((g) => [g.key, g]));
    this.emit("guns", null);
  }

  gunEvent(ev) {
    const changed = gunsFromEvent(ev);
    for (const g of changed) {
      const old = this.guns.get(g.key);
      if (old && g.seq !== null && old.seq !== null && g.seq < old.seq) continue;  // an older row
      this.guns.set(g.key, g);
    }
    if (changed.length) this.emit("guns", changed.map((g) => g.key));
  }

  gunsOf(site) {
    return [...this.guns.values()].filter((g) => g.site === site).sort((a, b) => NATURAL.compare(a.gun, b.gun));
  }

  setCounts(c) { this.counts = c; this.emit("counts", c); }
}

export const store = new Store();
