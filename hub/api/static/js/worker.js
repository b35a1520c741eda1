// The grid worker's phone view: my open incidents, accept, handle with a note and
// an optional photo; where it is and what the camera or sensor saw.
import { t, setLang, getLang, translatePage } from "./i18n.js";
import {
  api, login, logout, stream, setUnauthorizedHandler, ApiError,
  SEV_RANK, sevName, esc, ago, fmtTime, items,
} from "./api.js";
import { loadMeta, stateActions, isOpen, categoryBadge } from "./meta.js";
import { evidenceHtml, deadlineHtml, refreshDeadlines, levelHtml, residentHtml } from "./incident_extras.js";
import { clipHtml, wireClip } from "./clip.js";
import { registerWorker, setupPush, onOpenIncident, watchOnline } from "./push.js";

// What the phone view has a form for; which of them an incident offers comes from
// the lifecycle (meta.js) and the login's role (me.actions).
const PHONE_ACTIONS = ["accept", "handle", "return"];

const $ = (s, r = document) => r.querySelector(s);
const $$ = (s, r = document) => [...r.querySelectorAll(s)];

const S = { me: null, plan: null, incidents: new Map(), current: null, es: null };

function showLogin() {
  if (S.es) { S.es.close(); S.es = null; }
  $("#app-view").hidden = true;
  $("#login-view").hidden = false;
}

async function boot() {
  translatePage();
  registerWorker();
  watchOnline($("#offline"));
  onOpenIncident((id) => openDetail(id));
  setUnauthorizedHandler(showLogin);
  $$("[data-lang]").forEach((b) => b.addEventListener("click", () => { setLang(b.dataset.lang); translatePage(); }));
  $("#lang-toggle").addEventListener("click", () => {
    setLang(getLang() === "zh" ? "en" : "zh");
    translatePage();
    $("#lang-toggle").textContent = getLang() === "zh" ? "EN" : "中文";
    S.current ? openDetail(S.current) : renderList();
  });
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#login-error").textContent = "";
    try {
      S.me = (await login($("#login-user").value.trim(), $("#login-pass").value)).user;
      $("#login-pass").value = "";
      await start();
    } catch (e) {
      $("#login-error").textContent = e instanceof ApiError && e.status === 429
        ? t("login_limited", { s: e.headers.get("Retry-After") || "60" }) : t("login_failed");
    }
  });
  $("#logout").addEventListener("click", async () => { await logout(); S.me = null; showLogin(); });
  $("#back").addEventListener("click", () => { history.back(); });
  window.addEventListener("popstate", () => { if (S.current) closeDetail(); });
  try { S.me = await api("/api/auth/me"); } catch (e) { showLogin(); return; }
  await start();
}

async function start() {
  $("#login-view").hidden = true;
  $("#app-view").hidden = false;
  $("#lang-toggle").textContent = getLang() === "zh" ? "EN" : "中文";
  [S.plan] = await Promise.all([api("/api/site/plan").catch(() => null), loadMeta()]);
  await loadList();
  setupPush($("#push-btn"));
  // A tapped notification opens /m?incident=ID.
  const asked = Number(new URLSearchParams(location.search).get("incident"));
  if (asked) openDetail(asked);
  S.es = stream((type, data) => {
    const inc = data && data.incident;
    if (!inc) return;
    const fresh = !S.incidents.has(inc.id);
    S.incidents.set(inc.id, { ...(S.incidents.get(inc.id) || {}), ...inc });
    if (fresh && isOpen(inc.state) && navigator.vibrate) navigator.vibrate([200, 100, 200]);
    if (S.current === inc.id) openDetail(inc.id, true); else renderList();
  }, (state) => { $("#conn").className = "conn " + state; });
}

async function loadList() {
  // The open incidents of my grid, plus those dispatched to me from another grid
  // (escalation, a neighbour's cover), which my grid's list does not hold.
  const q = "/api/incidents?state=open&sort=severity&limit=200";
  const [grid, assigned] = await Promise.all([
    api(q),
    S.me.person_id ? api(q + "&assignee=me") : [],
  ]);
  const list = [...items(grid), ...items(assigned)];
  S.incidents = new Map(list.map((i) => [i.id, i]));
  renderList();
}

function mine(i) { return S.me.person_id && i.assignee === S.me.person_id; }

function sorted() {
  // Most severe first, then newest; what is dispatched to me comes before the rest
  // of the same severity.
  return [...S.incidents.values()].filter((i) => isOpen(i.state)).sort((a, b) =>
    (SEV_RANK[sevName(b.severity)] - SEV_RANK[sevName(a.severity)])
    || (mine(b) - mine(a))
    || (b.opened_at || "").localeCompare(a.opened_at || ""));
}

function place(i) {
  const p = S.plan;
  if (!p) return "";
  const subj = i.subject_id && p.subjects.find((s) => s.id === i.subject_id);
  const dev = i.device_id && p.devices.find((d) => d.id === i.device_id);
  const bld = dev && dev.building && p.buildings.find((b) => b.id === dev.building);
  const parts = [];
  if (subj) parts.push(`${subj.address} ${subj.name}`);
  else if (dev) parts.push(dev.label);
  if (bld && !subj) parts.push(bld.name);
  return parts.join(" · ");
}

function unitName(code) {
  if (!code || !S.plan) return code || "";
  let best = null;
  for (const u of S.plan.units) if (code.startsWith(u.code) && (!best || u.code.length > best.code.length)) best = u;
  return best ? best.name : code;
}

function renderList() {
  if (S.current) return;
  const list = sorted();
  $("#list").innerHTML = list.length ? list.map((i) => {
    const sev = sevName(i.severity);
    return `<article class="item sev-${sev} ${mine(i) ? "mine" : ""}" data-id="${i.id}" data-state="${esc(i.state)}">
      <div class="meta"><span class="badge sev-${sev}">${t("sev_" + sev)}</span>${categoryBadge(i.category)}<span class="badge">${t("st_" + i.state)}</span><span>${esc(ago(i.opened_at))}</span></div>
      <div class="title">${esc(i.title)}</div>
      <div class="meta"><span>${esc(place(i) || unitName(i.grid_code))}</span></div></article>`;
  }).join("") : `<div class="empty">${t("nothing_to_do")}</div>`;
  $$("#list .item").forEach((el) => el.addEventListener("click", () => {
    history.pushState({ id: +el.dataset.id }, "", "#" + el.dataset.id);
    openDetail(+el.dataset.id);
  }));
}

function closeDetail() {
  S.current = null;
  $("#detail").hidden = true;
  $("#list").hidden = false;
  $("#back").hidden = true;
  $("#bar-title").textContent = t("my_incidents");
  renderList();
}

async function openDetail(id) {
  S.current = id;
  $("#list").hidden = true;
  $("#back").hidden = false;
  const box = $("#detail");
  box.hidden = false;
  let d;
  try { d = await api(`/api/incidents/${id}`); } catch (e) { box.innerHTML = `<div class="error">${esc(e.message)}</div>`; return; }
  const inc = d.incident || d;
  S.incidents.set(inc.id, inc);
  const tl = d.timeline || d.audit || [];
  const sev = sevName(inc.severity);
  const img = d.evidence_url || inc.evidence_url || (inc.evidence_image ? `/api/incidents/${inc.id}/evidence` : null);
  const can = new Set(S.me.actions || []);
  const allowed = d.allowed_actions || stateActions(inc.state);
  const acts = PHONE_ACTIONS.filter((a) => allowed.includes(a) && can.has(a));
  $("#bar-title").textContent = `#${inc.id}`;
  box.innerHTML = `
    <div class="sec"><div class="tags"><span class="badge sev-${sev}">${t("sev_" + sev)}</span>${categoryBadge(inc.category)}<span class="badge" id="state-badge">${t("st_" + inc.state)}</span></div>
      <h2>${esc(inc.title)}</h2>
      <dl class="kv"><dt>${t("location")}</dt><dd>${esc(place(inc) || "–")}</dd>
        <dt>${t("grid")}</dt><dd>${esc(unitName(inc.grid_code))}</dd>
        <dt>${t("opened")}</dt><dd>${esc(fmtTime(inc.opened_at))}</dd>
        ${inc.assignee ? `<dt>${t("assignee")}</dt><dd>${esc(inc.assignee === S.me.person_id ? (S.me.display_name || S.me.username) : inc.assignee)}</dd>` : ""}</dl>
      <div class="tags">${levelHtml(inc)} ${isOpen(inc.state) ? deadlineHtml(inc) : ""}</div></div>
    ${d.subject ? `<div class="sec">${residentHtml(d.subject)}</div>` : ""}
    ${img ? `<div class="sec"><h3>${t("evidence")}</h3><img id="evidence-img" src="${esc(img)}" alt="evidence"></div>` : ""}
    ${clipHtml(inc) ? `<div class="sec">${clipHtml(inc)}</div>` : ""}
    <div class="sec">${evidenceHtml(inc)}</div>
    <div class="sec"><h3>${t("timeline")}</h3><ul class="timeline">${tl.map((a) => `<li><b>${esc(t("act_" + a.action))}</b> <span class="muted">${esc(fmtTime(a.at))}</span>${a.reason ? `<div>${esc(a.reason)}</div>` : ""}</li>`).join("")}</ul></div>
    <div id="handle-form"></div>
    <div class="actions">${acts.map((a) => `<button class="primary" data-action="${a}">${t("act_" + a)}</button>`).join("")}</div>`;
  refreshDeadlines(box);
  if (!S.deadlineTicker) S.deadlineTicker = setInterval(() => refreshDeadlines($("#detail")), 1000);
  const ei = $("#evidence-img");
  if (ei) ei.addEventListener("error", () => { ei.parentNode.hidden = true; });
  wireClip(box);
  $$("button[data-action]", box).forEach((b) => b.addEventListener("click", () => act(inc, b.dataset.action)));
}

async function act(inc, action) {
  if (action === "accept") {
    await transition(inc, { action: "accept" }, t("accepted_ok"));
    return;
  }
  const f = $("#handle-form");
  if (action === "return") {
    // 退回: back to the dispatcher, with the reason they will read.
    f.innerHTML = `<form class="sec form" id="rf"><h3>${t("act_return")}</h3>
      <label>${t("return_reason")}<textarea name="reason" id="return-reason" rows="3" required></textarea></label>
      <button class="primary" type="submit" id="return-submit">${t("submit")}</button></form>`;
    $$(".actions", $("#detail")).forEach((x) => { x.hidden = true; });
    $("#rf").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await transition(inc, { action: "return", reason: $("#return-reason").value.trim() }, t("returned_ok"));
    });
    return;
  }
  f.innerHTML = `<form class="sec form" id="hf"><h3>${t("act_handle")}</h3>
    <label>${t("note")}<textarea name="note" id="handle-note" rows="4" required></textarea></label>
    <label>${t("photo")} (${t("optional")})<input type="file" name="photo" id="handle-photo" accept="image/*" capture="environment"></label>
    <button class="primary" type="submit" id="handle-submit">${t("submit")}</button></form>`;
  $$(".actions", $("#detail")).forEach((x) => { x.hidden = true; });
  f.scrollIntoView({ behavior: "smooth" });
  $("#hf").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const note = $("#handle-note").value.trim();
    const file = $("#handle-photo").files[0];
    try {
      // The upload writes its own audit row linking the photo to the incident.
      if (file) {
        const fd = new FormData();
        fd.append("file", file);
        await api(`/api/incidents/${inc.id}/attachments`, { method: "POST", form: fd });
      }
      await transition(inc, { action: "handle", note }, t("handled_ok"));
    } catch (e) { toast(e.message); }
  });
}

async function transition(inc, body, ok) {
  try {
    await api(`/api/incidents/${inc.id}/transitions`, { method: "POST", body: { ...body, expected_version: inc.version } });
    toast(ok);
  } catch (e) {
    toast(e.status === 409 ? t("conflict") : e.message);
  }
  await openDetail(inc.id);
}

function toast(msg) {
  const d = document.createElement("div");
  d.className = "toast";
  d.textContent = msg;
  document.body.append(d);
  setTimeout(() => d.remove(), 3500);
}

boot();
