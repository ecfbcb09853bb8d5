// The state-changing calls the wall makes, in one place so their bodies match the server's
// contracts (DESIGN.md, "HTTP"). The server checks the role and the CSRF token of each.
import { api } from "./api.js";

const enc = encodeURIComponent;

export function ackAlert(id, note) {
  return api.post(`/api/v1/alerts/${enc(id)}/ack`, note ? { note } : {});
}

export function closeAlert(id, disposition, note) {
  return api.post(`/api/v1/alerts/${enc(id)}/close`, { disposition, note });
}

/** Lock one gun (gun given) or the whole station; reason required; the alert it came from, if any. */
export function lock(site, gun, reason, alertId) {
  const path = gun ? `/api/v1/sites/${enc(site)}/guns/${enc(gun)}/lock` : `/api/v1/sites/${enc(site)}/lock`;
  const body = { reason };
  if (alertId !== undefined && alertId !== null) body.alert_id = alertId;
  return api.post(path, body);
}

/** Unlock (supervisor) with the rectification note. */
export function unlock(site, gun, note) {
  const path = gun ? `/api/v1/sites/${enc(site)}/guns/${enc(gun)}/unlock` : `/api/v1/sites/${enc(site)}/unlock`;
  return api.post(path, { note });
}

export function exportIncidentUrl(id) { return `/api/v1/incidents/${enc(id)}/export`; }
export function clipUrl(id) { return `/api/v1/incidents/${enc(id)}/clip.mp4`; }
export function snapshotUrl(cam) { return `/api/v1/cameras/${enc(cam)}/snapshot.jpg`; }
export function mjpegUrl(cam) { return `/api/v1/cameras/${enc(cam)}/mjpeg`; }
export function liveUrl(cam) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/cameras/${enc(cam)}/live`;
}
