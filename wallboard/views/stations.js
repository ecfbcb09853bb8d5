// The stations panel: each station's guns, locked or not, who locked and why, pending
// commands; lock (operators) and unlock with the rectification note (supervisors).
import { h, replace, Disposer, coalesce } from "../dom.js";
import { t } from "../i18n.js";
import { ACTIVE_STATES, SEVERITY_RANK } from "../model.js";
import { gunTable, stationButtons } from "./locks.js";

export function mount(el, { store, missing }) {
  const d = new Disposer();
  const grid = h("div", { class: "stations" });
  el.append(grid);

  function render() {
    const stations = [...store.sites.values()].filter((s) => s.kind === "station")
      .sort((a, b) => a.district.localeCompare(b.district, "zh-CN") || a.name.localeCompare(b.name, "zh-CN"));
    if (!stations.length) { replace(grid, h("div", { class: "empty" }, t("stations.empty"))); return; }
    replace(grid, stations.map((s) => {
      const guns = store.gunsOf(s.id);
      const locked = guns.filter((g) => g.locked).length;
      let worst = 0;
      for (const a of store.alerts.values()) {
        if (a.site === s.id && ACTIVE_STATES.includes(a.state)) worst = Math.max(worst, SEVERITY_RANK[a.severity] || 0);
      }
      return h("section", { class: ["station", locked && "has-locked", worst === 3 && "has-critical", worst === 2 && "has-warning"],
        "data-site": s.id },
      h("header", null, h("h3", null, s.name), h("span", { class: "district" }, s.district),
        h("span", { class: "gcount" }, t("stations.guns", { n: Math.max(guns.length, s.guns.length), l: locked }))),
      stationButtons(store, s.id, null),
      gunTable(store, s.id) || h("div", { class: "empty" }, missing.has("/api/v1/guns")
        ? t("common.unavailable", { what: "GET /api/v1/guns" }) : t("common.none")));
    }));
  }

  const redraw = coalesce(render);
  d.add(redraw.cancel);
  for (const kind of ["guns", "sites", "alerts", "missing"]) d.add(store.on(kind, redraw));
  render();
  return () => d.dispose();
}
