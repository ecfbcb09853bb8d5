// Incident review (supervisors): the clip with a timeline of findings, the annotated
// snapshot, the scale trace as a chart, the scans, the actions and the audit trail, the
// close form with disposition, and export.
import { h, replace, Disposer, coalesce } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { fmtShort, fmtTime, toDate } from "../fmt.js";
import { api } from "../api.js";
import { atLeast, normAlert, alertOrder } from "../model.js";
import { clipUrl, closeAlert, exportIncidentUrl } from "../actions.js";
import { lineChart } from "../chart.js";
import { toast } from "../dialog.js";

const DISPOSITIONS = ["confirmed_violation", "false_alarm", "rectified"];

function arr(x) { return Array.isArray(x) ? x : []; }

/** The incident as the view uses it (GET /api/v1/incidents/{id}: alert, evidence, findings,
 * timeline, actions = audit rows, disposition). */
export function normIncident(id, data) {
  const alert = normAlert(data.alert || data);
  const ev = data.evidence && typeof data.evidence === "object" ? data.evidence : {};
  const ready = (x) => x && x.status === "ready";
  const clip = ev.clip || null;
  const snap = ev.snapshot || null;
  const findings = arr(data.findings).map((f) => ({ ts: f.ts, rule: f.rule, summary: f.summary || "", details: f.details || {} }));
  const readings = arr(ev.scale_trace?.data?.readings);
  const byScale = new Map();
  for (const r of readings) {
    const x = toDate(r.ts)?.getTime(), y = Number(r.gross_kg);
    if (!x || !Number.isFinite(y)) continue;
    const k = r.scale || "";
    if (!byScale.has(k)) byScale.set(k, []);
    byScale.get(k).push({ x, y });
  }
  const disp = data.disposition && typeof data.disposition === "object" ? data.disposition : null;
  const pending = Object.values(ev).some((x) => x && x.status === "pending");
  return {
    id, alert, findings, pending,
    trace: [...byScale.entries()].map(([name, points]) => ({ name, points })),
    clipSrc: ready(clip) ? clip.url || clipUrl(id) : null,
    clipState: clip ? clip.status : null,
    clipStart: toDate(clip?.ts)?.getTime() ?? null,
    clipEnd: toDate(clip?.ends_at)?.getTime() ?? null,
    snapshot: ready(snap) ? snap.url : null,
    snapState: snap ? snap.status : null,
    scans: arr(ev.scans?.data?.scans),
    timeline: arr(data.timeline),
    audit: arr(data.actions),
    disposition: disp?.disposition || alert.disposition || null,
    note: disp?.note || alert.close_note || null,
    closedBy: disp?.by || alert.closed_by || null,
  };
}

function table(cols, rows) {
  if (!rows.length) return h("div", { class: "empty small" }, t("common.none"));
  return h("table", { class: "grid" }, h("thead", null, h("tr", null, cols.map(([, label]) => h("th", null, label)))),
    h("tbody", null, rows.map((r) => h("tr", null, cols.map(([key, , fmt]) => h("td", null, fmt ? fmt(r[key], r) : r[key] ?? ""))))));
}

export function mount(el, { store, param, navigate }) {
  const d = new Disposer();
  if (!atLeast(store.me, "supervisor")) { el.append(h("div", { class: "empty" }, t("incident.supervisor"))); return () => {}; }
  if (!param) { pickList(el, store, navigate, d); return () => d.dispose(); }
  const box = h("div", { class: "incident" }, h("div", { class: "empty" }, t("common.loading")));
  el.append(box);
  const ctl = new AbortController();
  d.add(() => ctl.abort());
  let video = null;
  let lastPending = false;

  async function load() {
    try {
      const data = await api.get(`/api/v1/incidents/${encodeURIComponent(param)}`, null, { signal: ctl.signal });
      const inc = normIncident(param, data.incident || data);
      lastPending = inc.pending;
      render(inc);
    } catch (e) {
      if (ctl.signal.aborted) return;
      replace(box, h("div", { class: "empty" }, e.routeMissing
        ? t("common.unavailable", { what: "GET /api/v1/incidents/{id}" }) : t("common.error", { msg: e.message })));
    }
  }

  function timeline(inc) {
    // Markers at the findings' times within the clip's window [start, end]; the video's own
    // time maps onto the same window proportionally.
    const bar = h("div", { class: "timeline" });
    const head = h("div", { class: "playhead" });
    bar.append(head);
    const first = inc.findings.length ? toDate(inc.findings[0].ts)?.getTime() : null;
    const start = inc.clipStart ?? (first ? first - 10000 : null);
    if (start === null) return bar;
    const end = inc.clipEnd ?? start + 20000;
    const span = Math.max(1, end - start);
    const dur = () => (video && Number.isFinite(video.duration) && video.duration > 0 ? video.duration : span / 1000);
    for (const f of inc.findings) {
      const ts = toDate(f.ts)?.getTime();
      if (!ts) continue;
      const frac = Math.min(1, Math.max(0, (ts - start) / span));
      bar.append(h("button", { class: "fmark", style: { left: `${(frac * 100).toFixed(2)}%` }, "data-ts": String(ts),
        title: `${fmtTime(f.ts)} ${tOr(`rule.${f.rule}`, f.rule || "")} ${f.summary}`,
        onclick: () => { if (video) { video.currentTime = Math.max(0, frac * dur() - 1); video.play().catch(() => {}); } } }));
    }
    d.interval(() => { if (video) head.style.left = `${Math.min(100, (video.currentTime / dur()) * 100)}%`; }, 200);
    return bar;
  }

  function closeForm(inc) {
    if (inc.alert.state === "closed") {
      return h("div", { class: "closed-note", "data-disposition": inc.disposition || "" },
        t("incident.closed", { d: tOr(`disp.${inc.disposition}`, inc.disposition || "") }), inc.closedBy ? ` · ${inc.closedBy}` : "",
        inc.note ? h("blockquote", null, inc.note) : null);
    }
    if (!["resolved", "acknowledged", "open"].includes(inc.alert.state)) return null;
    const err = h("div", { class: "form-error", role: "alert" });
    const note = h("textarea", { name: "note", rows: 3, maxlength: 2000, placeholder: t("incident.note") });
    const btn = h("button", { class: "btn primary", type: "submit" }, t("incident.close"));
    return h("form", { class: "close-form", onsubmit: async (e) => {
      e.preventDefault();
      const disp = e.target.querySelector("input[name=disposition]:checked")?.value;
      if (!disp) { replace(err, `${t("incident.disposition")}: ${t("common.required")}`); return; }
      if (!note.value.trim()) { replace(err, `${t("incident.note")}`); note.focus(); return; }
      btn.disabled = true;
      try {
        await closeAlert(inc.alert.id, disp, note.value.trim());
        toast(t("common.saved"));
        load();
      } catch (ex) {
        btn.disabled = false;
        replace(err, t("common.error", { msg: ex.message }));
      }
    } },
    h("h3", null, t("incident.close")),
    h("fieldset", null, h("legend", null, t("incident.disposition")),
      DISPOSITIONS.map((v) => h("label", { class: "radio" }, h("input", { type: "radio", name: "disposition", value: v }), tOr(`disp.${v}`, v)))),
    note, err, btn);
  }

  function render(inc) {
    const a = inc.alert;
    const site = store.sites.get(a.site);
    video = inc.clipSrc ? h("video", { class: "clip", controls: true, preload: "auto", src: inc.clipSrc, muted: true }) : null;
    if (video) video.muted = true;
    const marks = inc.findings.map((f) => ({ x: toDate(f.ts)?.getTime(), label: f.summary })).filter((m) => m.x);
    replace(box,
      h("div", { class: ["alert-head", `sev-${a.severity}`] },
        h("span", { class: "sev" }, tOr(`sev.${a.severity}`, a.severity)),
        h("h2", null, t("incident.title", { id: inc.id }), " · ", tOr(`rule.${a.rule}`, a.rule)),
        h("span", { class: ["state", a.state], "data-state": a.state }, tOr(`state.${a.state}`, a.state)),
        h("button", { class: "btn small", type: "button", "data-action": "export", onclick: (e) => exportIt(e.target, inc.id) },
          t("incident.export"))),
      h("p", { class: "summary" }, `${site ? site.name : a.site} · ${a.source} · ${fmtTime(a.first_seen)} — ${a.summary}`),
      h("div", { class: "incident-grid" },
        h("section", { class: "clip-box" }, h("h3", null, t("incident.clip")),
          video ? [video, h("h4", null, t("incident.findings")), timeline(inc)]
            : h("div", { class: "empty", "data-evidence": inc.clipState || "none" }, inc.clipState
              ? tOr(`evidence.${inc.clipState}`, inc.clipState) : t("incident.noclip"))),
        h("section", null, h("h3", null, t("incident.snapshot")),
          inc.snapshot ? h("img", { class: "snapshot", src: inc.snapshot, alt: t("incident.snapshot") })
            : h("div", { class: "empty small" }, inc.snapState ? tOr(`evidence.${inc.snapState}`, inc.snapState) : t("common.none")),
          h("h3", null, t("incident.trace")),
          inc.trace.length ? lineChart(inc.trace, { yLabel: "kg", xFormat: (x) => fmtShort(x).slice(-8), marks }) : h("div", { class: "empty small" }, t("common.none")))),
      h("div", { class: "incident-grid" },
        h("section", null, h("h3", null, t("incident.scans")), table([
          ["ts", t("col.time"), fmtShort], ["cylinder", t("col.cylinder")], ["step", t("col.step")], ["site", t("col.site")],
          ["validity", t("col.validity"), (v) => (v && typeof v === "object" ? v.status || v.reason || JSON.stringify(v) : v ?? "")]], inc.scans)),
        h("section", null, h("h3", null, t("incident.actions")), table([
          ["ts", t("col.time"), fmtShort], ["action", t("col.action"), (v) => tOr(`action.${v}`, v)], ["actor", t("col.who")],
          ["role", t("col.role"), (v) => (v ? tOr(`role.${v}`, v) : "")]], inc.timeline))),
      h("section", null, h("h3", null, t("incident.audit")), table([
        ["ts", t("col.time"), fmtTime], ["actor", t("col.who")], ["role", t("col.role")], ["action", t("col.action")],
        ["target", t("col.target")], ["reason", t("col.reason")]], inc.audit)),
      closeForm(inc));
  }

  // Evidence is gathered after the alert (the clip completes after its post-roll): look again.
  d.interval(() => { if (lastPending && !video?.currentTime) load(); }, 5000);
  load();
  return () => { d.dispose(); if (video) { video.pause(); video.removeAttribute("src"); video.load(); } };
}

/** POST the export (audited, CSRF), then hand the archive to the browser; the object URL is revoked. */
async function exportIt(btn, id) {
  btn.disabled = true;
  try {
    const { blob, filename } = await api.download("POST", exportIncidentUrl(id));
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: filename || `incident-${id}.zip`, class: "hidden" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    toast(t("common.saved"));
  } catch (e) {
    toast(t("common.error", { msg: e.message }), "error");
  } finally {
    btn.disabled = false;
  }
}

function pickList(el, store, navigate, d) {
  const input = h("input", { name: "incident", placeholder: t("incident.id") });
  const list = h("div", { class: "queue" });
  const render = () => replace(list, [...store.alerts.values()].sort(alertOrder).slice(0, 100).map((a) =>
    h("a", { class: ["alert-row", `sev-${a.severity}`, `st-${a.state}`], href: `#/incident/${encodeURIComponent(a.incident ?? a.id)}` },
      h("span", { class: "sev" }, tOr(`sev.${a.severity}`, a.severity)), h("span", { class: "rule" }, tOr(`rule.${a.rule}`, a.rule)),
      h("span", { class: "site" }, store.sites.get(a.site)?.name || a.site), h("span", { class: "time" }, fmtShort(a.last_seen)),
      h("span", { class: ["state", a.state] }, tOr(`state.${a.state}`, a.state)))));
  el.append(h("div", { class: "incident-pick" },
    h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); if (input.value.trim()) navigate(`#/incident/${encodeURIComponent(input.value.trim())}`); } },
      h("label", null, t("incident.id"), input), h("button", { class: "btn", type: "submit" }, t("incident.open.id"))), list));
  const redraw = coalesce(render);
  d.add(redraw.cancel);
  d.add(store.on("alerts", redraw));
  render();
}
