// Modal dialogs: the two-step confirm for locks and unlocks (reason required), and a
// generic form. Only one dialog at a time; Escape cancels.
import { h, replace } from "./dom.js";
import { t } from "./i18n.js";

let current = null;

export function closeDialog() {
  if (current) { current.remove(); current = null; }
}

function shell(title, body, danger = false) {
  closeDialog();
  const card = h("div", { class: ["dialog", danger && "danger"], role: "dialog", "aria-modal": "true" },
    h("h2", null, title), body);
  const back = h("div", { class: "backdrop", onkeydown: (e) => { if (e.key === "Escape") closeDialog(); } }, card);
  document.body.append(back);
  current = back;
  return card;
}

/**
 * Two steps: (1) the reason or note, (2) "confirm again" naming the target.
 * submit(text) performs the call and may throw an ApiError (shown in the dialog).
 */
export function confirmTwoStep({ title, target, label, placeholder, confirmText, step2Key, submit, onDone }) {
  const errBox = h("div", { class: "form-error", role: "alert" });
  const area = h("textarea", { name: "reason", rows: 3, placeholder, maxlength: 500, required: true });
  const next = h("button", { class: "btn primary", type: "submit", "data-step": "1" }, t("common.next"));
  const form = h("form", { class: "two-step", novalidate: true, onsubmit: (e) => { e.preventDefault(); step2(); } },
    h("div", { class: "target" }, target),
    h("label", null, label, area), errBox,
    h("div", { class: "buttons" }, h("button", { class: "btn", type: "button", onclick: closeDialog }, t("common.cancel")), next));
  const card = shell(title, form, true);
  area.focus();

  function step2() {
    const text = area.value.trim();
    if (!text) { replace(errBox, `${label}: ${t("common.required")}`); area.focus(); return; }
    replace(errBox);
    const go = h("button", { class: "btn danger", type: "button", "data-step": "2", onclick: doit }, confirmText);
    const body = h("div", { class: "two-step" },
      h("p", { class: "confirm-q" }, t(step2Key, { target })),
      h("blockquote", null, text), errBox,
      h("div", { class: "buttons" },
        h("button", { class: "btn", type: "button", onclick: closeDialog }, t("common.cancel")), go));
    replace(card, h("h2", null, title), body);
    go.focus();

    async function doit() {
      go.disabled = true;
      try {
        const res = await submit(text);
        closeDialog();
        if (onDone) onDone(res);
      } catch (e) {
        go.disabled = false;
        replace(errBox, t("common.error", { msg: e.message || String(e) }));
      }
    }
  }
}

export function toast(text, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) { box = h("div", { id: "toasts" }); document.body.append(box); }
  const el = h("div", { class: ["toast", kind] }, text);
  box.append(el);
  while (box.children.length > 4) box.firstChild.remove();
  setTimeout(() => el.remove(), 5000);
}
