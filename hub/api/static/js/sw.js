// The phone view's service worker (scope /m): an offline shell of the page's own
// files, and Web Push shown as system notifications that open the incident.
// API data is never cached: offline, the page says so instead of showing old data.
const CACHE = "m-shell-v2";
const SHELL = [
  "/m", "/m/manifest.webmanifest", "/static/css/mobile.css",
  "/static/js/worker.js", "/static/js/api.js", "/static/js/i18n.js", "/static/js/meta.js",
  "/static/js/clip.js", "/static/js/push.js", "/static/js/incident_extras.js",
  "/static/css/incident_extras.css",
  "/static/img/icon-192.png", "/static/img/icon-512.png",
];

self.addEventListener("install", (ev) => {
  ev.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (ev) => {
  ev.waitUntil((async () => {
    for (const k of await caches.keys()) if (k !== CACHE) await caches.delete(k);
    await self.clients.claim();
  })());
});

function isShell(url) {
  return url.origin === self.location.origin && !url.pathname.startsWith("/api/")
    && (url.pathname === "/m" || url.pathname.startsWith("/m/") || url.pathname.startsWith("/static/"));
}

// Network first, so a new version of a file is used at once; the cached copy only
// when the network fails. Whatever the shell fetches is kept (files other
// engineers add to the page are cached the first time they load).
self.addEventListener("fetch", (ev) => {
  const url = new URL(ev.request.url);
  if (ev.request.method !== "GET" || !isShell(url)) return;
  ev.respondWith((async () => {
    const c = await caches.open(CACHE);
    try {
      const r = await fetch(ev.request);
      if (r.ok) c.put(url.pathname === "/m" ? "/m" : ev.request, r.clone());
      return r;
    } catch (e) {
      const hit = await c.match(url.pathname === "/m" ? "/m" : ev.request);
      if (hit) return hit;
      throw e;
    }
  })());
});

self.addEventListener("push", (ev) => {
  let d = {};
  try { d = ev.data ? ev.data.json() : {}; } catch (e) { d = { title: ev.data ? ev.data.text() : "" }; }
  const tag = d.tag || undefined;
  ev.waitUntil(self.registration.showNotification(d.title || "网格告警", {
    body: d.body || "",
    tag,
    // A re-notification replaces the last one under the same tag and rings again.
    renotify: Boolean(tag && d.renotify),
    requireInteraction: Boolean(d.requireInteraction),
    vibrate: d.vibrate || [200, 100, 200],
    icon: "/static/img/icon-192.png",
    badge: "/static/img/icon-192.png",
    lang: "zh-CN",
    data: { url: d.url || "/m", incident_id: d.incident_id, again: d.again || 0,
            severity: d.severity || "info", reason: d.reason || "" },
  }));
});

self.addEventListener("notificationclick", (ev) => {
  ev.notification.close();
  const data = ev.notification.data || {};
  const url = new URL(data.url || "/m", self.location.origin).href;
  ev.waitUntil((async () => {
    const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const w of wins) {
      if (new URL(w.url).pathname === "/m") {
        await w.focus();
        w.postMessage({ type: "open-incident", id: data.incident_id });
        return;
      }
    }
    await self.clients.openWindow(url);
  })());
});
