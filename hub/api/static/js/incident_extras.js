// What the console and the phone view show about one incident beyond its state:
// the numbers that fired it (labelled, with units), the running time limit as a
// countdown, the escalation level by name, and the resident's card with
// click-to-call contacts. Both pages import it, so they say the same thing.
import { addLabels, getLang, label, t } from "./i18n.js";
import { esc, fmtValue } from "./api.js";
import { evidenceLabel, escalationLevels } from "./meta.js";

const L = (key, zh, en) => addLabels(key, { zh, en });
[
  ["ev_reason", "触发原因", "Reason"], ["ev_box_aspect", "人体框宽高比", "Box aspect (w/h)"],
  ["ev_light_gain", "光照变化", "Light change"], ["ev_share_of_zone", "占区域比例", "Share of zone"],
  ["ev_dwell_required_s", "判定停留时长", "Dwell required"], ["ev_readings", "触发读数", "Readings that fired"],
  ["ev_metric", "指标", "Metric"], ["ev_low", "下限", "Low limit"], ["ev_high", "上限", "High limit"],
  ["ev_consecutive", "连续次数", "Consecutive readings"], ["ev_value", "读数", "Reading"],
  ["ev_keypoint_conf", "关键点置信度", "Keypoint confidence"], ["ev_heartbeat_s", "心跳间隔", "Heartbeat interval"],
  ["ev_kind", "设备类型", "Device kind"], ["ev_last_seen", "最后在线", "Last seen"], ["ev_body_temp", "体温", "Body temperature"],
  ["fired_with", "触发时数值", "Numbers when it fired"], ["latest_values", "最新数值", "Latest values"],
  ["deadline_accept", "签收时限", "Accept by"], ["deadline_handle", "处置时限", "Handle by"],
  ["cd_accept", "签收时限", "Accept:"], ["cd_handle", "处置时限", "Handle:"],
  ["overdue", "已超时 {d}", "overdue {d}"], ["left", "剩余 {d}", "{d} left"],
  ["notified_up_to", "已通知至", "Notified up to"], ["resident", "老人档案", "Resident"],
  ["age", "年龄", "Age"], ["years", "{n} 岁", "{n} years"], ["lives_alone", "独居", "Lives alone"],
  ["lives_with_others", "非独居", "Lives with others"], ["flat", "住址", "Flat"],
  ["flat_fmt", "{b} {u} 单元 {f} 层 {r} 室", "{b}, unit {u}, floor {f}, room {r}"],
  ["contacts", "紧急联系人", "Emergency contacts"], ["call", "拨打", "Call"],
  ["sound_playing", "🔊 正在响铃", "🔊 Sound on"], ["sound_blocked", "🔇 点击启用声音", "🔇 Click to enable sound"],
  ["sound_error", "🔇 无法播放提示音", "🔇 Alarm tone cannot play"],
  ["reminder", "提醒：紧急事件仍未立案", "Reminder: critical incident still not registered"],
].forEach(([k, zh, en]) => L(k, zh, en));

// The reasons the detectors write, in Chinese.
const REASON_ZH = {
  "fast change to lying": "快速转为躺卧", "fast drop to the floor": "快速跌落至地面",
  "fast change to lying, lost from view while down": "快速转为躺卧，倒地后离开画面",
  "still down": "仍未起身", "got up": "已起身", "person no longer seen": "画面中不再有人",
  status: "设备上报离线", heartbeat: "心跳超时", lwt: "连接断开（遗嘱消息）",
};
const POSTURE_ZH = { lying: "躺卧", upright: "直立", sitting: "坐姿", crouching: "蹲姿", unknown: "不确定" };
const METRIC = { heart_rate: ["心率", "heart rate", "bpm"], spo2: ["血氧", "SpO2", "%"], body_temp: ["体温", "body temperature", "°C"] };

// Units by key; shares are 0-1 fractions shown as percentages.
const SHARE = new Set(["obstructed_share", "share_of_zone", "keypoint_conf"]);
const UNIT = { dwell_s: "s", dwell_required_s: "s", time_down_s: "s", heartbeat_s: "s", torso_angle_deg: "°",
  hours_without_activity: "h", window_h: "h", litres: "L", heart_rate: "bpm", spo2: "%", body_temp: "°C" };

function zh() { return getLang() === "zh"; }

function fmtEv(key, v, ev) {
  const metric = METRIC[ev.metric];
  const unit = ["readings", "value", "low", "high"].includes(key) && metric ? metric[2] : UNIT[key] || "";
  const num = (x) => {
    if (typeof x !== "number") return fmtValue(x);
    if (SHARE.has(key) || (key === "threshold" && ("obstructed_share" in ev || "share_of_zone" in ev))) return `${(x * 100).toFixed(1)}%`;
    if (key === "light_gain") return `×${x.toFixed(2)}`;
    return `${fmtValue(x)}${unit ? " " + unit : ""}`;
  };
  if (Array.isArray(v)) return v.map(num).join(" / ");
  if (key === "reason" && zh()) return REASON_ZH[v] || v;
  if (key === "posture" && zh()) return POSTURE_ZH[v] || v;
  if (key === "metric" && metric) return zh() ? metric[0] : metric[1];
  if (key === "device_kind" || key === "kind") return label("kind_", v);
  return num(v);
}

// dt/dd rows of one evidence dict (objects other than lists of numbers left out).
export function evidenceRows(ev, cat) {
  return Object.entries(ev || {})
    .filter(([, v]) => v !== null && (typeof v !== "object" || (Array.isArray(v) && v.every((x) => typeof x !== "object"))))
    .map(([k, v]) => `<dt>${esc(evidenceLabel(cat, k))}</dt><dd data-ev="${esc(k)}">${esc(fmtEv(k, v, ev))}</dd>`).join("");
}

// "触发依据": the firing numbers; apart from them, the latest values that differ (a
// clear's reading, a still-growing dwell). The incident's evidence merges every alarm's,
// so what the clear left unchanged is not repeated.
export function evidenceHtml(inc) {
  const fired = inc.firing_evidence && Object.keys(inc.firing_evidence).length ? inc.firing_evidence : inc.evidence || {};
  const latest = Object.fromEntries(Object.entries(inc.evidence || {})
    .filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(fired[k])));
  // Units of a reading follow its metric, which the clear may not repeat.
  if (Object.keys(latest).length && fired.metric && !latest.metric) latest.metric = fired.metric;
  let h = `<h3>${t("numbers")}</h3><dl class="kv" id="evidence-kv">${evidenceRows(fired, inc.category) || `<dd class="muted">–</dd>`}</dl>`;
  const rows = evidenceRows(latest, inc.category);
  if (rows) h += `<h4 class="muted">${t("latest_values")}</h4><dl class="kv ev-latest" id="evidence-latest">${rows}</dl>`;
  return h;
}

function dur(s) {
  s = Math.round(Math.abs(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (x) => String(x).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(ss)}` : `${m}:${two(ss)}`;
}

// A countdown span the ticker refreshes (refreshDeadlines); none without a limit.
export function deadlineHtml(inc, limitS) {
  if (!inc.deadline_at || inc.state === "closed" || inc.state === "cancelled") return "";
  return `<span class="deadline" data-deadline="${esc(inc.deadline_at)}" data-limit="${esc(limitS || "")}" data-kind="${esc(inc.deadline_kind || "accept")}"></span>`;
}

export function refreshDeadlines(root = document, now = Date.now()) {
  for (const el of root.querySelectorAll(".deadline[data-deadline]")) {
    const left = (new Date(el.dataset.deadline) - now) / 1000;
    const limit = +el.dataset.limit || 0;
    el.classList.toggle("over", left < 0);
    el.classList.toggle("near", left >= 0 && (limit ? left <= limit / 4 : left <= 60));
    el.textContent = `⏱ ${t("cd_" + el.dataset.kind)} ${left < 0 ? t("overdue", { d: dur(left) }) : t("left", { d: dur(left) })}`;
  }
}

// The escalation level by name (网格员 … 部门), as the hub names its chain.
export function levelName(level) {
  const l = escalationLevels().find((x) => x.level === level);
  return l ? l.labels[getLang()] || l.labels.zh : String(level);
}

export function levelHtml(inc) {
  if (inc.escalation_level === undefined || inc.escalation_level === null) return "";
  return `<span class="badge level${inc.escalations ? " up" : ""}" data-level="${+inc.escalation_level}">${t("notified_up_to")} ${esc(levelName(+inc.escalation_level))}${inc.escalations ? ` ↑${+inc.escalations}` : ""}</span>`;
}

// The resident's card: who, where, whom to call (tel: links).
export function residentHtml(s) {
  if (!s) return "";
  const f = s.flat || {};
  const flat = f.unit ? t("flat_fmt", { b: f.building || `${f.building_no}#`, u: f.unit, f: f.floor ?? "?", r: f.room }) : f.address;
  const contacts = (s.contacts || []).map((c) => `<li><span>${esc(c.name)}</span><span class="muted">${esc(c.relation)}</span>
      <a class="tel" href="tel:${esc(c.phone.replace(/[^0-9+]/g, ""))}">📞 ${t("call")} ${esc(c.phone)}</a></li>`).join("");
  return `<h3>${t("resident")}</h3><div class="resident" id="resident">
    <div><b>${esc(s.name)}</b>${s.age !== null && s.age !== undefined ? ` · ${t("years", { n: s.age })}` : ""} · ${t(s.lives_alone ? "lives_alone" : "lives_with_others")}</div>
    <div><span class="muted">${t("flat")}</span> ${esc(flat)} <span class="muted">(${esc(f.address || "")})</span></div>
    <div class="muted">${t("contacts")}</div><ul class="contacts">${contacts || "<li>–</li>"}</ul></div>`;
}
