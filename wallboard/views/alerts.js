// The alert queue: newest and most severe first, live; filters; acknowledge; lock a gun
// or the whole station from an alert, with the lock's true state from the device.
import { h, replace, select, Disposer, coalesce } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { fmtAgo, fmtDuration, fmtShort, fmtTime } from "../fmt.js";
import { api } from "../api.js";
import { atLeast, ACTIVE_STATES } from "../model.js";
import { ackAlert } from "../actions.js";
import { toast } from "../dialog.js";
import { gunTable, siteName, stationButtons, openLock } from "./locks.js";

const RULES = ["antistatic_skipped", "antistatic_during_fill", "storage_over_capacity", "stock_mismatch",
  "fill_without_scan", "overfill", "invalid_cylinder", "missing_postfill_check", "device_silent", "lock_unconfirmed",
  "camera_offline", "detector_behind"];
const MAX_ROWS = 300;

export function mount(el, { store, missing, query, navigate }) {
  const d = new Disposer();
  const f = { state: query.state || "active", site: query.site || "", rule: query.rule || "" };
  let selected = query.id || null;
  const bar = h("div", { class: "toolbar" });
  const list = h("div", { class: "queue", role: "list" });
  const detail = h("section", { class: "detail" });
  el.append(h("div", { class: "alerts-view" }, h("div", { class: "left" }, bar, list), detail));

  function renderBar() {
    const sites = [...store.sites.values()].sort((a, b) => a.name.localeCompare(b.name, "zh-CN"));
    replace(bar,
      h("label", null, t("alerts.filter.state"), select([["active", t("alerts.filter.active")], ["", t("common.all")],
        ...["open", "acknowledged", "resolved", "closed"].map((s) => [s, t(`state.${s}`)])], f.state,
      (v) => { f.state = v; renderList(); }, { name: "state" })),
      h("label", null, t("alerts.filter.site"), select([["", t("common.all")], ...sites.map((s) => [s.id, s.name])], f.site,
        (v) => { f.site = v; renderList(); }, { name: "site" })),
      h("label", null, t("alerts.filter.rule"), select([["", t("common.all")], ...RULES.map((r) => [r, tOr(`rule.${r}`, r)])], f.rule,
        (v) => { f.rule = v; renderList(); }, { name: "rule" })),
      h("span", { class: "load", id: "alert-load" }),
      h("span", { class: "counts", id: "alert-count" }));
    renderLoad();
  }

  // Operators' load (GET /api/v1/alerts/stats): this hour's alarms per operator per 10 minutes
  // against the guideline, and the median time to acknowledge.
  let load = null;
  async function fetchLoad() {
    try {
      const since = new Date(Date.now() - 3600 * 1000).toISOString();
      load = await api.get("/api/v1/alerts/stats", { since });
    } catch { load = null; }
    renderLoad();
  }
  function renderLoad() {
    const el = document.getElementById("alert-load");
    if (!el) return;
    if (!load || !Array.isArray(load.hours)) { replace(el); return; }
    const hours = load.hours;
    const last = {
      raised: hours.reduce((n, x) => n + (x.raised || 0), 0),
      alarms_per_10min_per_operator: Math.max(0, ...hours.map((x) => x.alarms_per_10min_per_operator || 0)),
      over_guideline: hours.some((x) => x.over_guideline),
    };
    const guide = load.guideline?.alarms_per_10min_per_operator;
    const p50s = (load.operators || []).flatMap((o) => (o.hours || []).map((x) => x.ack_s?.p50)).filter(Number.isFinite);
    const ack = p50s.length ? fmtDuration(p50s.sort((a, b) => a - b)[Math.floor(p50s.length / 2)]) : "—";
    replace(el, t("alerts.stats", { raised: last.raised ?? 0, rate: Number(last.alarms_per_10min_per_operator || 0).toFixed(1),
      guide: guide ?? "—", ack }));
    el.classList.toggle("over", Boolean(last.over_guideline));
  }

  function row(a) {
    return h("div", { class: ["alert-row", `sev-${a.severity}`, `st-${a.state}`, a.id === selected && "selected"],
      role: "listitem", tabindex: 0, "data-id": String(a.id), "data-state": a.state, "data-rule": a.rule,
      onclick: () => { selected = String(a.id); renderList(); renderDetail(); } },
    h("span", { class: "sev" }, tOr(`sev.${a.severity}`, a.severity)),
    h("span", { class: "rule" }, tOr(`rule.${a.rule}`, a.rule), a.reason ? ` · ${tOr(`reason.${a.reason}`, a.reason)}` : ""),
    h("span", { class: "site" }, siteName(store, a.site)),
    h("span", { class: "src" }, a.source),
    h("span", { class: "time", title: fmtTime(a.last_seen) }, fmtShort(a.last_seen)),
    h("span", { class: "cnt" }, a.count > 1 ? t("alerts.times", { n: a.count }) : ""),
    h("span", { class: ["state", a.state] }, tOr(`state.${a.state}`, a.state)));
  }

  function renderList() {
    const items = store.sortedAlerts(f);
    const count = document.getElementById("alert-count");
    if (count) count.textContent = t("alerts.count", { n: items.length });
    if (!items.length) {
      replace(list, h("div", { class: "empty" }, missing.has("/api/v1/alerts")
        ? t("common.unavailable", { what: "GET /api/v1/alerts" }) : t("alerts.empty")));
      return;
    }
    replace(list, items.slice(0, MAX_ROWS).map(row));
  }

  function renderDetail() {
    const a = selected ? store.alerts.get(String(selected)) : null;
    if (!a) { replace(detail, h("div", { class: "empty" }, t("alerts.select"))); return; }
    const me = store.me;
    const site = store.sites.get(a.site);
    const isStation = site ? site.kind === "station" : store.gunsOf(a.site).length > 0;
    const gunOfAlert = (site?.guns || []).includes(a.source) ? a.source : (site?.guns || []).includes(a.subject) ? a.subject : null;
    const note = h("input", { name: "ack-note", placeholder: t("alerts.ack.note"), maxlength: 500 });
    const ackBtn = h("button", { class: "btn primary", "data-action": "ack", onclick: async () => {
      ackBtn.disabled = true;
      try {
        const res = await ackAlert(a.id, note.value.trim());
        store.alertEvent(res && res.alert ? res : { ...a, state: "acknowledged" });
        toast(t("alerts.acked"));
      } catch (e) {
        ackBtn.disabled = false;
        toast(t("common.error", { msg: e.message }), "error");
      }
    } }, t("alerts.ack"));
    replace(detail,
      h("div", { class: ["alert-head", `sev-${a.severity}`] },
        h("span", { class: "sev" }, tOr(`sev.${a.severity}`, a.severity)),
        h("h2", null, tOr(`rule.${a.rule}`, a.rule), a.reason ? ` · ${tOr(`reason.${a.reason}`, a.reason)}` : ""),
        h("span", { class: ["state", a.state], "data-state": a.state }, tOr(`state.${a.state}`, a.state))),
      h("p", { class: "summary" }, a.summary),
      h("dl", { class: "facts" },
        h("dt", null, t("alerts.site")), h("dd", null, site ? `${site.name} · ${tOr(`kind.${site.kind}`, site.kind)} · ${site.district}` : a.site),
        h("dt", null, t("alerts.source")), h("dd", null, a.source),
        h("dt", null, t("alerts.subject")), h("dd", null, a.subject),
        h("dt", null, t("alerts.first")), h("dd", null, fmtTime(a.first_seen)),
        h("dt", null, t("alerts.last")), h("dd", null, `${fmtTime(a.last_seen)} (${fmtAgo(a.last_seen)}) · ${t("alerts.times", { n: a.count })}`),
        a.acked_by ? [h("dt", null, t("alerts.acked")), h("dd", null, a.acked_by)] : null),
      h("div", { class: "actions" },
        a.state === "open" && atLeast(me, "operator") ? [note, ackBtn] : null,
        isStation && gunOfAlert && atLeast(me, "operator") && ACTIVE_STATES.includes(a.state)
          ? h("button", { class: "btn danger", "data-action": "lock-alert-gun", onclick: () => openLock(store, a.site, gunOfAlert, a.id) },
            t("alerts.lockgun", { gun: gunOfAlert })) : null,
        atLeast(me, "supervisor") ? h("button", { class: "btn", "data-action": "incident",
          onclick: () => navigate(`#/incident/${encodeURIComponent(a.incident ?? a.id)}`) }, t("alerts.incident")) : null),
      isStation ? h("div", { class: "lockbox" }, h("h3", null, t("alerts.lockstate")), stationButtons(store, a.site, a.id),
        gunTable(store, a.site, { alertId: a.id })) : null);
  }

  // Bursts of events (a resync, a storm of alerts) render once per frame.
  const redraw = coalesce(() => { renderList(); renderDetail(); });
  const redrawDetail = coalesce(renderDetail);
  d.add(redraw.cancel);
  d.add(redrawDetail.cancel);
  d.add(store.on("alerts", redraw));
  d.add(store.on("guns", redrawDetail));
  d.add(store.on("sites", () => { renderBar(); renderList(); renderDetail(); }));
  d.add(store.on("missing", renderList));
  d.interval(fetchLoad, 60000);
  fetchLoad();
  renderBar();
  renderList();
  renderDetail();
  return () => d.dispose();
}
