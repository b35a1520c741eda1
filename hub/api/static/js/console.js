// The operator console: live incident wall, incident detail and actions, site map,
// device health with readings, statistics.
import { t, label, setLang, translatePage } from "./i18n.js";
import {
  api, login, logout, stream, setUnauthorizedHandler, ApiError,
  SEV_RANK, sevName, esc, ago, fmtTime, fmtDuration, fmtValue, items,
} from "./api.js";
import { lineChart, barChart } from "./charts.js";
import { clipHtml, wireClip } from "./clip.js";
import { metricLabel, metricUnit } from "./device_labels.js";
import { timelineHtml as timelineView, reasonHtml } from "./timeline.js";
import {
  loadMeta, categories, category, states, severities, stateActions, transition, isOpen, isInitial,
  categoryBadge, reminderSeconds,
} from "./meta.js";
import { AlarmSound } from "./alarm_sound.js";
import { evidenceHtml, deadlineHtml, refreshDeadlines, levelHtml, levelName, residentHtml } from "./incident_extras.js";

const $ = (s, r = document) => r.querySelector(s);
const $$ = (s, r = document) => [...r.querySelectorAll(s)];

// Categories, states and the actions each state allows come from the hub (meta.js);
// this is only the order buttons are laid out in.
const ACTION_ORDER = ["register", "dispatch", "accept", "handle", "close", "reopen", "cancel", "comment"];

const S = {
  me: null, plan: null, people: [], incidents: new Map(), selected: null,
  // acked: incident id -> when "知道了" was pressed (ms); a critical incident still
  // unregistered reminder_s after that rings again.
  unacked: new Set(), acked: new Map(Object.entries(JSON.parse(sessionStorage.getItem("hub.acked.at") || "{}")).map(([k, v]) => [+k, v])),
  es: null, tab: "wall", devices: [], devSel: null, range: 6, title: document.title,
};
const sound = new AlarmSound(showSoundState);

// ------------------------------------------------------------------ boot / login

function showLogin() {
  if (S.es) { S.es.close(); S.es = null; }
  sound.stop();
  $("#app-view").hidden = true;
  $("#login-view").hidden = false;
  $("#login-user").focus();
}

async function boot() {
  translatePage();
  bindStatic();
  setUnauthorizedHandler(showLogin);
  try {
    S.me = await api("/api/auth/me");
  } catch (e) {
    showLogin();
    return;
  }
  await startApp();
}

function bindStatic() {
  $$("[data-lang]").forEach((b) => b.addEventListener("click", () => {
    setLang(b.dataset.lang);
    translatePage();
    relabelStatus();
    if (S.me) { fillFilters(); $("#dev-filters")?.remove(); renderAll(); }
  }));
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    userGesture();  // the browser allows sound (and asking to notify) from now on
    $("#login-error").textContent = "";
    try {
      const r = await login($("#login-user").value.trim(), $("#login-pass").value);
      S.me = r.user;
      $("#login-pass").value = "";
      await startApp();
    } catch (e) {
      if (e instanceof ApiError && e.status === 429) {
        $("#login-error").textContent = t("login_limited", { s: e.headers.get("Retry-After") || "60" });
      } else {
        $("#login-error").textContent = t("login_failed");
      }
    }
  });
  $("#logout").addEventListener("click", async () => { await logout(); S.me = null; showLogin(); });
  $("#ack-btn").addEventListener("click", () => { userGesture(); acknowledgeAll(); });
  $("#sound-btn").addEventListener("click", (ev) => { ev.stopPropagation(); userGesture(); });
  document.addEventListener("visibilitychange", flashTitle);
  $$("#tabs button").forEach((b) => b.addEventListener("click", () => switchTab(b.dataset.tab)));
  for (const id of ["#f-category", "#f-state", "#f-severity", "#f-grid", "#f-open"]) {
    $(id).addEventListener("change", () => loadIncidents());
  }
  $("#s-period").addEventListener("change", loadStats);
  $("#s-grid").addEventListener("change", loadStats);
  $("#s-bucket").addEventListener("change", loadStats);
  // A related incident named in a timeline opens on the wall.
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest && ev.target.closest("[data-open-incident]");
    if (!a) return;
    ev.preventDefault();
    if (S.tab !== "wall") switchTab("wall");
    openDetail(+a.dataset.openIncident);
  });
  // A grid chosen in another community would match nothing: choosing a community clears it.
  $("#s-community").addEventListener("change", () => { $("#s-grid").value = ""; loadStats(); });
  $("#f-community").addEventListener("change", () => { $("#f-grid").value = ""; loadIncidents(); });
  document.addEventListener("click", userGesture);
}

// A click lets the page play sound and ask for desktop notifications.
function userGesture() {
  sound.unlock();
  if (window.Notification && Notification.permission === "default") Notification.requestPermission();
}

// The header's connection state and the sound button keep the words of the language
// they were drawn in; a language switch draws them again.
function relabelStatus() {
  const c = $("#conn");
  const state = ["live", "offline"].find((k) => c.classList.contains(k)) || "reconnecting";
  if (c.classList.contains("conn") && c.className !== "conn") c.textContent = t(state);
  const b = $("#sound-btn");
  if (b.dataset.audio && b.dataset.audio !== "idle") b.textContent = t("sound_" + b.dataset.audio);
}

function showSoundState(state) {
  const b = $("#sound-btn");
  b.dataset.audio = state;
  document.body.dataset.audio = state;
  b.hidden = state === "idle";
  b.textContent = t("sound_" + state);
}

// The tab's title flashes while a critical incident waits and the console is behind
// another window; it stops when the operator looks.
function flashTitle() {
  const want = document.hidden && S.unacked.size > 0;
  if (want && !S.flash) {
    let on = false;
    S.flash = setInterval(() => { on = !on; document.title = on ? `【${t("new_critical")} ${S.unacked.size}】${S.title}` : S.title; }, 1000);
  } else if (!want && S.flash) {
    clearInterval(S.flash); S.flash = null; document.title = S.title;
  }
}

function desktopNotify(inc, reminder) {
  if (!document.hidden || !window.Notification || Notification.permission !== "granted") return;
  const n = new Notification(`${reminder ? t("reminder") : t("new_critical")}: ${inc.title}`, {
    body: `${unitName(inc.grid_code)} · ${levelName(+inc.escalation_level || 0)}`, tag: `incident-${inc.id}`, renotify: true, requireInteraction: true,
  });
  n.onclick = () => { window.focus(); openDetail(inc.id); n.close(); };
}

// Every second: the countdowns, and a reminder for a critical incident acknowledged
// but still unregistered for reminder_s.
function tick() {
  refreshDeadlines();
  const now = Date.now();
  for (const [id, at] of S.acked) {
    const i = S.incidents.get(id);
    if (!i || !isCritical(i)) continue;
    if (now - at >= reminderSeconds() * 1000) {
      S.acked.delete(id);
      S.unacked.add(id);
      saveAcked();
      renderAlert(i);
      if (S.tab === "wall") renderWall();
    }
  }
}

async function startApp() {
  $("#login-view").hidden = true;
  $("#app-view").hidden = false;
  $("#whoami").textContent = `${S.me.display_name || S.me.username} · ${S.me.role}`;
  const [plan, people, communities] = await Promise.all([
    api("/api/site/plan"),
    api("/api/people").catch(() => []),
    api("/api/communities").catch(() => []),
    loadMeta(),
  ]);
  S.plan = plan;
  S.people = items(people);
  S.communities = items(communities);
  fillFilters();
  await loadIncidents();
  connectStream();
  if (!S.secTicker) S.secTicker = setInterval(tick, 1000);
  if (!S.ticker) S.ticker = setInterval(() => { if (S.tab === "wall" && S.me) renderWall(); }, 30000);  // "x min ago"
}

function unitName(code) {
  if (!code || !S.plan) return code || "";
  let best = null;
  for (const u of S.plan.units) if (code.startsWith(u.code) && (!best || u.code.length > best.code.length)) best = u;
  return best ? best.name : code;
}

function option(v, label, sel) { return `<option value="${esc(v)}"${sel ? " selected" : ""}>${esc(label)}</option>`; }

function fillFilters() {
  const keep = (id) => $(id).value;
  const cat = keep("#f-category"), st = keep("#f-state"), sv = keep("#f-severity"), gr = keep("#f-grid"), sg = keep("#s-grid");
  $("#f-category").innerHTML = option("", t("all")) + categories().map((c) => option(c.code, t("cat_" + c.code), c.code === cat)).join("");
  $("#f-state").innerHTML = option("", t("all")) + states().map((s) => option(s.code, t("st_" + s.code), s.code === st)).join("");
  $("#f-severity").innerHTML = option("", t("all")) + severities().map((s) => option(s, t("sev_" + s) + " +", s === sv)).join("");
  const units = (S.plan ? S.plan.units : []).filter((u) => u.level >= 12 && u.code.startsWith(S.me.scope_code || ""));
  const grids = option("", t("all")) + units.map((u) => option(u.code, "\u00a0".repeat((u.level - 12) * 2) + u.name, u.code === gr)).join("");
  $("#f-grid").innerHTML = grids;
  $("#s-grid").innerHTML = option("", t("all")) + units.filter((u) => u.level <= 14).map((u) => option(u.code, u.name, u.code === sg)).join("");
  if (!sg) $("#s-grid").value = statsDefault();
  // The community filter (the compounds of a district deployment, within my scope).
  for (const id of ["#f-community", "#s-community"]) {
    const was = $(id).value;
    $(id).innerHTML = option("", t("all")) + (S.communities || []).map((c) => option(c.code, c.name, c.code === was)).join("");
  }
}

// Statistics open at the first level of the tree that actually branches (for a
// district-wide operator of one compound: the community, split by grid).
function statsDefault() {
  if (!S.plan) return "";
  let code = S.me.scope_code || S.plan.units.find((u) => !u.parent)?.code || "";
  for (;;) {
    const kids = S.plan.units.filter((u) => u.parent === code);
    if (kids.length !== 1) break;
    code = kids[0].code;
  }
  return code.length >= 12 && code.length <= 14 ? code : "";
}

// ------------------------------------------------------------------ incidents

function query() {
  const q = new URLSearchParams({ limit: "200" });
  const cat = $("#f-category").value, st = $("#f-state").value, sv = $("#f-severity").value, gr = $("#f-grid").value;
  if (cat) q.set("category", cat);
  if (st) q.set("state", st);
  else if ($("#f-open").checked) q.set("state", "open");
  if (sv) q.set("min_severity", sv);
  if (gr) q.set("grid", gr);
  if ($("#f-community").value) q.set("community", $("#f-community").value);
  return q;
}

async function loadIncidents() {
  try {
    const list = items(await api("/api/incidents?" + query()));
    S.incidents = new Map(list.map((i) => [i.id, i]));
    for (const i of list) noteCritical(i, false);
    renderWall();
    renderAlert();
  } catch (e) { toast(e.message); }
}

function matchesFilters(i) {
  const cat = $("#f-category").value, st = $("#f-state").value, sv = $("#f-severity").value, gr = $("#f-grid").value;
  if (cat && i.category !== cat) return false;
  if (st && i.state !== st) return false;
  if (!st && $("#f-open").checked && !isOpen(i.state)) return false;
  if (sv && SEV_RANK[sevName(i.severity)] < SEV_RANK[sv]) return false;
  if (gr && !(i.grid_code || "").startsWith(gr)) return false;
  const co = $("#f-community").value;
  if (co && !(i.grid_code || "").startsWith(co)) return false;
  return true;
}

// A critical incident nobody has acknowledged yet rings until someone does.
function isCritical(i) { return sevName(i.severity) === "critical" && isInitial(i.state); }

function noteCritical(i, fresh) {
  const crit = isCritical(i);
  if (crit && !S.acked.has(i.id)) S.unacked.add(i.id);
  else S.unacked.delete(i.id);
  if (!crit) S.acked.delete(i.id);
  if (fresh && crit) {
    if (navigator.vibrate) navigator.vibrate(300);
    desktopNotify(i, false);
  }
}

// The sticky attention bar on every tab while a critical incident is unacknowledged;
// ``reminder``: the incident whose reminder came due (rings and notifies again).
function renderAlert(reminder) {
  const open = [...S.unacked].map((id) => S.incidents.get(id)).filter(Boolean);
  const bar = $("#alert-banner");
  if (!open.length) { bar.hidden = true; sound.stop(); flashTitle(); return; }
  const newest = open.sort((a, b) => (b.opened_at || "").localeCompare(a.opened_at || ""))[0];
  const lead = reminder ? t("reminder") : t("new_critical");
  $("#alert-text").textContent = `${lead} (${open.length}): ${newest.title} · ${unitName(newest.grid_code)} · ${t("notified_up_to")} ${levelName(+newest.escalation_level || 0)}`;
  $("#alert-deadline").innerHTML = deadlineHtml(newest, limitOf(newest));
  refreshDeadlines(bar);
  const wasHidden = bar.hidden;
  bar.hidden = false;
  bar.dataset.reminder = reminder ? "1" : "";
  if (wasHidden || reminder || sound.state === "idle") sound.start();
  if (reminder) desktopNotify(reminder, true);
  flashTitle();
}

function saveAcked() {
  sessionStorage.setItem("hub.acked.at", JSON.stringify(Object.fromEntries([...S.acked].slice(-500))));
}

function acknowledgeAll() {
  const now = Date.now();
  for (const id of S.unacked) S.acked.set(id, now);
  saveAcked();
  S.unacked.clear();
  renderAlert();
  renderWall();
}

// The category's time limit the incident's deadline runs against (for amber).
function limitOf(i) {
  const sla = (category(i.category) || {}).sla || {};
  return i.deadline_kind === "handle" ? sla.handle_s : sla.accept_s;
}

function sortIncidents(list) {
  return list.sort((a, b) => (isOpen(b.state) - isOpen(a.state))
    || (SEV_RANK[sevName(b.severity)] - SEV_RANK[sevName(a.severity)])
    || (b.opened_at || "").localeCompare(a.opened_at || ""));
}

function card(i) {
  const sev = sevName(i.severity);
  const cls = ["card", "sev-" + sev];
  if (S.unacked.has(i.id)) cls.push("unacked");
  if (S.selected === i.id) cls.push("selected");
  return `<article class="${cls.join(" ")}" data-id="${i.id}" data-state="${esc(i.state)}" data-category="${esc(i.category)}">
    <div class="meta"><span class="badge sev-${sev}">${t("sev_" + sev)}</span>
      ${categoryBadge(i.category)}
      <span class="badge st-${esc(i.state)}">${t("st_" + i.state)}</span>
      ${i.firing ? `<span class="badge firing">${t("firing")}</span>` : ""}</div>
    <div class="title">${esc(i.title)}</div>
    <div class="meta">${levelHtml(i)} ${isOpen(i.state) ? deadlineHtml(i, limitOf(i)) : ""}</div>
    <div class="meta"><span>${esc(unitName(i.grid_code))}</span><span>· ${esc(ago(i.opened_at))}</span>
      ${i.assignee ? `<span>· ${esc(personName(i.assignee))}</span>` : ""}</div>
  </article>`;
}

function renderWall() {
  const list = sortIncidents([...S.incidents.values()].filter(matchesFilters));
  $("#wall").innerHTML = list.length ? list.map(card).join("") : `<div class="empty">${t("no_incidents")}</div>`;
  $("#wall-count").textContent = `${list.length}`;
  $$("#wall .card").forEach((c) => c.addEventListener("click", () => openDetail(+c.dataset.id)));
  refreshDeadlines($("#wall"));
}

function personName(id) {
  const p = S.people.find((x) => x.id === id);
  return p ? p.name : id;
}

// ------------------------------------------------------------------ live stream

function connectStream() {
  if (S.es) S.es.close();
  S.es = stream(onStreamEvent, (state) => {
    const c = $("#conn");
    c.className = "conn " + state;
    c.textContent = t(state === "live" ? "live" : state === "offline" ? "offline" : "reconnecting");
    if (state === "offline") setTimeout(connectStream, 3000);
  });
}

function onStreamEvent(type, data) {
  const inc = data && (data.incident || (data.id !== undefined && data.category ? data : null));
  if (!inc) return;
  const fresh = !S.incidents.has(inc.id);
  const prev = S.incidents.get(inc.id);
  if (prev && prev.version && inc.version && inc.version < prev.version) return;  // out of order
  S.incidents.set(inc.id, { ...(prev || {}), ...inc });
  noteCritical(S.incidents.get(inc.id), fresh);
  renderAlert();
  if (S.tab === "wall") renderWall();
  if (S.tab === "map") renderMap();
  // An action form being filled in is not wiped by a late event: the detail is
  // refreshed when the form is left (a stale form is refused with 409 anyway).
  if (S.selected === inc.id) { if ($("#act-form")) S.staleDetail = true; else openDetail(inc.id, true); }
}

// ------------------------------------------------------------------ detail

async function openDetail(id, quiet) {
  if (!quiet && S.unacked.has(id)) { S.acked.set(id, Date.now()); saveAcked(); S.unacked.delete(id); renderAlert(); }
  S.selected = id;
  S.staleDetail = false;
  const panel = $("#detail");
  panel.hidden = false;
  let d;
  try { d = await api(`/api/incidents/${id}`); } catch (e) { panel.innerHTML = `<div class="error">${esc(e.message)}</div>`; return; }
  const inc = d.incident || d;
  S.incidents.set(inc.id, { ...(S.incidents.get(inc.id) || {}), ...inc });
  renderDetail(panel, inc, d.timeline || d.audit || inc.timeline || [], d);
  if (S.tab === "wall") renderWall();
}

function timelineHtml(tl) {
  return timelineView(tl, (a) => `
      <div><b>${esc(t("act_" + a.action))}</b> ${a.to_state && a.from_state !== a.to_state ? "→ " + esc(t("st_" + a.to_state)) : ""}
        <span class="muted">${esc(personName(a.actor || ""))}</span></div>
      <div class="when">${esc(fmtTime(a.at))}</div>
      ${reasonHtml(a)}
      ${a.data && a.data.assignee ? `<div class="muted">${t("assignee")}: ${esc(personName(a.data.assignee))}</div>` : ""}
      ${attachmentLinks(a.data)}`);
}

// The family-first cascade (hub.family): who was told and who answered, zh first.
const FAMILY_ANSWER = { on_my_way: "我在路上 / on my way", false_alarm: "她没事，误报 / she is fine",
  cannot_go: "我去不了 / cannot go" };
function familyHtml(f) {
  if (!f) return "";
  const rows = f.contacts.map((c) => `<li>${esc(c.name)} <span class="muted">${esc(c.relation || "")}</span>
      ${c.answer ? `<b>${esc(FAMILY_ANSWER[c.answer] || c.answer)}</b>`
        : c.timed_out ? `<span class="muted">未回复 / no answer</span>`
        : c.notified_at ? `<span class="muted">等待回复 / waiting</span>` : ""}
      ${c.notified_at ? `<div class="when">${esc(fmtTime(c.notified_at))}</div>` : ""}</li>`).join("");
  const cand = f.cancel_candidate ? `<div class="badge">可作废 / cancel candidate: ${esc(f.cancel_candidate)}</div>` : "";
  return `<h3>家属通知 / Family</h3><ul class="timeline" id="family">${rows}</ul>${cand}`;
}

function attachmentLinks(data) {
  const ids = (data && (data.attachments || (data.attachment_id ? [data.attachment_id] : []))) || [];
  return ids.map((x) => `<a href="/api/attachments/${+x}" target="_blank"><img class="evidence" src="/api/attachments/${+x}" alt="photo" style="max-width:160px"></a>`).join("");
}

function allowedActions(inc, d) {
  const mine = new Set(S.me.actions || []);
  const byState = d.allowed_actions || stateActions(inc.state);
  // Actions the hub adds (GET /api/meta) come after the known ones, not dropped.
  const rest = byState.filter((a) => !ACTION_ORDER.includes(a) && mine.has(a));
  return [...ACTION_ORDER.filter((a) => byState.includes(a) && mine.has(a)), ...rest];
}

function peopleFor(grid, cat) {
  // Everyone holding a role on the incident's grid unit or one of its ancestors
  // or descendants inside the caller's scope: the grid's own people first, and for
  // a category routed to property management its property staff before them.
  const first = (category(cat) || {}).route === "property" ? "property" : "grid_worker";
  const scored = [];
  for (const p of S.people) {
    for (const r of p.roles || []) {
      const u = r.unit || r.unit_code || "";
      if (grid && (grid.startsWith(u) || u.startsWith(grid.slice(0, 14)))) {
        scored.push({ p, r, rank: (r.role === first ? 0 : r.role === "grid_leader" ? 100 : 200) + (grid.startsWith(u) ? 14 - Math.min(14, u.length) : 0) });
        break;
      }
    }
  }
  return scored.sort((a, b) => a.rank - b.rank);
}

function renderDetail(panel, inc, tl, d) {
  const sev = sevName(inc.severity);
  const img = d.evidence_url || inc.evidence_url || (inc.evidence_image ? `/api/incidents/${inc.id}/evidence` : null);
  const acts = allowedActions(inc, d);
  panel.innerHTML = `
    <div class="meta"><span class="badge sev-${sev}">${t("sev_" + sev)}</span>
      ${categoryBadge(inc.category)}<span class="badge st-${esc(inc.state)}">${t("st_" + inc.state)}</span>
      ${inc.supervised_by ? `<span class="badge supervised" title="${esc(personName(inc.supervised_by))}">${t("supervised_badge")}</span>` : ""}
      ${inc.firing ? `<span class="badge firing">${t("firing")}</span>` : `<span class="badge">${t("cleared")}</span>`}
      <button class="link" id="detail-close" style="margin-left:auto">✕</button></div>
    <h2 id="detail-title">${esc(inc.title)}</h2>
    <dl class="kv">
      <dt>#</dt><dd>${inc.id}</dd>
      <dt>${t("grid")}</dt><dd>${esc(unitName(inc.grid_code))} <span class="muted">${esc(inc.grid_code || "")}</span></dd>
      <dt>${t("opened")}</dt><dd>${esc(fmtTime(inc.opened_at))} (${esc(ago(inc.opened_at))})</dd>
      ${inc.device_id ? `<dt>${t("device")}</dt><dd>${esc(inc.device_id)}${liveLink(inc.device_id)}</dd>` : ""}
      ${inc.subject_id ? `<dt>${t("subject")}</dt><dd>${esc(subjectLabel(inc.subject_id))}</dd>` : ""}
      ${inc.zone ? `<dt>${t("zone")}</dt><dd>${esc(inc.zone)}</dd>` : ""}
      ${inc.assignee ? `<dt>${t("assignee")}</dt><dd>${esc(personName(inc.assignee))}</dd>` : ""}
      <dt>${t("escalation_level")}</dt><dd id="detail-level">${levelHtml(inc)}</dd>
      ${isOpen(inc.state) && inc.deadline_at ? `<dt>${t("deadline_" + (inc.deadline_kind || "accept"))}</dt><dd id="detail-deadline">${esc(fmtTime(inc.deadline_at))} ${deadlineHtml(inc, limitOf(inc))}</dd>` : ""}
    </dl>
    ${residentHtml(d.subject)}
    <h3>${t("actions")}</h3>
    <div class="actions" id="actions">${acts.length ? acts.map((a) => `<button data-action="${a}" class="${a === "cancel" ? "danger" : "primary"}">${t("act_" + a)}</button>`).join("") : `<span class="muted">${t("no_actions")}</span>`}</div>
    <div id="action-form"></div>
    ${img ? `<h3>${t("evidence")}</h3><img class="evidence" id="evidence-img" src="${esc(img)}" alt="evidence">` : ""}
    ${clipHtml(inc, "evidence")}
    ${evidenceHtml(inc)}
    ${familyHtml(d.family)}
    <h3>${t("timeline")}</h3>${timelineHtml(tl)}`;
  refreshDeadlines(panel);
  const ei = $("#evidence-img");
  if (ei) ei.addEventListener("error", () => { ei.hidden = true; });
  wireClip(panel);
  $("#detail-close").addEventListener("click", () => { S.selected = null; panel.hidden = true; renderWall(); });
  $$("#actions button").forEach((b) => b.addEventListener("click", () => actionForm(inc, b.dataset.action)));
}

function subjectLabel(id) {
  const s = S.plan && S.plan.subjects.find((x) => x.id === id);
  return s ? `${s.address} ${s.name}` : id;
}

function actionForm(inc, action) {
  const f = $("#action-form");
  const { needs_reason: needsReason, needs_assignee: needsAssignee, needs_review_at: needsReview } = transition(action);
  let fields = "";
  if (needsAssignee) {
    const ppl = peopleFor(inc.grid_code, inc.category);
    fields += `<label>${t("person")}<select name="assignee" required>${option("", t("choose_person"))}${ppl.map(({ p, r }) => option(p.id, `${p.name} · ${r.role}${p.phone ? " · " + p.phone : ""}`)).join("")}</select></label>`;
  }
  if (needsReview) fields += `<label>${t("review_at")}<input type="datetime-local" name="review_at" required></label>`;
  fields += `<label>${needsReason ? t(action === "handle" ? "note" : "reason") : t("note") + " (" + t("optional") + ")"}<textarea name="text"${needsReason ? " required" : ""}></textarea></label>`;
  f.innerHTML = `<form class="action-form" id="act-form"><b>${t("act_" + action)}</b>${fields}
    <div class="actions"><button type="submit" class="primary">${t("submit")}</button><button type="button" id="act-back">${t("cancel_btn")}</button></div></form>`;
  $("#act-back").addEventListener("click", () => {
    f.innerHTML = "";
    if (S.staleDetail) { S.staleDetail = false; openDetail(inc.id, true); }
  });
  $("#act-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fd = new FormData(ev.target);
    const body = { action, expected_version: inc.version };
    const text = (fd.get("text") || "").trim();
    if (text) { body.reason = text; body.note = text; }
    if (fd.get("assignee")) body.assignee = fd.get("assignee");
    // The browser's local time, sent with its offset.
    if (fd.get("review_at")) body.review_at = new Date(fd.get("review_at")).toISOString();
    try {
      const r = await api(`/api/incidents/${inc.id}/transitions`, { method: "POST", body });
      const updated = r && (r.incident || r);
      if (updated && updated.id) S.incidents.set(updated.id, { ...S.incidents.get(updated.id), ...updated });
      if (S.unacked.delete(inc.id)) renderAlert();
      await openDetail(inc.id, true);
    } catch (e) {
      if (e.status === 409) { toast(t("conflict")); await openDetail(inc.id, true); } else toast(e.message);
    }
  });
}

function toast(msg) {
  const d = document.createElement("div");
  d.className = "toast";
  d.textContent = msg;
  document.body.append(d);
  setTimeout(() => d.remove(), 4000);
}

// ------------------------------------------------------------------ tabs

function switchTab(tab) {
  S.tab = tab;
  $$("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  for (const n of ["wall", "map", "devices", "stats"]) $("#tab-" + n).hidden = n !== tab;
  renderAll();
}

function renderAll() {
  if (S.tab === "wall") renderWall();
  if (S.tab === "wall" && S.selected) openDetail(S.selected, true);  // its labels too
  if (S.tab === "map") loadDevices().then(renderMap);
  if (S.tab === "devices") loadDevices().then(renderDevices);
  if (S.tab === "stats") loadStats();
  renderAlert();
}

// ------------------------------------------------------------------ map

const KIND_COLOR = { camera: "#3b9cff", pir: "#29a36a", door: "#8e5ad6", water: "#4bc0c8", sos: "#ff3b30", smoke: "#ff9500", wearable: "#f2a541", gateway: "#999" };

function openIncidentsWhere(pred) {
  return [...S.incidents.values()].filter((i) => isOpen(i.state) && pred(i));
}

function worstSeverity(list) {
  let best = 0;
  for (const i of list) best = Math.max(best, SEV_RANK[sevName(i.severity)]);
  return ["", "info", "minor", "major", "critical"][best];
}

function renderMap() {
  const plan = S.plan;
  if (!plan) return;
  const [W, H] = plan.plan_size;
  const devOf = new Map(plan.devices.map((d) => [d.id, d]));
  const health = new Map(S.devices.map((d) => [d.id, d]));
  const bIncidents = (b) => openIncidentsWhere((i) => {
    const dev = i.device_id && devOf.get(i.device_id);
    if (dev) return dev.building === b.id;
    const subj = i.subject_id && plan.subjects.find((s) => s.id === i.subject_id);
    if (subj) return plan.devices.some((d) => d.subject === subj.id && d.building === b.id);
    return i.grid_code === b.grid;
  });
  let svg = `<svg viewBox="0 0 ${W} ${H}" id="site-svg"><rect x="0" y="0" width="${W}" height="${H}" fill="#122030"/>`;
  for (const b of plan.buildings) {
    const sev = worstSeverity(bIncidents(b));
    const pts = b.polygon.map(([x, y]) => `${(x * W).toFixed(1)},${(y * H).toFixed(1)}`).join(" ");
    const cx = b.polygon.reduce((a, p) => a + p[0], 0) / b.polygon.length * W;
    const cy = Math.min(...b.polygon.map((p) => p[1])) * H + 16;  // top edge: devices sit mid
    svg += `<polygon class="bldg ${sev ? "sev-" + sev : ""}" data-building="${esc(b.id)}" points="${pts}" fill="${sev ? "" : "#243647"}"><title>${esc(b.name)}</title></polygon>`;
    svg += `<text class="bldg-label" x="${cx.toFixed(1)}" y="${cy.toFixed(1)}">${esc(b.name)}</text>`;
  }
  for (const d of plan.devices) {
    const x = d.x * W, y = d.y * H;
    const alarm = openIncidentsWhere((i) => i.device_id === d.id).length > 0;
    const h = health.get(d.id);
    const off = h && healthState(h) === "offline";
    const cls = `dev ${alarm ? "alarm" : ""} ${off ? "off" : ""}`;
    if (d.kind === "camera") {
      svg += `<circle class="cam-fov" cx="${x}" cy="${y}" r="38"/>`;
      svg += `<rect class="${cls}" data-device="${esc(d.id)}" x="${x - 7}" y="${y - 7}" width="14" height="14" fill="${KIND_COLOR.camera}"><title>${esc(d.label)}</title></rect>`;
    } else {
      svg += `<circle class="${cls}" data-device="${esc(d.id)}" cx="${x}" cy="${y}" r="6" fill="${KIND_COLOR[d.kind] || "#ccc"}"><title>${esc(d.label)}</title></circle>`;
    }
  }
  svg += "</svg>";
  const legend = `<div class="legend-row">${["critical", "major", "minor"].map((s) => `<span><i style="background:var(--${s})"></i>${t("sev_" + s)}</span>`).join("")}
    <span><i style="background:#243647"></i>${t("legend_ok")}</span>
    ${Object.entries(KIND_COLOR).filter(([k]) => plan.devices.some((d) => d.kind === k)).map(([k, c]) => `<span><i style="background:${c};border-radius:50%"></i>${t("kind_" + k)}</span>`).join("")}</div>`;
  $("#map").innerHTML = svg + legend;
  $$("#map [data-building]").forEach((p) => p.addEventListener("click", () => mapBuilding(p.dataset.building)));
  $$("#map [data-device]").forEach((p) => p.addEventListener("click", (ev) => { ev.stopPropagation(); mapDevice(p.dataset.device); }));
}

function incidentList(list) {
  if (!list.length) return `<div class="muted">–</div>`;
  return sortIncidents(list).map(card).join("");
}

function bindCards(root) {
  $$(".card", root).forEach((c) => c.addEventListener("click", () => { switchTab("wall"); openDetail(+c.dataset.id); }));
}

function mapBuilding(id) {
  const b = S.plan.buildings.find((x) => x.id === id);
  const devs = S.plan.devices.filter((d) => d.building === id);
  const ids = new Set(devs.map((d) => d.id));
  const subjects = new Set(devs.map((d) => d.subject).filter(Boolean));
  const incs = openIncidentsWhere((i) => ids.has(i.device_id) || subjects.has(i.subject_id) || (!i.device_id && !i.subject_id && i.grid_code === b.grid));
  const side = $("#map-side");
  side.innerHTML = `<h2>${esc(b.name)}</h2><div class="muted">${esc(unitName(b.grid))}</div>
    <h3>${t("open_incidents")}</h3>${incidentList(incs)}
    <h3>${t("devices")}</h3><table class="table">${devs.map((d) => devRow(d, true)).join("")}</table>`;
  bindCards(side);
  $$("tr[data-device]", side).forEach((r) => r.addEventListener("click", () => mapDevice(r.dataset.device)));
}

function mapDevice(id) {
  const side = $("#map-side");
  deviceDetail(side, id);
}

// ------------------------------------------------------------------ devices

async function loadDevices() {
  try { S.devices = items(await api("/api/devices")); } catch (e) { S.devices = []; }
}

function healthState(h) {
  if (!h) return "unknown";
  const v = h.health || h.presence || h.state || h.status;
  const s = typeof v === "object" && v ? (v.state || v.status) : v;
  if (s === "stale") return "stale";
  if (s === true || s === "online") return "online";
  if (s === false || s === "offline") return "offline";
  if (h.online === true) return "online";
  if (h.online === false) return "offline";
  return "unknown";
}

function lastSeen(h) {
  if (!h) return null;
  const v = h.health || h.presence || {};
  return h.last_seen || (typeof v === "object" && v ? v.last_seen : null);
}

// Health problems a device has now: the open device-health incidents on it (the
// rules in hub/sensing/rules: battery, link, tamper), besides online/offline.
const HEALTH_CATS = ["battery_low", "weak_link", "tamper"];
function devProblems(id) {
  return HEALTH_CATS.filter((c) => openIncidentsWhere((i) => i.device_id === id && i.category === c).length);
}

function devRow(d, compact = false) {
  const h = S.devices.find((x) => x.id === d.id) || d;
  const st = healthState(h);
  const state = `<td class="nowrap"><span class="dot ${st}"></span>${t(st === "offline" ? "offline_dev" : st)}</td>`;
  if (compact) return `<tr class="clickable" data-device="${esc(d.id)}">${state}<td>${esc(d.label || d.id)}</td><td class="muted nowrap">${esc(ago(lastSeen(h)))}</td></tr>`;
  const probs = devProblems(d.id).map((c) => `<span class="badge prob">${t("h_" + c)}</span>`).join("");
  return `<tr class="clickable${S.devSel === d.id ? " selected" : ""}" data-device="${esc(d.id)}">${state}
    <td>${esc(d.label || d.id)} ${probs}<div class="muted small">${esc(d.id)}</div></td><td class="kind">${t("kind_" + d.kind)}</td>
    <td class="grid muted">${esc(unitName(d.grid || d.grid_code))}</td><td class="muted nowrap">${esc(ago(lastSeen(h)))}</td></tr>`;
}

function devFilterBar() {
  const tab = $("#tab-devices");
  if ($("#dev-filters", tab)) return;
  const bar = document.createElement("div");
  bar.id = "dev-filters";
  bar.className = "filters";
  tab.prepend(bar);
  bar.addEventListener("input", renderDevices);
}

function fillDevFilters(list) {
  const bar = $("#dev-filters");
  const was = { q: $("#dev-q")?.value || "", kind: $("#dev-kind")?.value || "", grid: $("#dev-grid")?.value || "", health: $("#dev-health")?.value || "" };
  const kinds = [...new Set(list.map((d) => d.kind))].sort();
  const grids = [...new Set(list.map((d) => d.grid).filter(Boolean))].sort();
  const healths = ["online", "offline", "stale", ...HEALTH_CATS];
  bar.innerHTML = `<input id="dev-q" type="search" placeholder="${esc(t("dev_search"))}" value="${esc(was.q)}">
    <label>${t("dev_kind")}<select id="dev-kind">${option("", t("all"))}${kinds.map((k) => option(k, t("kind_" + k), k === was.kind)).join("")}</select></label>
    <label>${t("grid")}<select id="dev-grid">${option("", t("all"))}${grids.map((g) => option(g, unitName(g), g === was.grid)).join("")}</select></label>
    <label>${t("dev_health")}<select id="dev-health">${option("", t("all"))}${healths.map((h) => option(h, t("h_" + h), h === was.health)).join("")}</select></label>
    <span class="muted" id="dev-count"></span>`;
}

function devMatches(d) {
  const q = ($("#dev-q")?.value || "").trim().toLowerCase();
  const kind = $("#dev-kind")?.value, grid = $("#dev-grid")?.value, health = $("#dev-health")?.value;
  if (kind && d.kind !== kind) return false;
  if (grid && !(d.grid || "").startsWith(grid)) return false;
  if (health) {
    if (HEALTH_CATS.includes(health)) { if (!devProblems(d.id).includes(health)) return false; }
    else if (healthState(d) !== health) return false;
  }
  if (q) {
    const b = S.plan.buildings.find((x) => x.id === d.building);
    const hay = [d.id, d.label, d.kind, t("kind_" + d.kind), d.building, b && b.name, unitName(d.grid)].filter(Boolean).join(" ").toLowerCase();
    if (!hay.includes(q)) return false;
  }
  return true;
}

function renderDevices() {
  devFilterBar();
  const plan = new Map(S.plan.devices.map((d) => [d.id, d]));
  const all = (S.devices.length ? S.devices : S.plan.devices).map((d) => ({ ...plan.get(d.id), ...d }));
  if (!$("#dev-kind")) fillDevFilters(all);
  const list = all.filter(devMatches);
  // Trouble first: offline, then any health problem, then by id.
  const rank = (d) => (healthState(d) === "offline" ? 0 : devProblems(d.id).length ? 1 : 2);
  list.sort((a, b) => rank(a) - rank(b) || a.id.localeCompare(b.id));
  const online = all.filter((d) => healthState(d) === "online").length;
  $("#dev-count").textContent = t("dev_shown", { n: list.length, all: all.length });
  $("#dev-table").innerHTML = `<thead><tr><th>${online}/${all.length} ${t("online")}</th><th>${t("device")}</th><th>${t("dev_kind")}</th><th>${t("grid")}</th><th>${t("last_seen")}</th></tr></thead>
    <tbody>${list.length ? list.map((d) => devRow(d)).join("") : `<tr><td colspan="5" class="empty">${t("dev_none")}</td></tr>`}</tbody>`;
  $$("#dev-table tr[data-device]").forEach((r) => r.addEventListener("click", () => { deviceDetail($("#dev-side"), r.dataset.device); renderDevices(); }));
  const sel = S.devSel && list.some((d) => d.id === S.devSel) ? S.devSel : list[0]?.id;
  if (sel && $("#dev-side").dataset.device !== sel) deviceDetail($("#dev-side"), sel);
}

// A camera's live picture on the video wall page (static/js/live.js).
function liveLink(id) {
  const d = S.plan && S.plan.devices.find((x) => x.id === id);
  return d && d.kind === "camera"
    ? ` <a class="live-link" href="/live#cam=${encodeURIComponent(id)}">▶ ${t("live_view")}</a>` : "";
}

async function deviceDetail(side, id) {
  S.devSel = id;
  side.dataset.device = id;
  const d = S.plan.devices.find((x) => x.id === id) || { id, kind: "", label: id };
  const h = S.devices.find((x) => x.id === id);
  const st = healthState(h);
  const b = S.plan.buildings.find((x) => x.id === d.building);
  const probs = devProblems(id);
  side.innerHTML = `<h2>${esc(d.label || id)}</h2>
    <dl class="kv"><dt>ID</dt><dd>${esc(id)}</dd><dt>${t("dev_kind")}</dt><dd>${t("kind_" + d.kind)}</dd>
    <dt>${t("state")}</dt><dd><span class="dot ${st}"></span>${t(st === "offline" ? "offline_dev" : st)}
      ${probs.map((c) => `<span class="badge prob">${t("h_" + c)}</span>`).join("")}</dd>
    ${b ? `<dt>${t("dev_building")}</dt><dd>${esc(b.name)}</dd>` : ""}
    <dt>${t("grid")}</dt><dd>${esc(unitName(d.grid))} <span class="muted">${esc(d.grid || "")}</span></dd>
    ${d.subject ? `<dt>${t("subject")}</dt><dd>${esc(subjectLabel(d.subject))}</dd>` : ""}
    <dt>${t("last_seen")}</dt><dd>${esc(fmtTime(lastSeen(h)))}${lastSeen(h) ? ` (${esc(ago(lastSeen(h)))})` : ""}</dd>
    ${h && h.heartbeat_s ? `<dt>${t("dev_heartbeat")}</dt><dd>${esc(fmtDuration(h.heartbeat_s))}</dd>` : ""}</dl>
    ${liveLink(id)}
    <h3>${t("dev_latest")}</h3><dl class="kv" id="dev-latest"><dd class="muted">–</dd></dl>
    <h3>${t("dev_recent")}</h3><div id="dev-incidents"><div class="muted">–</div></div>
    <h3>${t("readings")}</h3>
    <div class="range">${[1, 6, 24, 168].map((hh) => `<button data-h="${hh}" class="${S.range === hh ? "active" : ""}">${t({ 1: "h1", 6: "h6", 24: "h24", 168: "d7" }[hh])}</button>`).join("")}</div>
    <div id="readings-chart"></div>`;
  $$(".range button", side).forEach((bt) => bt.addEventListener("click", () => { S.range = +bt.dataset.h; deviceDetail(side, id); }));
  const end = new Date();
  const start = new Date(end - S.range * 3600e3);
  const bucket = Math.max(10, Math.round((S.range * 3600) / 120));
  const q = new URLSearchParams({ since: start.toISOString(), until: end.toISOString(), bucket_s: String(bucket) });
  const [detail, recent, r] = await Promise.all([
    api(`/api/devices/${encodeURIComponent(id)}`).catch(() => null),
    api("/api/incidents?" + new URLSearchParams({ device: id, limit: "10" })).catch(() => null),
    api(`/api/devices/${encodeURIComponent(id)}/readings?` + q).catch(() => null),
  ]);
  if (S.devSel !== id) return;  // another device was chosen meanwhile
  const latest = Object.entries((detail && detail.latest) || {});
  $("#dev-latest", side).innerHTML = latest.length ? latest.map(([m, [ts, v]]) => `<dt>${esc(metricLabel(m))}</dt>
    <dd>${esc(fmtValue(v))} ${esc(metricUnit(m))} <span class="muted">${esc(ago(ts))}</span></dd>`).join("") : `<dd class="muted">–</dd>`;
  const incs = recent ? items(recent) : [];
  $("#dev-incidents", side).innerHTML = incidentList(incs);
  bindCards($("#dev-incidents", side));
  const thresholds = (detail && detail.thresholds) || {};
  const series = r ? readingSeries(r) : [];
  if (!series.length) { $("#readings-chart", side).innerHTML = `<div class="empty">${t("no_data")}</div>`; return; }
  $("#readings-chart", side).innerHTML = "";
  // One chart per unit: heart rate in bpm and SpO2 in % on one axis would squash both.
  const byUnit = new Map();
  for (const s of series) {
    const u = metricUnit(s.name);
    if (!byUnit.has(u)) byUnit.set(u, []);
    byUnit.get(u).push({ ...s, name: metricLabel(s.name), metric: s.name });
  }
  for (const [unit, list] of byUnit) {
    const div = document.createElement("div");
    div.className = "reading-chart";
    $("#readings-chart", side).append(div);
    const lines = list.flatMap((s) => (thresholds[s.metric] || []).map((v) => ({ value: v, label: `${s.name} ${t("threshold")} ${fmtValue(v)}${unit}` })));
    lineChart(div, list, { unit, thresholds: lines });
  }
}

// Accepts {series: {metric: [...]}} / {metric: [...]} / [{metric, bucket, avg}].
function readingSeries(r) {
  const by = new Map();
  const push = (metric, p) => {
    const ts = p.start || p.bucket || p.ts || p.t || p.time;
    const v = p.avg ?? p.value ?? p.mean ?? p.v ?? null;
    if (!by.has(metric)) by.set(metric, []);
    by.get(metric).push([ts, v === null ? null : +v]);
  };
  const rows = Array.isArray(r) ? r : r.points || r.buckets || r.items || null;
  if (rows) for (const p of rows) push(p.metric || "value", p);
  else {
    const m = r.series || r.metrics || r;
    for (const [metric, pts] of Object.entries(m)) if (Array.isArray(pts)) for (const p of pts) push(metric, Array.isArray(p) ? { ts: p[0], value: p[1] } : p);
  }
  return [...by.entries()].map(([name, points]) => ({ name, points: points.sort((a, b) => new Date(a[0]) - new Date(b[0])) }));
}

// ------------------------------------------------------------------ statistics

async function loadStats() {
  const days = +$("#s-period").value;
  const until = new Date(Date.now() + 60e3);
  const since = new Date(days === 1 ? new Date().setHours(0, 0, 0, 0) : Date.now() - days * 86400e3);
  const q = new URLSearchParams({ since: since.toISOString(), until: until.toISOString() });
  if ($("#s-grid").value) q.set("grid", $("#s-grid").value);
  if ($("#s-community").value) q.set("community", $("#s-community").value);
  // The export is the same scope and period as what is on screen.
  for (const f of ["csv", "xlsx"]) $("#s-" + f).href = "/api/stats/export?" + new URLSearchParams([...q, ["format", f]]);
  const tq = new URLSearchParams([...q, ["bucket", $("#s-bucket").value]]);
  let s, tr;
  try { [s, tr] = await Promise.all([api("/api/stats?" + q), api("/api/stats/trend?" + tq)]); } catch (e) { $("#stats-cards").innerHTML = `<div class="error">${esc(e.message)}</div>`; return; }
  const tot = s.totals || {};
  const pct = (v) => (v === null || v === undefined ? "–" : `${Math.round(v * 100)}%`);
  $("#stats-cards").innerHTML = [
    ["total", tot.total ?? 0], ["open_count", tot.open ?? 0], ["handled_in_grid", tot.handled_in_grid ?? 0],
    ["escalated", tot.escalated ?? 0], ["median_accept", fmtDuration(tot.median_accept_s)],
    ["median_close", fmtDuration(tot.median_close_s)], ["false_share", pct(tot.false_share)],
    ["self_handled", tot.self_handled ?? 0], ["transferred", tot.transferred ?? 0],
    ["returned", tot.returned ?? 0], ["parked", tot.parked ?? 0], ["supervised", tot.supervised ?? 0],
  ].map(([k, v]) => `<div class="stat" data-stat="${k}"><div class="v">${esc(v)}</div><div class="k">${t(k)}</div></div>`).join("");
  const units = Object.entries(s.by_unit || {}).map(([code, r]) => ({ label: unitName(code), r }));
  // Disjoint shares (escalated and open overlap; an open escalated case is counted
  // once, as escalated), so the bar's height is the grid's total.
  const parts = ["handled_in_grid", "escalated_kept", "open_in_grid", "cancelled_false"];
  const field = { handled_in_grid: "handled_in_grid", escalated_kept: "escalated_kept", open_in_grid: "open_in_grid", cancelled_false: "cancelled" };
  barChart($("#chart-units"), units.map((u) => ({ label: u.label, total: u.r.total, values: Object.fromEntries(parts.map((k) => [t(k), u.r[field[k]]])) })),
    parts.map((k) => t(k)), { stacked: true, colors: ["#29a36a", "#e4572e", "#2f7ed8", "#f2a541"] });
  barChart($("#chart-times"), units.map((u) => ({ label: u.label, values: { [t("median_accept")]: (u.r.median_accept_s || 0) / 60, [t("median_close")]: (u.r.median_close_s || 0) / 60 } })),
    [t("median_accept"), t("median_close")], { fmt: (v) => `${Math.round(v)}${t("minutes")}` });
  barChart($("#chart-false"), units.map((u) => ({ label: u.label, values: { [t("false_share")]: (u.r.false_share || 0) * 100 } })),
    [t("false_share")], { fmt: (v) => `${Math.round(v)}%`, colors: ["#f2a541"] });
  barChart($("#chart-cats"), Object.entries(s.by_category || {}).map(([c, r]) => ({ label: label("cat_", c), values: { [t("total")]: r.total, [t("open_count")]: r.open } })),
    [t("total"), t("open_count")]);
  const cats = [...new Set(tr.points.flatMap((p) => Object.keys(p.counts)))].sort();
  barChart($("#chart-trend"), tr.points.map((p) => ({ label: p.start.slice(5), values: Object.fromEntries(cats.map((c) => [label("cat_", c), p.counts[c] || 0])) })),
    cats.map((c) => label("cat_", c)), { stacked: true, colors: cats.map((c, i) => (category(c) || {}).colour || ["#2f7ed8", "#e4572e", "#29a36a", "#f2a541", "#8e5ad6", "#4bc0c8"][i % 6]) });
}

boot();
