// Talking to the hub: JSON over fetch with the session cookie, the CSRF header on
// unsafe methods, and the live stream over Server-Sent Events.
import { t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, detail, headers) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
    this.headers = headers;
  }
}

function cookie(name) {
  const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
  return m ? decodeURIComponent(m[1]) : "";
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export async function api(path, { method = "GET", body, form } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = cookie("hub_csrf");
  let payload;
  if (form) payload = form;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const r = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (r.status === 204) return null;
  const ct = r.headers.get("content-type") || "";
  const data = ct.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    if (r.status === 401 && !path.endsWith("/auth/login")) onUnauthorized();
    throw new ApiError(r.status, data && data.detail !== undefined ? data.detail : data, r.headers);
  }
  return data;
}

export async function login(username, password) {
  return api("/api/auth/login", { method: "POST", body: { username, password } });
}

export async function logout() {
  try { await api("/api/auth/logout", { method: "POST" }); } catch (e) { /* already out */ }
}

// The live stream. EventSource reconnects by itself and sends Last-Event-ID, so the
// server replays what was missed; `onState` reports live / reconnecting.
export function stream(onEvent, onState) {
  const es = new EventSource("/api/stream", { withCredentials: true });
  es.onopen = () => onState("live");
  es.onerror = () => onState(es.readyState === EventSource.CLOSED ? "offline" : "reconnecting");
  const handler = (ev) => {
    let data = null;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    onEvent(ev.type, data, ev.lastEventId);
  };
  for (const type of ["incident", "update", "transition", "escalated", "cleared", "summary", "message"]) {
    es.addEventListener(type, handler);
  }
  return es;
}

// --- small shared helpers -------------------------------------------------------

export const SEV_RANK = { info: 1, minor: 2, major: 3, critical: 4 };
const SEV_NAME = { 1: "info", 2: "minor", 3: "major", 4: "critical" };

export function sevName(s) {
  if (typeof s === "number") return SEV_NAME[s] || "info";
  if (typeof s === "string" && /^\d$/.test(s)) return SEV_NAME[+s] || "info";
  return (s || "info").toLowerCase();
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

export function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 30) return t("just_now");
  if (s < 3600) return `${Math.round(s / 60)} ${t("minutes")}${t("ago")}`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} ${t("hours")}${t("ago")}`;
  return new Date(iso).toLocaleString();
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { hour12: false });
}

// An evidence value for display: numbers rounded, ISO times in local time.
export function fmtValue(v) {
  if (typeof v === "number") return String(+v.toFixed(3));
  if (typeof v === "string" && /^\d{4}-\d\d-\d\dT\d\d:/.test(v)) return fmtTime(v);
  return String(v);
}

export function fmtDuration(sec) {
  if (sec === null || sec === undefined) return "–";
  if (sec < 120) return `${Math.round(sec)} ${t("seconds")}`;
  if (sec < 7200) return `${Math.round(sec / 60)} ${t("minutes")}`;
  return `${(sec / 3600).toFixed(1)} ${t("hours")}`;
}

// An incident list response may be a bare list or {items: [...]}.
export function items(resp) {
  if (Array.isArray(resp)) return resp;
  return resp.items || resp.incidents || resp.results || [];
}

// The alarm tone: WebAudio, no audio file. Browsers only allow sound after a user
// gesture, so `arm()` is called from the login click.
export class Siren {
  constructor() { this.ctx = null; this.timer = null; }
  arm() {
    if (!this.ctx) {
      const AC = window.AudioContext || window.webkitAudioContext;
      if (AC) this.ctx = new AC();
    }
    if (this.ctx && this.ctx.state === "suspended") this.ctx.resume();
  }
  beep() {
    if (!this.ctx) return;
    const now = this.ctx.currentTime;
    for (let i = 0; i < 3; i++) {
      const o = this.ctx.createOscillator();
      const g = this.ctx.createGain();
      o.type = "square";
      o.frequency.value = i % 2 ? 660 : 880;
      g.gain.setValueAtTime(0.0001, now + i * 0.25);
      g.gain.exponentialRampToValueAtTime(0.3, now + i * 0.25 + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.25 + 0.22);
      o.connect(g).connect(this.ctx.destination);
      o.start(now + i * 0.25);
      o.stop(now + i * 0.25 + 0.23);
    }
  }
  start() {
    if (this.timer) return;
    this.beep();
    this.timer = setInterval(() => this.beep(), 2500);
  }
  stop() { clearInterval(this.timer); this.timer = null; }
  get ringing() { return this.timer !== null; }
}
