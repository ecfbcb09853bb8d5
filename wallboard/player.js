// The focused live view's player: fragmented MP4 over a WebSocket into Media Source
// Extensions; the caller falls back to MJPEG when this cannot work. Memory stays flat:
// the object URL is revoked once attached, the buffer is trimmed behind the play head,
// and the queue of pending fragments is bounded.

const MAX_QUEUE = 120;         // fragments waiting for the SourceBuffer
const KEEP_BEHIND_S = 10;      // buffered media kept behind the play head
const TRIM_EVERY_S = 20;
const MAX_LAG_S = 1.5;         // further behind the live edge than this: jump to it
const FIRST_DATA_MS = 8000;    // no codec/init in this time: give up (fallback)

export function mseSupported(mime) {
  return typeof MediaSource !== "undefined" && MediaSource.isTypeSupported(mime);
}

export function mimeFromInit(msg) {
  if (msg.mime) return msg.mime;
  const codec = msg.codec || msg.codecs;
  return codec ? `video/mp4; codecs="${codec}"` : null;
}

export class MsePlayer {
  constructor(video, url, { onState = () => {}, onFail = () => {} } = {}) {
    this.video = video;
    this.url = url;
    this.onState = onState;
    this.onFail = onFail;
    this.queue = [];
    this.ws = null;
    this.ms = null;
    this.sb = null;
    this.timers = [];
    this.stopped = false;
    this.gotData = false;
    this.stats = { bytes: 0, fragments: 0, dropped: 0, jumps: 0, mime: null };
  }

  start() {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.timers.push(setTimeout(() => { if (!this.gotData) this.fail("no data from the live relay"); }, FIRST_DATA_MS));
    ws.onmessage = (m) => {
      if (typeof m.data === "string") { this.control(m.data); return; }
      this.stats.bytes += m.data.byteLength;
      this.stats.fragments++;
      if (!this.sb && !this.ms) { this.fail("media before the codec message"); return; }
      if (this.queue.length >= MAX_QUEUE) {
        // Too far behind to catch up: start again (a fresh connection begins at a keyframe).
        this.stats.dropped += this.queue.length;
        this.fail("too far behind the live stream");
        return;
      }
      this.queue.push(m.data);
      this.pump();
    };
    ws.onclose = (e) => { if (!this.stopped) this.fail(`live relay closed (${e.code})`); };
    ws.onerror = () => {};
    this.timers.push(setInterval(() => this.tick(), 1000));
  }

  control(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (msg.type === "error") { this.fail(msg.message || "live relay error"); return; }
    const mime = mimeFromInit(msg);
    if (!mime) return;
    if (!mseSupported(mime)) { this.fail(`codec not supported: ${mime}`); return; }
    if (this.ms) {
      // The stream's parameters changed: a new codec message, then a new init segment.
      if (mime !== this.stats.mime) {
        this.stats.mime = mime;
        // In order: the segments already queued are of the old codec.
        this.queue.push({ changeType: mime });
        this.pump();
      }
      return;
    }
    this.stats.mime = mime;
    this.gotData = true;
    const ms = new MediaSource();
    this.ms = ms;
    const objectUrl = URL.createObjectURL(ms);
    ms.addEventListener("sourceopen", () => {
      URL.revokeObjectURL(objectUrl);
      if (this.stopped) return;
      try {
        this.sb = ms.addSourceBuffer(mime);
      } catch (e) {
        this.fail(String(e));
        return;
      }
      this.sb.addEventListener("updateend", () => this.pump());
      this.sb.addEventListener("error", () => this.fail("SourceBuffer error"));
      this.pump();
    }, { once: true });
    this.video.src = objectUrl;
    this.video.muted = true;
    this.video.play().catch(() => {});
    this.onState("mse");
  }

  pump() {
    const sb = this.sb;
    if (!sb || sb.updating || !this.queue.length || this.stopped) return;
    try {
      const next = this.queue.shift();
      if (next.changeType) {
        if (typeof sb.changeType !== "function") { this.fail("codec changed"); return; }
        sb.changeType(next.changeType);
        this.pump();
        return;
      }
      sb.appendBuffer(next);
    } catch (e) {
      if (e.name === "QuotaExceededError") { this.trim(true); return; }
      this.fail(String(e));
    }
  }

  trim(force = false) {
    const sb = this.sb, v = this.video;
    if (!sb || sb.updating || !sb.buffered.length) return;
    const start = sb.buffered.start(0);
    if (force || v.currentTime - start > TRIM_EVERY_S) {
      const end = Math.max(start, v.currentTime - KEEP_BEHIND_S);
      if (end > start) { try { sb.remove(start, end); } catch { /* next time */ } }
    }
  }

  tick() {
    const sb = this.sb, v = this.video;
    if (!sb || !sb.buffered.length) return;
    const end = sb.buffered.end(sb.buffered.length - 1);
    if (end - v.currentTime > MAX_LAG_S || v.currentTime < sb.buffered.start(0)) {
      v.currentTime = Math.max(sb.buffered.start(sb.buffered.length - 1), end - 0.3);
      this.stats.jumps++;
    }
    if (v.paused) v.play().catch(() => {});
    this.trim();
  }

  lag() {
    const sb = this.sb;
    if (!sb || !sb.buffered.length) return null;
    return sb.buffered.end(sb.buffered.length - 1) - this.video.currentTime;
  }

  fail(why) {
    if (this.stopped) return;
    this.stop();
    this.onFail(why);
  }

  stop() {
    if (this.stopped) return;
    this.stopped = true;
    for (const id of this.timers) { clearTimeout(id); clearInterval(id); }
    this.timers = [];
    this.queue.length = 0;
    if (this.ws) { this.ws.onclose = null; this.ws.onmessage = null; try { this.ws.close(1000); } catch { /* ignore */ } }
    if (this.ms && this.ms.readyState === "open") { try { this.ms.endOfStream(); } catch { /* ignore */ } }
    this.sb = null;
    this.ms = null;
    this.video.removeAttribute("src");
    this.video.load();
  }
}
