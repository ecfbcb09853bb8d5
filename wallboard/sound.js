// The critical-alert sound, synthesised with WebAudio (no audio files). Browsers allow
// audio only after a user gesture: the login click (or any click) unlocks it.

const KEY = "monitor.muted";
let ctx = null;
let muted = false;
try { muted = localStorage.getItem(KEY) === "1"; } catch { /* ignore */ }
export const soundStats = { played: 0, lastAt: 0 };

export function unlockAudio() {
  if (ctx) { if (ctx.state === "suspended") ctx.resume().catch(() => {}); return; }
  const AC = window.AudioContext || window.webkitAudioContext;
  if (!AC) return;
  try { ctx = new AC(); } catch { ctx = null; }
}

export function isMuted() { return muted; }
export function setMuted(m) {
  muted = Boolean(m);
  try { localStorage.setItem(KEY, muted ? "1" : "0"); } catch { /* ignore */ }
}

/** Three rising two-tone pulses (about 1.2 s): unmistakable, not shrill. */
export function alarm() {
  soundStats.lastAt = Date.now();
  if (muted || !ctx) return false;
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
  const t0 = ctx.currentTime + 0.02;
  const master = ctx.createGain();
  master.gain.value = 0.25;
  master.connect(ctx.destination);
  for (let i = 0; i < 3; i++) {
    for (const [j, freq] of [[0, 740], [1, 988]].values()) {
      const at = t0 + i * 0.4 + j * 0.16;
      const osc = ctx.createOscillator();
      const g = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = freq;
      g.gain.setValueAtTime(0.0001, at);
      g.gain.exponentialRampToValueAtTime(1.0, at + 0.01);
      g.gain.exponentialRampToValueAtTime(0.0001, at + 0.14);
      osc.connect(g).connect(master);
      osc.start(at);
      osc.stop(at + 0.15);
      osc.onended = () => { osc.disconnect(); g.disconnect(); };
    }
  }
  setTimeout(() => master.disconnect(), 1600);
  soundStats.played++;
  return true;
}
