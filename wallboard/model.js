// Normalisers: the one place that knows the shapes the server sends (REST and WebSocket),
// so each view works on plain, predictable objects.

export const SEVERITY_RANK = { critical: 3, warning: 2, info: 1 };
export const STATE_RANK = { open: 4, acknowledged: 3, resolved: 2, closed: 1 };
export const ACTIVE_STATES = ["open", "acknowledged"];
export const ROLE_RANK = { viewer: 0, operator: 1, supervisor: 2, admin: 3 };

export function atLeast(me, role) {
  return Boolean(me) && (ROLE_RANK[me.role] ?? -1) >= ROLE_RANK[role];
}

function list(data, key) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  return [];
}

export function normSite(s) {
  const loc = s.location || (s.lon !== undefined ? [s.lon, s.lat] : null);
  return {
    id: s.id, kind: s.kind, name: s.name || s.id, district: s.district || "",
    location: Array.isArray(loc) && loc[0] !== null && loc[0] !== undefined ? [Number(loc[0]), Number(loc[1])] : null,
    capacity: s.capacity ?? s.storage_capacity ?? null,
    guns: list(s.guns, "guns").map((g) => (typeof g === "string" ? g : g.id || g.gun)),
    cameras: list(s.cameras, "cameras").map((c) => (typeof c === "string" ? c : c.id)),
    counts: {
      alerts_open: s.counts?.alerts_open ?? 0,
      alerts_critical: s.counts?.alerts_critical ?? 0,
      cameras_offline: s.counts?.cameras_offline ?? 0,
      guns_locked: s.counts?.guns_locked ?? 0,
    },
    state: s.state || "ok",
  };
}

export function normSites(data) { return list(data, "sites").map(normSite); }

/** The cameras a site lists (from the configuration), as cameras whose state is not known yet. */
export function camerasOfSites(data) {
  const out = [];
  for (const s of list(data, "sites")) {
    for (const c of list(s.cameras, "cameras")) {
      if (c && typeof c === "object") out.push(normCamera({ ...c, site: s.id }));
    }
  }
  return out;
}

export function normCamera(c) {
  return {
    id: c.id || c.camera, site: c.site || c.site_id, name: c.name || c.id || c.camera,
    state: c.state || "unknown", reason: c.reason || null, since: c.since || null,
    zones: c.zones || {}, rules: c.rules || [], counters: c.counters || {},
    snapshot: c.snapshot || null,
  };
}

export function normCameras(data) { return list(data, "cameras").map(normCamera); }

/** A camera event from the hub: either the camera itself or {camera: {...}}. */
export function cameraFromEvent(ev) {
  const c = ev.camera && typeof ev.camera === "object" ? ev.camera : ev;
  return c.id || typeof c.camera === "string" ? normCamera(c) : null;
}

/** Only the fields a camera event carries: a state change must not blank the name, zones or
 *  counters the camera list gave (normCamera fills what is missing with defaults). */
export function cameraPatch(ev) {
  const c = ev.camera && typeof ev.camera === "object" ? ev.camera : ev;
  const id = c.id || (typeof c.camera === "string" ? c.camera : null);
  if (!id) return null;
  const out = { id };
  if (c.site || c.site_id) out.site = c.site || c.site_id;
  for (const k of ["name", "state", "reason", "since", "zones", "rules", "counters", "snapshot"]) {
    if (c[k] !== undefined && c[k] !== null) out[k] = c[k];
  }
  return out;
}

export function normAlert(a) {
  return {
    id: a.id, rule: a.rule, severity: a.severity || "warning", state: a.state || "open",
    site: a.site || a.site_id, source: a.source || "", subject: a.subject || "",
    first_seen: a.first_seen || a.ts || null, last_seen: a.last_seen || a.first_seen || a.ts || null,
    count: a.count ?? 1, summary: a.summary || "", reason: a.reason || null,
    incident: a.incident ?? a.incident_id ?? a.id, level: a.level ?? a.escalation ?? 0,
    acked_by: a.acked_by || a.acknowledged_by || null, ack_note: a.ack_note || null,
    disposition: a.disposition || null, close_note: a.close_note || null, closed_by: a.closed_by || null,
    silenced: Boolean(a.silenced), rev: a.rev ?? 0,
  };
}

export function alertFromEvent(ev) {
  const a = ev.alert && typeof ev.alert === "object" ? ev.alert : ev;
  return a.id !== undefined && a.rule ? normAlert(a) : null;
}

export function alertOrder(a, b) {
  const act = (x) => (ACTIVE_STATES.includes(x.state) ? 1 : 0);
  return (act(b) - act(a))
    || ((SEVERITY_RANK[b.severity] || 0) - (SEVERITY_RANK[a.severity] || 0))
    || (Date.parse(b.last_seen || 0) - Date.parse(a.last_seen || 0))
    || (String(b.id) < String(a.id) ? -1 : 1);
}

/** A gun's lock state: desired (what the centre wants), reported (what the device says), the command's state. */
export function normGun(g) {
  const site = g.site || g.site_id;
  const gun = g.gun || g.gun_id || g.id;
  const reported = g.reported && typeof g.reported === "object" ? g.reported : null;
  const command = typeof g.command === "string" ? g.command : (g.command && typeof g.command === "object" ? g.command.state : null);
  return {
    key: `${site}/${gun}`, site, gun, locked: Boolean(g.locked),
    reportedLocked: reported ? Boolean(reported.locked) : null,
    version: g.version ?? null,
    reportedVersion: reported ? reported.version ?? null : null,
    inEffect: g.in_effect ?? null,
    commandState: command || null,
    by: g.by || g.actor || null,
    reason: g.reason || null,
    ref: g.ref ?? null,
    since: g.since || null,
    seq: g.seq ?? null,
    anomaly: g.anomaly || null,
  };
}

export function gunsFromEvent(ev) {
  if (Array.isArray(ev.guns)) return ev.guns.map((g) => normGun({ site: ev.site, ...g }));
  const g = ev.gun && typeof ev.gun === "object" ? ev.gun : ev;
  return g.site || g.site_id ? [normGun(g)] : [];
}

export function normGuns(data) { return list(data, "guns").map(normGun); }

/** Detections: boxes in normalised 0..1 coordinates, either [x1,y1,x2,y2] or {x1,...}/{x,y,w,h}. */
export function normDetections(ev) {
  const d = ev.detections && !Array.isArray(ev.detections) ? ev.detections : ev;
  const raw = d.objects || d.boxes || d.detections || [];
  const boxes = [];
  for (const b of raw) {
    let x1, y1, x2, y2;
    const xy = Array.isArray(b) ? b : (b.xyxy || b.box || null);
    if (Array.isArray(xy)) [x1, y1, x2, y2] = xy;
    else if (b.x1 !== undefined) ({ x1, y1, x2, y2 } = b);
    else if (b.w !== undefined) { x1 = b.x; y1 = b.y; x2 = b.x + b.w; y2 = b.y + b.h; }
    if (![x1, y1, x2, y2].every(Number.isFinite)) continue;
    boxes.push({ x1, y1, x2, y2, cls: b.cls ?? b.class ?? b.label ?? "", conf: b.conf ?? b.confidence ?? null,
      track: b.track ?? b.track_id ?? null });
  }
  return { camera: d.camera || String(ev.topic || "").split(":")[1], ts: d.ts || null, boxes, at: Date.now() };
}
