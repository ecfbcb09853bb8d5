// The WebSocket to the hub: reconnects by itself with capped exponential back-off and
// jitter, re-subscribes, and asks the app to resynchronise after every reconnect and
// after an overflow (events were dropped because we were too slow).

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30000;
const STABLE_MS = 10000;      // connected this long: the back-off starts again from the minimum
const PING_MS = 20000;        // application ping; the server also sends protocol pings
const SILENCE_MS = 60000;     // nothing heard for this long: the socket is dead, reconnect

export function backoffDelay(attempt, rand = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 16));
  return Math.round(base / 2 + rand() * base / 2);
}

export class Live {
  constructor(url = null) {
    this.url = url || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws`;
    this.ws = null;
    this.attempt = 0;
    this.topics = new Map();     // topic -> reference count
    this.handlers = new Map();   // base topic -> Set(fn)
    this.stateListeners = new Set();
    this.state = "idle";         // idle | connecting | online | offline
    this.retryAt = 0;
    this.timers = new Set();
    this.stopped = true;
    this.lastHeard = 0;
    this.connectedAt = 0;
    this.stats = { connects: 0, overflows: 0, messages: 0, errors: 0 };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this._connect();
    this._every(() => this._watchdog(), 5000);
  }

  stop() {
    this.stopped = true;
    for (const id of this.timers) { clearTimeout(id); clearInterval(id); }
    this.timers.clear();
    if (this.ws) { this.ws.onclose = null; this.ws.close(1000, "bye"); this.ws = null; }
    this._setState("idle");
  }

  /** fn(event) for every message whose topic (before ':') is base; returns the unsubscribe. */
  on(base, fn) {
    let set = this.handlers.get(base);
    if (!set) { set = new Set(); this.handlers.set(base, set); }
    set.add(fn);
    return () => { set.delete(fn); if (!set.size) this.handlers.delete(base); };
  }

  onState(fn) { this.stateListeners.add(fn); fn(this.state, this); return () => this.stateListeners.delete(fn); }

  /** Reference-counted subscription; returns the release function. */
  subscribe(topics) {
    const fresh = [];
    for (const tp of topics) {
      const n = this.topics.get(tp) || 0;
      this.topics.set(tp, n + 1);
      if (n === 0) fresh.push(tp);
    }
    if (fresh.length) this._send({ op: "subscribe", topics: fresh, batch: true });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const gone = [];
      for (const tp of topics) {
        const n = (this.topics.get(tp) || 1) - 1;
        if (n <= 0) { this.topics.delete(tp); gone.push(tp); } else this.topics.set(tp, n);
      }
      if (gone.length) this._send({ op: "unsubscribe", topics: gone });
    };
  }

  _send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  _every(fn, ms) { const id = setInterval(fn, ms); this.timers.add(id); }
  _later(fn, ms) {
    const id = setTimeout(() => { this.timers.delete(id); fn(); }, ms);
    this.timers.add(id);
  }

  _setState(s) {
    this.state = s;
    for (const fn of [...this.stateListeners]) fn(s, this);
  }

  _connect() {
    if (this.stopped) return;
    this._setState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.lastHeard = Date.now();
      this.connectedAt = Date.now();
    };
    ws.onmessage = (m) => {
      this.lastHeard = Date.now();
      // We subscribe with batch: a frame may carry several events, one JSON per line.
      for (const line of String(m.data).split("\n")) {
        if (!line) continue;
        let ev;
        try { ev = JSON.parse(line); } catch { continue; }
        this._event(ev);
      }
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      if (e.code === 4401) this._dispatch("ended", {});   // the session ended or the role changed
      this.ws = null;
      if (this.connectedAt && Date.now() - this.connectedAt > STABLE_MS) this.attempt = 0;
      this.connectedAt = 0;
      this._scheduleReconnect();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  _event(ev) {
    this.stats.messages++;
    if (ev.type === "hello") {
      this.stats.connects++;
      this._setState("online");
      if (this.topics.size) this._send({ op: "subscribe", topics: [...this.topics.keys()], batch: true });
      this._dispatch("resync", { reason: this.stats.connects > 1 ? "reconnect" : "connect" });
      return;
    }
    if (ev.type === "overflow" || ev.topic === "overflow") {
      this.stats.overflows++;
      this._dispatch("resync", { reason: "overflow", dropped: ev.dropped });
      return;
    }
    if (ev.type === "error") this.stats.errors++;
    const base = String(ev.topic || "").split(":", 1)[0];
    if (base) this._dispatch(base, ev);
  }

  _dispatch(base, ev) {
    const set = this.handlers.get(base);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(ev); } catch (e) { console.error("handler for", base, "failed", e); }
    }
  }

  _scheduleReconnect() {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt++);
    this.retryAt = Date.now() + delay;
    this._setState("offline");
    this._dispatch("disconnected", { attempt: this.attempt, delay });
    this._later(() => this._connect(), delay);
  }

  _watchdog() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    const quiet = Date.now() - this.lastHeard;
    if (quiet > SILENCE_MS) {
      // A half-open socket: close it and let onclose reconnect.
      try { this.ws.close(4000, "silent"); } catch { /* ignore */ }
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      this._scheduleReconnect();
    } else if (quiet > PING_MS) {
      this._send({ op: "ping" });
    }
  }
}
