// The focused live view of one camera: MSE from the live relay, MJPEG where that cannot
// work, snapshots as the last resort; zones and live detections drawn over it.
import { h, replace, Disposer, coalesce } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { fmtAgo, fmtShort } from "../fmt.js";
import { liveUrl, mjpegUrl, snapshotUrl } from "../actions.js";
import { MsePlayer } from "../player.js";
import { drawOverlay } from "../overlay.js";
import { normDetections, alertOrder, ACTIVE_STATES } from "../model.js";

const RETRY_MSE_MS = 60000;   // after a fallback, try the live relay again this often
const MSE_RETRIES = 2;        // reconnects to the live relay before falling back to MJPEG

export function mount(el, { store, live, param, navigate }) {
  const d = new Disposer();
  const camId = param;
  const video = h("video", { class: "live", muted: true, autoplay: true, playsinline: true });
  video.muted = true;
  const img = h("img", { class: "live hidden", alt: "" });
  const canvas = h("canvas", { class: "overlay" });
  const mode = h("span", { class: "mode" }, t("cam.mode.connecting"));
  const stats = h("span", { class: "stats" });
  const info = h("div", { class: "cam-info" });
  const siteAlerts = h("div", { class: "site-alerts" });
  const opts = { zones: true, detections: true };
  let detections = null;
  let player = null;
  let current = "none";

  const toggles = h("span", { class: "toggles" },
    h("label", { class: "check" }, h("input", { type: "checkbox", checked: true, onchange: (e) => { opts.zones = e.target.checked; } }), t("cam.zones")),
    h("label", { class: "check" }, h("input", { type: "checkbox", checked: true, onchange: (e) => { opts.detections = e.target.checked; } }), t("cam.detections")));
  const title = h("h2", null);
  el.append(h("div", { class: "focus" },
    h("div", { class: "focus-head" },
      h("button", { class: "btn small", onclick: () => (history.length > 1 ? history.back() : navigate("#/wall")) }, `← ${t("common.back")}`),
      title, mode, stats, toggles),
    h("div", { class: "focus-body" },
      h("div", { class: "stage", "data-camera": camId }, video, img, canvas),
      h("aside", null, info, siteAlerts))));

  function camera() { return store.cameras.get(camId); }

  function renderInfo() {
    const c = camera();
    if (!c) { replace(title, t("cam.notfound", { id: camId })); replace(info); return; }
    const s = store.sites.get(c.site) || { name: c.site, district: "" };
    replace(title, `${s.name} · ${c.name}`);
    const rows = [
      [t("wall.state"), h("span", { class: `state ${c.state}` }, tOr(`cam.state.${c.state}`, c.state))],
      c.since ? [t("common.since", { t: "" }).trim(), `${fmtShort(c.since)} (${fmtAgo(c.since)})`] : null,
      c.reason ? [t("col.reason"), c.reason] : null,
      [t("alerts.site"), `${s.name} ${s.district ? `· ${s.district}` : ""}`],
      ...Object.entries(c.counters || {}).slice(0, 12).map(([k, v]) => [tOr(`counter.${k}`, k), String(v)]),
    ].filter(Boolean);
    replace(info, h("dl", null, rows.map(([k, v]) => [h("dt", null, k), h("dd", null, v)])));
    const list = [...store.alerts.values()].filter((a) => a.site === c.site && ACTIVE_STATES.includes(a.state)).sort(alertOrder).slice(0, 10);
    replace(siteAlerts, list.map((a) => h("a", { class: `alert-mini sev-${a.severity}`, href: `#/alerts?site=${encodeURIComponent(a.site)}&id=${encodeURIComponent(a.id)}` },
      h("span", { class: "sev" }, tOr(`sev.${a.severity}`, a.severity)), " ", tOr(`rule.${a.rule}`, a.rule), " · ", fmtAgo(a.last_seen))));
  }

  function setMode(m) {
    current = m;
    video.classList.toggle("hidden", m !== "mse");
    img.classList.toggle("hidden", m === "mse");
    mode.className = `mode ${m}`;
    mode.textContent = t(`cam.mode.${m}`);
    el.querySelector(".stage").dataset.mode = m;
  }

  let mseFailures = 0;
  let mseSince = 0;
  function startMse() {
    player = new MsePlayer(video, liveUrl(camId), {
      onState: (m) => { setMode(m); mseSince = Date.now(); },
      onFail: (why) => {
        console.warn("live relay:", why);
        player = null;
        if (mseSince && Date.now() - mseSince > 30000) mseFailures = 0;   // it had been playing well
        mseSince = 0;
        if (++mseFailures <= MSE_RETRIES && !why.startsWith("codec not supported")) {
          setMode("connecting");
          retryTimer = d.timeout(() => { retryTimer = null; if (!player) startMse(); }, 1000 * 2 ** mseFailures);
        } else {
          startMjpeg();
        }
      },
    });
    player.start();
  }
  let retryTimer = null;

  function startMjpeg() {
    setMode("mjpeg");
    img.onerror = () => { img.onerror = null; startSnapshots(); };
    img.src = mjpegUrl(camId);
  }

  let snapTimer = null;
  function startSnapshots() {
    setMode("snapshot");
    const load = () => { img.src = `${snapshotUrl(camId)}?t=${Date.now()}`; };
    img.onerror = null;
    load();
    snapTimer = d.interval(load, 1000);
  }

  function stopAll() {
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
    if (player) { player.stop(); player = null; }
    if (snapTimer) { clearInterval(snapTimer); snapTimer = null; }
    img.onerror = null;
    img.removeAttribute("src");   // closes the MJPEG connection
  }

  d.interval(() => {
    const media = current === "mse" ? video : img;
    drawOverlay(canvas, media, { zones: opts.zones ? camera()?.zones : null, detections: opts.detections ? detections : null });
    if (player) {
      const lag = player.lag();
      stats.textContent = `${(player.stats.bytes / 1e6).toFixed(1)} MB${lag !== null ? ` · ${lag.toFixed(1)} s` : ""}`;
    } else stats.textContent = "";
  }, 100);
  d.interval(() => { if (current === "mjpeg" || current === "snapshot") { stopAll(); mseFailures = 0; startMse(); } }, RETRY_MSE_MS);
  d.add(live.subscribe([`detections:${camId}`]));
  d.add(live.on("detections", (ev) => {
    const det = normDetections(ev);
    if (det.camera === camId) detections = det;
  }));
  const redraw = coalesce(renderInfo);
  d.add(redraw.cancel);
  d.add(store.on("cameras", (id) => { if (id === null || id === camId) redraw(); }));
  d.add(store.on("alerts", redraw));
  d.add(store.on("sites", redraw));
  renderInfo();
  startMse();
  return () => { d.dispose(); stopAll(); };
}
