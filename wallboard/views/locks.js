// Lock controls shared by the alert queue and the stations panel: the gun table with the
// true state from the device, and the buttons that open the two-step confirm.
import { h } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { fmtShort } from "../fmt.js";
import { atLeast } from "../model.js";
import { confirmTwoStep, toast } from "../dialog.js";
import { lock, unlock } from "../actions.js";

export function siteName(store, id) { return store.sites.get(id)?.name || id; }

export function openLock(store, site, gun, alertId) {
  const target = gun ? t("lock.target.gun", { site: siteName(store, site), gun }) : t("lock.target.station", { site: siteName(store, site) });
  confirmTwoStep({
    title: t("lock.title"), target, label: t("lock.reason"), placeholder: t("lock.reason.ph"),
    confirmText: t("lock.do"), step2Key: "lock.step2",
    submit: (reason) => lock(site, gun, reason, alertId),
    onDone: (res) => { store.gunEvent({ site, ...(res || {}) }); toast(t("common.saved")); },
  });
}

export function openUnlock(store, site, gun) {
  const target = gun ? t("lock.target.gun", { site: siteName(store, site), gun }) : t("lock.target.station", { site: siteName(store, site) });
  confirmTwoStep({
    title: t("lock.unlock.title"), target, label: t("lock.note"), placeholder: t("lock.note.ph"),
    confirmText: t("lock.do.unlock"), step2Key: "lock.step2.unlock",
    submit: (note) => unlock(site, gun, note),
    onDone: (res) => { store.gunEvent({ site, ...(res || {}) }); toast(t("common.saved")); },
  });
}

/** The state word of a gun: what the device last confirmed, and the pending command. */
export function gunBadges(g) {
  const out = [h("span", { class: ["lockstate", g.locked ? "locked" : "unlocked"], "data-locked": String(g.locked) },
    g.locked ? t("lock.locked") : t("lock.unlocked"))];
  if (g.commandState) {
    out.push(h("span", { class: ["cmd", g.commandState], "data-cmd": g.commandState }, tOr(`cmd.${g.commandState}`, g.commandState)));
  }
  if (g.reportedLocked !== null && g.reportedLocked !== undefined && g.reportedLocked !== g.locked) {
    out.push(h("span", { class: "cmd mismatch" }, `${t("lock.reported")}: ${g.reportedLocked ? t("lock.locked") : t("lock.unlocked")}`));
  }
  return out;
}

export function gunTable(store, site, { alertId } = {}) {
  const me = store.me;
  const configured = store.sites.get(site)?.guns || [];
  const known = new Map(store.gunsOf(site).map((g) => [g.gun, g]));
  const ids = [...new Set([...configured, ...known.keys()])].sort(new Intl.Collator("en", { numeric: true }).compare);
  if (!ids.length) return null;
  const rows = ids.map((gun) => {
    const g = known.get(gun) || { site, gun, locked: false, commandState: null, reportedLocked: null };
    return h("tr", { "data-gun": gun, class: g.locked ? "locked" : "" },
      h("td", { class: "gun" }, gun),
      h("td", null, gunBadges(g)),
      h("td", { class: "who" }, g.locked && (g.by || g.reason) ? [g.by || "", g.since ? ` · ${fmtShort(g.since)}` : "",
        g.reason ? h("div", { class: "why" }, g.reason) : null] : ""),
      h("td", { class: "act" },
        !g.locked && atLeast(me, "operator") ? h("button", { class: "btn small danger", "data-action": "lock-gun",
          onclick: () => openLock(store, site, gun, alertId) }, t("lock.gun")) : null,
        g.locked && atLeast(me, "supervisor") ? h("button", { class: "btn small", "data-action": "unlock-gun",
          onclick: () => openUnlock(store, site, gun) }, t("lock.ungun")) : null));
  });
  return h("table", { class: "guns" }, h("tbody", null, rows));
}

export function stationButtons(store, site, alertId) {
  const me = store.me;
  const guns = store.gunsOf(site);
  const anyLocked = guns.some((g) => g.locked);
  const allLocked = guns.length > 0 && guns.every((g) => g.locked);
  return h("div", { class: "station-actions" },
    atLeast(me, "operator") && !allLocked ? h("button", { class: "btn danger", "data-action": "lock-station",
      onclick: () => openLock(store, site, null, alertId) }, t("lock.station")) : null,
    atLeast(me, "supervisor") && anyLocked ? h("button", { class: "btn", "data-action": "unlock-station",
      onclick: () => openUnlock(store, site, null) }, t("lock.unstation")) : null);
}
