// The phone view as an installable PWA: its service worker (/m/sw.js), Web Push
// (permission asked on a tap, the subscription stored for this login), and the
// offline notice. The server forgets the subscription when this session ends.
import { api } from "./api.js";
import { getLang } from "./i18n.js";

const TEXT = {
  enable: ["开启推送通知", "Turn on notifications"],
  on: ["推送已开启", "Notifications on"],
  denied: ["通知被拒绝（请在浏览器设置中允许）", "Notifications blocked (allow them in the browser's settings)"],
  failed: ["推送开启失败", "Could not turn on notifications"],
  offline: ["离线：数据未更新", "Offline: data is not up to date"],
};
const say = (k) => TEXT[k][getLang() === "en" ? 1 : 0];

function keyBytes(b64) {
  const s = atob(b64.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

export function registerWorker() {
  if (!("serviceWorker" in navigator)) return Promise.resolve(null);
  return navigator.serviceWorker.register("/m/sw.js", { scope: "/m" }).catch(() => null);
}

// A tapped notification of an open /m names its incident.
export function onOpenIncident(open) {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.addEventListener("message", (e) => {
    if (e.data && e.data.type === "open-incident" && e.data.id) open(Number(e.data.id));
  });
}

async function subscribe() {
  const reg = await navigator.serviceWorker.ready;
  let sub = await reg.pushManager.getSubscription();
  if (!sub) {
    const { public_key: key } = await api("/api/push/key");
    sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
  }
  await api("/api/push/subscriptions", { method: "POST", body: sub.toJSON() });
}

// After login: subscribe at once where permission was given before; else a button,
// since browsers ask for permission only on a user's tap.
export async function setupPush(button) {
  if (!button) return;
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    button.hidden = true;
    return;
  }
  const show = (k) => { button.textContent = say(k); button.dataset.push = k; };
  if (Notification.permission === "granted") {
    try { await subscribe(); show("on"); button.hidden = true; return; } catch (e) { show("failed"); }
  } else if (Notification.permission === "denied") {
    show("denied"); button.hidden = false; return;
  } else show("enable");
  button.hidden = false;
  button.onclick = async () => {
    if ((await Notification.requestPermission()) !== "granted") { show("denied"); return; }
    try { await subscribe(); show("on"); button.hidden = true; } catch (e) { show("failed"); }
  };
}

// Offline is what the API says, not only navigator.onLine (which stays true on a
// network that goes nowhere): the service worker never answers /api/ from a cache.
export function watchOnline(banner) {
  if (!banner) return;
  const show = (off) => { banner.hidden = !off; banner.textContent = say("offline"); };
  const check = async () => {
    if (!navigator.onLine) { show(true); return; }
    try { await fetch("/api/auth/me", { cache: "no-store", credentials: "same-origin" }); show(false); }
    catch (e) { show(true); }
  };
  window.addEventListener("online", check);
  window.addEventListener("offline", check);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) check(); });
  setInterval(check, 30000);
  check();
}
