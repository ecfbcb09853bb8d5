// Drawing zones and detections over a picture: normalised 0..1 coordinates mapped onto
// the letter-boxed content area of an <img> or <video> (object-fit: contain).
import { tOr } from "./i18n.js";

const ZONE_COLOURS = { discharge_post: "#38bdf8", filling_area: "#f59e0b", storage: "#a78bfa" };
const CLASS_COLOURS = { person: "#22c55e", cylinder: "#f472b6" };
export const DETECTION_TTL_MS = 2000;

/** The rectangle the media occupies inside its element (object-fit: contain). */
export function contentRect(el) {
  const w = el.clientWidth, h = el.clientHeight;
  const mw = el.videoWidth || el.naturalWidth || 16, mh = el.videoHeight || el.naturalHeight || 9;
  const s = Math.min(w / mw, h / mh);
  const cw = mw * s, ch = mh * s;
  return { x: (w - cw) / 2, y: (h - ch) / 2, w: cw, h: ch };
}

export function drawOverlay(canvas, media, { zones = null, detections = null, now = Date.now() } = {}) {
  const dpr = window.devicePixelRatio || 1;
  const w = media.clientWidth, hgt = media.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, hgt);
  const r = contentRect(media);
  const X = (x) => r.x + x * r.w, Y = (y) => r.y + y * r.h;
  const small = r.w < 400;
  g.font = `${small ? 10 : 13}px "Noto Sans CJK SC", sans-serif`;
  g.lineWidth = small ? 1.2 : 2;
  if (zones) {
    for (const [name, pts] of Object.entries(zones)) {
      if (!Array.isArray(pts) || pts.length < 3) continue;
      const col = ZONE_COLOURS[name] || "#e5e7eb";
      g.beginPath();
      pts.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
      g.closePath();
      g.fillStyle = `${col}22`;
      g.strokeStyle = col;
      g.setLineDash([6, 4]);
      g.fill();
      g.stroke();
      g.setLineDash([]);
      g.fillStyle = col;
      g.fillText(tOr(`zone.${name}`, name), X(pts[0][0]) + 3, Y(pts[0][1]) + (small ? 11 : 15));
    }
  }
  if (detections && now - detections.at < DETECTION_TTL_MS) {
    for (const b of detections.boxes) {
      const col = CLASS_COLOURS[b.cls] || "#fde047";
      g.strokeStyle = col;
      g.strokeRect(X(b.x1), Y(b.y1), X(b.x2) - X(b.x1), Y(b.y2) - Y(b.y1));
      const label = [b.cls, b.track !== null ? `#${b.track}` : null, b.conf !== null ? Number(b.conf).toFixed(2) : null]
        .filter(Boolean).join(" ");
      if (label) {
        const tw = g.measureText(label).width + 6;
        g.fillStyle = col;
        g.fillRect(X(b.x1), Y(b.y1) - (small ? 12 : 17), tw, small ? 12 : 17);
        g.fillStyle = "#000";
        g.fillText(label, X(b.x1) + 3, Y(b.y1) - (small ? 3 : 4));
      }
    }
  }
}
