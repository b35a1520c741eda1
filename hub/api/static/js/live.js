// The video wall (/live): every camera the caller may watch as a live MJPEG tile with
// its zones drawn over it and a red frame while one of its alarms is firing; a click
// (or /live#cam=ID from the console's map, device list or incident) shows one camera
// large, with its fire lanes' empty-lane references and, for operators and admins,
// "this is the empty lane now".
import { api, ApiError, esc, fmtTime } from "./api.js";
import { t, setLang, translatePage } from "./i18n.js";
import { loadMeta } from "./meta.js";

const $ = (s, r = document) => r.querySelector(s);
const $$ = (s, r = document) => [...r.querySelectorAll(s)];
const S = { me: null, cams: [], focus: null, timer: null };
const RENEW_ROLES = new Set(["admin", "operator"]);

function zonesSvg(cam) {
  const polys = cam.zones.map((z) => {
    const pts = z.polygon.map(([x, y]) => `${x},${y}`).join(" ");
    const [lx, ly] = z.polygon[0];
    return `<polygon class="${esc(z.kind)}" points="${pts}"></polygon>` +
      `<text x="${lx + 0.01}" y="${ly - 0.01}">${esc(z.name)}</text>`;
  }).join("");
  return `<svg class="zones" viewBox="0 0 1 1" preserveAspectRatio="none">${polys}</svg>`;
}

// One live picture: an <img> on the MJPEG route. The browser keeps one connection
// per image; it is closed by clearing src when the tile goes.
function tile(cam, big = false) {
  const el = document.createElement("div");
  el.className = "tile" + (big ? " big" : "") + (cam.firing ? " firing" : "");
  el.dataset.cam = cam.id;
  el.innerHTML = `<div class="waiting">${t("live_waiting")}</div>
    <img class="live" alt="${esc(cam.label)}" hidden>
    ${zonesSvg(cam)}
    <div class="cap"><span>${esc(cam.label)}</span><span class="muted">${esc(cam.id)}</span>
      <span class="alarm" ${cam.firing ? "" : "hidden"}>⚠ ${t("alarm_firing")}</span></div>`;
  const img = $("img", el);
  img.addEventListener("load", () => { img.hidden = false; $(".waiting", el).hidden = true; });
  img.addEventListener("error", () => {
    const w = $(".waiting", el);
    if (!el.isConnected || !w) return; // closed on purpose (src cleared)
    w.textContent = t("live_down");
    w.hidden = false;
    // 429 (too many viewers) or a restart: try again a little later.
    setTimeout(() => { if (el.isConnected) img.src = liveUrl(cam.id); }, 5000);
  });
  img.src = liveUrl(cam.id);
  if (!big) el.addEventListener("click", () => { location.hash = "cam=" + encodeURIComponent(cam.id); });
  return el;
}

function liveUrl(id) { return `/api/live/${encodeURIComponent(id)}/mjpeg?t=${Date.now()}`; }

function closeTiles(root) {
  $$("img.live", root).forEach((img) => { img.removeAttribute("src"); img.src = ""; });
  root.innerHTML = "";
}

function renderWall() {
  const wall = $("#wall");
  closeTiles(wall);
  if (!S.cams.length) { wall.innerHTML = `<div class="empty">${t("no_cameras")}</div>`; return; }
  S.cams.forEach((c) => wall.appendChild(tile(c)));
}

// Alarm state changes without reopening the pictures.
function updateAlarms() {
  for (const c of S.cams) {
    $$(`.tile[data-cam="${CSS.escape(c.id)}"]`).forEach((el) => {
      el.classList.toggle("firing", c.firing);
      $(".alarm", el).hidden = !c.firing;
    });
  }
  const cam = S.cams.find((c) => c.id === S.focus);
  const sig = cam ? cam.incidents.map((i) => `${i.id}:${i.state}:${i.firing}`).join(",") : "";
  if (cam && sig !== S.focusSig) renderFocusSide();
}

async function loadCameras() {
  const before = S.cams.map((c) => c.id).join(",");
  S.cams = await api("/api/live/cameras");
  return before !== S.cams.map((c) => c.id).join(",");
}

function showFocus(id) {
  const cam = S.cams.find((c) => c.id === id);
  if (!cam) { location.hash = ""; return; }
  S.focus = id;
  closeTiles($("#wall"));
  $("#wall").hidden = true;
  $("#focus").hidden = false;
  $("#focus-title").textContent = cam.label;
  const ft = $("#focus-tile");
  closeTiles(ft);
  ft.replaceWith(Object.assign(tile(cam, true), { id: "focus-tile" }));
  renderFocusSide();
}

function hideFocus() {
  S.focus = null;
  closeTiles($("#focus-tile"));
  $("#focus").hidden = true;
  $("#wall").hidden = false;
  renderWall();
}

async function renderFocusSide() {
  const cam = S.cams.find((c) => c.id === S.focus);
  const side = $("#focus-side");
  if (!cam) return;
  S.focusSig = cam.incidents.map((i) => `${i.id}:${i.state}:${i.firing}`).join(",");
  $("#focus-state").textContent = cam.firing ? t("alarm_firing") : t("watchers", { n: cam.watchers });
  $("#focus-state").className = "badge" + (cam.firing ? " firing" : "");
  const incs = cam.incidents.map((i) => `<li>#${i.id} ${esc(i.title)} <span class="muted">${t("st_" + i.state)}</span></li>`).join("");
  let html = incs ? `<h3>${t("open_incidents")}</h3><ul class="inc-list">${incs}</ul>` : "";
  if (cam.fire_lane) {
    let refs = [];
    try { refs = await api(`/api/live/${encodeURIComponent(cam.id)}/references`); } catch (e) { refs = []; }
    html += `<h3>${t("reference")}</h3>` + refs.map((r) => `<div class="ref">
      <div>${esc(r.zone)} <span class="when">${r.captured_at ? t("ref_taken", { t: esc(fmtTime(r.captured_at)) }) : ""}</span></div>
      ${r.captured_at ? `<img src="${esc(r.url)}" alt="${esc(r.zone)}">` : `<div class="muted">${t("no_reference")}</div>`}</div>`).join("");
    if (S.me && RENEW_ROLES.has(S.me.role)) {
      html += `<button class="primary" id="renew">${t("renew_ref")}</button>`;
    }
    html += `<div class="renew-msg" id="renew-msg" role="status"></div>`;
  }
  if (S.focus !== cam.id) return;
  side.innerHTML = html;
  const btn = $("#renew", side);
  if (btn) btn.addEventListener("click", () => renew(cam.id, btn));
}

async function renew(id, btn) {
  if (!confirm(t("renew_confirm"))) return;
  btn.disabled = true;
  const msg = $("#renew-msg");
  try {
    const r = await api(`/api/live/${encodeURIComponent(id)}/rebaseline`, { method: "POST" });
    await renderFocusSide();
    const m = $("#renew-msg");
    m.textContent = r.confirmed ? t("renew_ok") : t("renew_pending");
    m.className = "renew-msg" + (r.confirmed ? " ok" : "");
  } catch (e) {
    msg.textContent = e instanceof ApiError && e.status === 403 ? t("renew_forbidden") : `${t("error")}: ${e.message}`;
    btn.disabled = false;
  }
}

function route() {
  const m = location.hash.match(/cam=([^&]+)/);
  if (m) showFocus(decodeURIComponent(m[1]));
  else if (S.focus || $("#wall").hidden) hideFocus();
}

async function main() {
  translatePage();
  $$("[data-lang]").forEach((b) => b.addEventListener("click", () => {
    setLang(b.dataset.lang);
    translatePage();
    if (S.focus) showFocus(S.focus); else renderWall();
  }));
  $("#cols").addEventListener("change", (e) => { $("#wall").style.setProperty("--cols", e.target.value); });
  $("#focus-close").addEventListener("click", () => { location.hash = ""; });
  try {
    S.me = await api("/api/auth/me");
  } catch (e) {
    $("#login-needed").hidden = false;
    return;
  }
  $("#whoami").textContent = S.me.display_name || S.me.username || "";
  try { await loadMeta(); } catch (e) { /* state labels fall back to their codes */ }
  await loadCameras();
  window.addEventListener("hashchange", route);
  if (location.hash.includes("cam=")) route(); else renderWall();
  S.timer = setInterval(async () => {
    try {
      const changed = await loadCameras();
      if (changed && !S.focus) renderWall(); else updateAlarms();
    } catch (e) { /* the next poll tries again */ }
  }, 5000);
}

main();
