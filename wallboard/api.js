// HTTP: JSON in and out, the CSRF token on every state change, errors as ApiError.

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
  /** The route does not exist on this server (the part is not installed yet). */
  get missing() { return this.status === 404 && this.code === "not_found" && this.routeMissing === true; }
}

const TIMEOUT_MS = 15000;

export class Api {
  constructor() {
    this.csrf = null;
    this.onUnauthorized = null;
  }

  async request(method, path, { body, params, signal, timeoutMs = TIMEOUT_MS } = {}) {
    let url = path;
    if (params) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
      const qs = q.toString();
      if (qs) url += (url.includes("?") ? "&" : "?") + qs;
    }
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && this.csrf) headers["X-CSRF-Token"] = this.csrf;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    const abort = () => ctl.abort();
    if (signal) signal.addEventListener("abort", abort, { once: true });
    let resp;
    try {
      resp = await fetch(url, {
        method, headers, credentials: "same-origin", signal: ctl.signal,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, ctl.signal.aborted ? "timeout" : "network", String(e.message || e));
    } finally {
      clearTimeout(timer);
      if (signal) signal.removeEventListener("abort", abort);
    }
    const type = resp.headers.get("Content-Type") || "";
    const data = type.includes("application/json") ? await resp.json().catch(() => null) : await resp.text();
    if (!resp.ok) {
      const err = data && data.error ? data.error : { code: "http_error", message: String(data || resp.statusText) };
      const e = new ApiError(resp.status, err.code, err.message, err.field);
      // aiohttp's own 404 (no route) carries no product error body beyond the reason.
      e.routeMissing = resp.status === 404 && (err.message === "Not Found" || !data);
      if (resp.status === 429) e.retryAfter = Number(resp.headers.get("Retry-After") || 0);
      if (resp.status === 401 && this.onUnauthorized && !path.endsWith("/login")) this.onUnauthorized(e);
      throw e;
    }
    return data;
  }

  /** A file from the server (e.g. an export): {blob, filename}; errors as for request(). */
  async download(method, path, { timeoutMs = 120000 } = {}) {
    const headers = {};
    if (method !== "GET" && this.csrf) headers["X-CSRF-Token"] = this.csrf;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    try {
      const resp = await fetch(path, { method, headers, credentials: "same-origin", signal: ctl.signal });
      if (!resp.ok) {
        const data = await resp.json().catch(() => null);
        const err = data && data.error ? data.error : { code: "http_error", message: resp.statusText };
        throw new ApiError(resp.status, err.code, err.message, err.field);
      }
      const cd = resp.headers.get("Content-Disposition") || "";
      const m = /filename="?([^";]+)"?/.exec(cd);
      return { blob: await resp.blob(), filename: m ? m[1] : null };
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw new ApiError(0, ctl.signal.aborted ? "timeout" : "network", String(e.message || e));
    } finally {
      clearTimeout(timer);
    }
  }

  get(path, params, opts = {}) { return this.request("GET", path, { ...opts, params }); }
  post(path, body = {}, opts = {}) { return this.request("POST", path, { ...opts, body }); }
}

export const api = new Api();
