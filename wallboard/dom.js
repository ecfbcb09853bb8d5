// A tiny element builder. Text always goes in as text nodes (never innerHTML), so data
// from the server can never inject markup.

export function h(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_TAGS.has(tag) ? SVG_NS : HTML_NS, tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.setAttribute("class", Array.isArray(v) ? v.filter(Boolean).join(" ") : v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "value" && "value" in el) el.value = v;
      else if (k === "checked" || k === "disabled" || k === "selected") el[k] = Boolean(v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

/** A <select> from [[value, label], ...]. */
export function select(options, value, onchange, attrs = {}) {
  return h("select", { ...attrs, onchange: (e) => onchange(e.target.value) },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

const HTML_NS = "http://www.w3.org/1999/xhtml";
const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_TAGS = new Set(["svg", "g", "path", "circle", "rect", "line", "polyline", "polygon", "text", "title",
  "defs", "pattern", "clipPath", "tspan"]);

/** Listeners on long-lived targets (window, document, the store), removed together on unmount. */
export class Disposer {
  constructor() { this.fns = []; }
  add(fn) { this.fns.push(fn); return fn; }
  listen(target, type, fn, opts) {
    target.addEventListener(type, fn, opts);
    this.fns.push(() => target.removeEventListener(type, fn, opts));
  }
  interval(fn, ms) { const id = setInterval(fn, ms); this.fns.push(() => clearInterval(id)); return id; }
  timeout(fn, ms) { const id = setTimeout(fn, ms); this.fns.push(() => clearTimeout(id)); return id; }
  dispose() { const fns = this.fns.splice(0); for (const fn of fns.reverse()) { try { fn(); } catch (e) { console.error(e); } } }
}

/** Coalesce bursts of events into one call on the next frame (or within 250 ms when hidden). */
export function coalesce(fn) {
  let pending = false;
  let cancelled = false;
  const run = () => { pending = false; if (!cancelled) fn(); };
  const wrapped = () => {
    if (pending || cancelled) return;
    pending = true;
    if (document.hidden) setTimeout(run, 250); else requestAnimationFrame(run);
  };
  wrapped.cancel = () => { cancelled = true; };
  return wrapped;
}
