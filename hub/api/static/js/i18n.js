// Interface strings. Chinese is the default; English is one click away and
// remembered per browser. Keys are English-ish identifiers, never shown. Labels of
// categories (cat_*), states (st_*) and audit actions (act_*) are not here: they
// come from the hub (GET /api/meta, see meta.js) through addLabels.
const DICT = {
  zh: {
    app_title: "社区安全监控中心", worker_title: "网格员工作台",
    login: "登录", logout: "退出", username: "用户名", password: "密码",
    login_failed: "用户名或密码错误", login_limited: "失败次数过多，请 {s} 秒后再试",
    wall: "事件墙", map: "小区地图", devices: "设备状态", stats: "统计分析",
    all: "全部", open_only: "只看未结", category: "类别", state: "状态", severity: "级别",
    grid: "网格", community: "社区", search: "搜索", no_incidents: "没有符合条件的事件",
    live: "实时", reconnecting: "重连中…", offline: "离线",
    acknowledge: "知道了", new_critical: "紧急事件",
    ack_hint: "有未确认的紧急事件",
    opened: "发生时间", updated: "更新", device: "设备", subject: "对象", zone: "区域",
    assignee: "处置人", evidence: "现场证据", numbers: "触发依据", timeline: "处置记录",
    clip: "事件录像", clip_pending: "录像生成中，稍后自动刷新…", clip_missing: "录像已过保存期或未生成",
    actions: "操作", no_actions: "当前状态下你没有可执行的操作",
    reason: "原因", note: "处置说明", person: "派遣给", choose_person: "选择人员",
    photo: "现场照片", optional: "可选",
    submit: "提交", cancel_btn: "返回", close: "关闭",
    sev_critical: "紧急", sev_major: "重要", sev_minor: "一般", sev_info: "提示",
    kind_camera: "摄像头", kind_pir: "人体感应", kind_door: "门磁", kind_water: "水表",
    kind_sos: "紧急按钮", kind_smoke: "烟感", kind_wearable: "手环", kind_gateway: "网关",
    online: "在线", offline_dev: "离线", unknown: "未知", stale: "失联", last_seen: "最后上报",
    readings: "读数曲线", range: "时间范围", h1: "1小时", h6: "6小时", h24: "24小时", d7: "7天",
    no_data: "暂无数据",
    period: "统计周期", today: "今天", days7: "近7天", days30: "近30天",
    total: "总数", handled_in_grid: "网格内办结", escalated: "升级上报",
    median_accept: "签收中位时长", median_close: "结案中位时长", false_share: "误报占比",
    by_unit: "按网格", by_category: "按类别", open_count: "未结",
    returned: "退回", parked: "挂账", supervised: "督办", self_handled: "网格内自办",
    transferred: "转办/升级", review_at: "复查日期", supervised_badge: "督办",
    returned_ok: "已退回", return_reason: "退回原因",
    minutes: "分钟", seconds: "秒", hours: "小时", ago: "前", just_now: "刚刚",
    legend_ok: "无事件", firing: "告警中", cleared: "已解除",
    my_incidents: "我的事件", nothing_to_do: "暂无待办事件", location: "位置",
    back: "返回", handled_ok: "已提交处置", accepted_ok: "已签收",
    conflict: "事件已被他人更新，已刷新", error: "出错了",
    version: "版本", escalation_level: "升级层级", building: "楼栋", address: "住址",
    people: "人员", what_here: "此处", open_incidents: "未结事件",
    ev_dwell_s: "占用时长(秒)", ev_obstructed_share: "占用比例", ev_threshold: "阈值",
    ev_posture: "姿态", ev_time_down_s: "倒地时长(秒)", ev_torso_angle_deg: "躯干角度(度)",
    ev_hours_without_activity: "无活动时长(小时)", ev_window_h: "判定窗口(小时)",
    ev_pressed_at: "按下时间", ev_device_kind: "设备类型", ev_missed_heartbeats: "漏报心跳",
    video_wall: "视频墙", live_view: "实时画面", back_console: "返回控制台", layout: "画面",
    login_first: "请先登录", live_note: "实时画面，每秒最多5帧；有人观看时摄像头提高帧率",
    live_waiting: "等待画面…", live_refused: "观看人数已满，请稍后再试", live_down: "画面中断，重连中…",
    watchers: "{n}人观看", alarm_firing: "告警中", reference: "空通道基准图", ref_taken: "拍摄于 {t}",
    no_reference: "尚无基准图（视觉服务收到首帧后自动拍摄）", renew_ref: "确认当前画面为空通道",
    renew_confirm: "确认此刻的消防通道是空的？此后的占用判断将以当前画面为准。",
    renew_ok: "已更新基准图", renew_pending: "已发送，视觉服务尚未确认", renew_forbidden: "只有值班员和管理员可以更新基准图",
    no_cameras: "没有可查看的摄像头", renew_history: "更新记录",
    ev_last_activity_at: "最后活动", ev_heart_rate: "心率", ev_spo2: "血氧", ev_litres: "用水(升)",
  },
  en: {
    app_title: "Community Safety Console", worker_title: "Grid worker",
    login: "Log in", logout: "Log out", username: "Username", password: "Password",
    login_failed: "Wrong username or password", login_limited: "Too many failures; try again in {s} s",
    wall: "Incidents", map: "Site map", devices: "Devices", stats: "Statistics",
    all: "All", open_only: "Open only", category: "Category", state: "State", severity: "Severity",
    grid: "Grid", community: "Community", search: "Search", no_incidents: "No incidents match",
    live: "Live", reconnecting: "Reconnecting…", offline: "Offline",
    acknowledge: "Acknowledge", new_critical: "CRITICAL",
    ack_hint: "Unacknowledged critical incidents",
    opened: "Opened", updated: "Updated", device: "Device", subject: "Resident", zone: "Zone",
    assignee: "Assignee", evidence: "Evidence", numbers: "Why it fired", timeline: "Timeline",
    clip: "Event clip", clip_pending: "The clip is being recorded; it loads by itself…", clip_missing: "The clip is past its retention or was not recorded",
    actions: "Actions", no_actions: "No action available to you in this state",
    reason: "Reason", note: "Note", person: "Dispatch to", choose_person: "Choose a person",
    photo: "Photo", optional: "optional",
    submit: "Submit", cancel_btn: "Back", close: "Close",
    sev_critical: "Critical", sev_major: "Major", sev_minor: "Minor", sev_info: "Info",
    kind_camera: "Camera", kind_pir: "Motion", kind_door: "Door", kind_water: "Water meter",
    kind_sos: "SOS button", kind_smoke: "Smoke", kind_wearable: "Wearable", kind_gateway: "Gateway",
    online: "Online", offline_dev: "Offline", unknown: "Unknown", stale: "Silent", last_seen: "Last seen",
    readings: "Readings", range: "Range", h1: "1 h", h6: "6 h", h24: "24 h", d7: "7 days",
    no_data: "No data",
    period: "Period", today: "Today", days7: "7 days", days30: "30 days",
    total: "Total", handled_in_grid: "Handled in grid", escalated: "Escalated",
    median_accept: "Median time to accept", median_close: "Median time to close",
    false_share: "False-alarm share", by_unit: "By grid unit", by_category: "By category",
    open_count: "Open", returned: "Returned", parked: "Parked", supervised: "Supervised",
    self_handled: "Self-handled in grid", transferred: "Transferred", review_at: "Review date",
    supervised_badge: "Supervised", returned_ok: "Returned", return_reason: "Why you return it",
    minutes: "min", seconds: "s", hours: "h", ago: " ago", just_now: "just now",
    legend_ok: "No incident", firing: "Firing", cleared: "Cleared",
    my_incidents: "My incidents", nothing_to_do: "Nothing to do", location: "Location",
    back: "Back", handled_ok: "Handled", accepted_ok: "Accepted",
    conflict: "Someone else changed this incident; reloaded", error: "Error",
    version: "Version", escalation_level: "Escalation level", building: "Building", address: "Address",
    people: "People", what_here: "Here", open_incidents: "Open incidents",
    ev_dwell_s: "Dwell (s)", ev_obstructed_share: "Share of zone blocked", ev_threshold: "Threshold",
    ev_posture: "Posture", ev_time_down_s: "Time down (s)", ev_torso_angle_deg: "Torso angle (°)",
    ev_hours_without_activity: "Hours without activity", ev_window_h: "Window (h)",
    ev_pressed_at: "Pressed at", ev_device_kind: "Device kind", ev_missed_heartbeats: "Missed heartbeats",
    ev_last_activity_at: "Last activity", ev_heart_rate: "Heart rate", ev_spo2: "SpO2", ev_litres: "Litres",
    video_wall: "Video wall", live_view: "Live view", back_console: "Back to console", layout: "Layout",
    login_first: "Please log in first", live_note: "Live picture, at most 5 frames a second; the camera streams faster while watched",
    live_waiting: "Waiting for the picture…", live_refused: "Too many viewers; try again later", live_down: "Picture lost; reconnecting…",
    watchers: "{n} watching", alarm_firing: "ALARM", reference: "Empty-lane reference", ref_taken: "taken {t}",
    no_reference: "No reference yet (the vision worker takes one from the first frame)", renew_ref: "This is the empty lane now",
    renew_confirm: "Is the fire lane empty right now? Obstructions will be judged against the current picture from now on.",
    renew_ok: "Reference renewed", renew_pending: "Sent; the vision worker has not confirmed yet", renew_forbidden: "Only operators and admins may renew the reference",
    no_cameras: "No cameras to show", renew_history: "Renewals",
  },
};

let lang = localStorage.getItem("hub.lang") || "zh";

export function getLang() { return lang; }

export function setLang(l) {
  lang = DICT[l] ? l : "zh";
  localStorage.setItem("hub.lang", lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

// Labels the hub serves: { zh, en } for one key.
export function addLabels(key, labels) {
  for (const l of Object.keys(DICT)) if (labels && labels[l]) DICT[l][key] = labels[l];
}

export function has(key) { return key in DICT[lang] || key in DICT.zh; }

// A label for a data key (e.g. an evidence number), the raw key when unknown.
export function label(prefix, key) { return has(prefix + key) ? t(prefix + key) : key; }

export function t(key, vars) {
  let s = (DICT[lang] && DICT[lang][key]) ?? DICT.zh[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, v);
  return s;
}

// Fill every element carrying data-i18n (text) or data-i18n-ph (placeholder).
export function translatePage(root = document) {
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-ph]").forEach((el) => { el.placeholder = t(el.dataset.i18nPh); });
}

setLang(lang);
