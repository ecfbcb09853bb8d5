// The wallboard: log in, the header, the router, the live connection and resynchronisation.
import { api } from "./api.js";
import { h, replace, Disposer, coalesce } from "./dom.js";
import { fmtClock, fmtDuration, setTimeZone } from "./fmt.js";
import { t, setLang, onLang, currentLang } from "./i18n.js";
import { Live } from "./live.js";
import { atLeast } from "./model.js";
import { store } from "./store.js";
import { alarm, isMuted, setMuted, soundStats, unlockAudio } from "./sound.js";
import { closeDialog, toast } from "./dialog.js";
import * as overview from "./views/overview.js";
import * as wall from "./views/wall.js";
import * as camera from "./views/camera.js";
import * as alerts from "./views/alerts.js";
import * as stations from "./views/stations.js";
import * as incident from "./views/incident.js";

const ROUTES = {
  overview: { view: overview, nav: "nav.overview", role: "viewer" },
  wall: { view: wall, nav: "nav.wall", role: "viewer" },
  camera: { view: camera, role: "viewer" },
  alerts: { view: alerts, nav: "nav.alerts", role: "viewer" },
  stations: { view: stations, nav: "nav.stations", role: "viewer" },
  incident: { view: incident, nav: "nav.incident", role: "supervisor" },
};
const DEFAULT_ROUTE = "overview";
const REMIND_MS = 20000;   // an unacknowledged critical alert sounds again this often

const root = document.getElementById("app");
const live = new Live();
const missing = new Set();    // endpoints this server does not have (their part is not installed)
let current = null;            // {name, param, destroy}
let session = null;            // Disposer for everything that lives while logged in

// For the tests and for whoever looks at a wall that has run for weeks: sizes that must stay bounded.
window.__wall = { store, live, missing, sound: soundStats, stats: () => ({
  listeners: store.listenerCount(), handlers: [...live.handlers.values()].reduce((n, s) => n + s.size, 0),
  topics: live.topics.size, alerts: store.alerts.size, cameras: store.cameras.size, guns: store.guns.size,
  ws: live.stats, state: live.state }) };

export const ctx = { store, live, api, missing, navigate, routeAllowed, refresh: resync };

function routeAllowed(name) {
  const r = ROUTES[name];
  return Boolean(r) && atLeast(store.me, r.role);
}

function navigate(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const [name, ...rest] = path.split("/");
  return { name: name || DEFAULT_ROUTE, param: rest.length ? decodeURIComponent(rest.join("/")) : null,
    query: Object.fromEntries(new URLSearchParams(query)) };
}

function route() {
  if (!store.me) return;
  const { name, param, query } = parseHash();
  const r = ROUTES[name] && routeAllowed(name) ? name : DEFAULT_ROUTE;
  if (current) { current.destroy(); current = null; }
  closeDialog();
  const main = document.getElementById("main");
  replace(main);
  for (const a of document.querySelectorAll("nav.tabs a")) a.classList.toggle("active", a.dataset.route === r);
  const destroy = ROUTES[r].view.mount(main, { ...ctx, param, query });
  current = { name: r, param, destroy: typeof destroy === "function" ? destroy : () => {} };
}

// --- loading what the views show; tolerant of parts that are not installed yet -----------

async function load(path, params, apply) {
  try {
    const data = await api.get(path, params);
    missing.delete(path);
    apply(data);
    return true;
  } catch (e) {
    if (e.status === 404 && e.routeMissing) {
      if (!missing.has(path)) { missing.add(path); store.emit("missing", path); }
    } else if (e.status !== 401) {
      console.warn("load", path, e);
    }
    return false;
  }
}

async function loadAlerts() {
  // Active ones (any age) plus the most recent closed and resolved ones, for context.
  const got = [];
  const ok = await load("/api/v1/alerts", { state: "open,acknowledged", limit: 400 }, (d) => got.push(...(d.alerts || d)));
  if (!ok) return;
  const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  await load("/api/v1/alerts", { state: "resolved,closed", since, limit: 100 }, (d) => got.push(...(d.alerts || d)));
  store.setAlerts(got);
}

let resyncing = null;
async function resync() {
  if (resyncing) return resyncing;
  resyncing = (async () => {
    await load("/api/v1/overview", null, (d) => {
      // The service was upgraded under a wall that has run for days: load the new wallboard.
      if (d.wallboard_version && store.version && d.wallboard_version !== store.version) location.reload();
      store.version = d.wallboard_version || store.version;
      if (d.timezone) setTimeZone(d.timezone);
      if (d.settings) Object.assign(store.settings, d.settings);
      store.setCounts(d.counts || null);
    });
    await Promise.all([
      load("/api/v1/sites", null, (d) => store.setSites(d)),
      load("/api/v1/cameras", null, (d) => store.setCameras(d)),
      load("/api/v1/guns", null, (d) => store.setGuns(d)),
      loadAlerts(),
    ]);
    store.emit("resynced");
  })();
  try { await resyncing; } finally { resyncing = null; }
}

// --- the live connection -------------------------------------------------------------------

function wireLive(d) {
  d.add(live.on("alerts", (ev) => {
    if (Array.isArray(ev.alerts)) {   // every live alert, greeting a new subscriber
      for (const a of ev.alerts) store.alertEvent({ alert: a });
      return;
    }
    const r = store.alertEvent(ev);
    if (r && r.fresh && r.alert.severity === "critical" && r.alert.state === "open" && ev.notify !== false) alarm();
  }));
  d.add(live.on("cameras", (ev) => store.cameraEvent(ev)));
  d.add(live.on("guns", (ev) => store.gunEvent(ev)));
  d.add(live.on("counts", (ev) => store.setCounts(ev.counts || ev)));
  d.add(live.on("resync", (ev) => {
    resync();
    if (ev.reason === "overflow") toast(t("conn.resync"));
  }));
  d.add(live.on("ended", async () => {
    // The server closed the socket because the session ended (401: back to the login) or
    // the role changed (start again with what the role now allows).
    try {
      const me = await api.get("/api/v1/me");
      if (store.me && me.role !== store.me.role) location.reload();
    } catch { /* onUnauthorized shows the login */ }
  }));
  d.add(live.subscribe(["alerts", "cameras", "guns", "counts"]));
  d.add(live.onState(renderConn));
  live.start();
  d.add(() => live.stop());
  // Critical alerts nobody acknowledged sound again until someone does.
  d.interval(() => {
    for (const a of store.alerts.values()) {
      if (a.severity === "critical" && a.state === "open") { alarm(); return; }
    }
  }, REMIND_MS);
}

function renderConn(state) {
  const el = document.getElementById("conn");
  if (!el) return;
  el.className = `conn ${state}`;
  const secs = Math.max(0, Math.round((live.retryAt - Date.now()) / 1000));
  el.textContent = state === "online" ? t("conn.online") : state === "offline" ? t("conn.offline", { s: secs })
    : t("conn.connecting");
}

// --- the shell ------------------------------------------------------------------------

function renderShell() {
  const me = store.me;
  const critical = h("a", { id: "critical", class: "badge critical hidden", href: "#/alerts" });
  const sound = h("button", { id: "sound", class: "btn small", type: "button",
    onclick: () => { setMuted(!isMuted()); unlockAudio(); sound.textContent = isMuted() ? t("sound.off") : t("sound.on"); } },
  isMuted() ? t("sound.off") : t("sound.on"));
  const header = h("header", { class: "top" },
    h("div", { class: "brand" }, h("span", { class: "logo" }, "◈"), h("strong", null, t("app.title")),
      h("span", { class: "sub" }, t("app.subtitle"))),
    h("nav", { class: "tabs" }, Object.entries(ROUTES).filter(([n, r]) => r.nav && routeAllowed(n)).map(([n, r]) =>
      h("a", { href: `#/${n}`, "data-route": n }, t(r.nav)))),
    h("div", { class: "status" },
      critical,
      h("span", { id: "conn", class: "conn" }),
      h("span", { id: "clock", class: "clock" }, fmtClock()),
      h("span", { class: "who" }, me.username, " · ", t(`role.${me.role}`)),
      sound,
      h("button", { id: "lang", class: "btn small", type: "button",
        onclick: () => setLang(currentLang() === "en" ? "zh-CN" : "en") }, t("lang.switch")),
      h("button", { id: "logout", class: "btn small", type: "button", onclick: logout }, t("logout"))));
  replace(root, header, h("main", { id: "main" }));
  renderConn(live.state);
  updateCritical();
}

function updateCritical() {
  const el = document.getElementById("critical");
  if (!el) return;
  let n = 0;
  for (const a of store.alerts.values()) if (a.severity === "critical" && a.state === "open") n++;
  el.textContent = `${t("sev.critical")} ${n}`;
  el.classList.toggle("hidden", n === 0);
}

function start(me) {
  store.me = me;
  api.csrf = me.csrf;
  session = new Disposer();
  renderShell();
  wireLive(session);
  const critical = coalesce(updateCritical);
  session.add(critical.cancel);
  session.add(store.on("alerts", critical));
  session.interval(() => {
    const c = document.getElementById("clock");
    if (c) c.textContent = fmtClock();
    if (live.state === "offline") renderConn(live.state);
  }, 1000);
  session.listen(window, "hashchange", route);
  session.listen(document, "pointerdown", unlockAudio, { once: true });
  session.add(onLang(() => { renderShell(); route(); }));
  // A periodic full resync: a safety net under the live events (cheap, bounded).
  session.interval(() => { if (live.state === "online") resync(); }, 5 * 60 * 1000);
  resync();
  route();
}

function stop() {
  if (current) { current.destroy(); current = null; }
  if (session) { session.dispose(); session = null; }
  store.me = null;
  api.csrf = null;
  store.setAlerts([]);
  closeDialog();
}

async function logout() {
  try { await api.post("/api/v1/logout"); } catch { /* the session may be gone already */ }
  stop();
  showLogin();
}

// --- login ------------------------------------------------------------------------------

function showLogin(message) {
  const err = h("div", { class: "form-error", role: "alert" }, message || "");
  const user = h("input", { name: "username", autocomplete: "username", required: true, maxlength: 64 });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, maxlength: 256 });
  const btn = h("button", { class: "btn primary", type: "submit" }, t("login.submit"));
  const form = h("form", { class: "login", onsubmit: async (e) => {
    e.preventDefault();
    unlockAudio();
    btn.disabled = true;
    replace(err);
    try {
      const me = await api.post("/api/v1/login", { username: user.value.trim(), password: pass.value });
      pass.value = "";
      start(me);
    } catch (ex) {
      btn.disabled = false;
      if (ex.status === 429) replace(err, t("login.throttled", { s: ex.retryAfter || 60 }));
      else if (ex.status === 401) replace(err, t("login.bad"));
      else replace(err, t("common.error", { msg: ex.message }));
    }
  } },
  h("h1", null, t("app.title")), h("h2", null, t("login.title")),
  h("label", null, t("login.username"), user), h("label", null, t("login.password"), pass), err, btn,
  h("button", { class: "btn small link", type: "button", onclick: () => { setLang(currentLang() === "en" ? "zh-CN" : "en"); showLogin(); } },
    t("lang.switch")));
  replace(root, h("div", { class: "login-page" }, form));
  user.focus();
}

api.onUnauthorized = () => {
  if (!store.me) return;
  stop();
  showLogin(t("login.expired"));
};

async function boot() {
  document.documentElement.lang = currentLang();
  try {
    const me = await api.get("/api/v1/me");
    start(me);
  } catch (e) {
    showLogin(e.status === 401 || e.status === 0 ? "" : t("common.error", { msg: e.message }));
  }
}

export { fmtDuration };
boot();
