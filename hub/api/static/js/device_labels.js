// What the device page and statistics say about readings and health, in both
// languages: the names and units of the metrics devices report, the health filters,
// and the statistics' own words. Kept out of i18n.js so the tabs that use them own them.
import { addLabels, t } from "./i18n.js";

// metric: [zh, en, unit]. A metric not listed shows its own name (a new device type
// is still charted, only less kindly).
const METRICS = {
  heart_rate: ["心率", "Heart rate", "bpm"], spo2: ["血氧", "SpO₂", "%"],
  body_temp: ["体温", "Body temperature", "°C"], battery: ["电量", "Battery", "%"],
  linkquality: ["信号质量", "Link quality", "LQI"], temperature: ["温度", "Temperature", "°C"],
  humidity: ["湿度", "Humidity", "%"], flow_l: ["用水量", "Water use", "L"],
  flow: ["用水量", "Water use", "L/min"], steps: ["步数", "Steps", ""],
  motion: ["活动", "Motion", ""], contact: ["门磁", "Contact", ""], smoke: ["烟雾", "Smoke", ""],
  voltage: ["电压", "Voltage", "V"], lqi: ["信号质量", "Link quality", "LQI"],
};
for (const [k, [zh, en]] of Object.entries(METRICS)) addLabels("metric_" + k, { zh, en });

const WORDS = {
  dev_search: ["搜索编号、名称、楼栋、类型", "Search id, name, building, type"],
  dev_kind: ["类型", "Type"], dev_health: ["健康", "Health"], dev_building: ["楼栋", "Building"],
  h_online: ["在线", "Online"], h_offline: ["离线", "Offline"], h_stale: ["失联", "Silent"],
  h_battery_low: ["电量低", "Battery low"], h_weak_link: ["信号弱", "Weak link"],
  h_tamper: ["被拆动", "Tamper"], dev_none: ["没有符合条件的设备", "No device matches"],
  dev_shown: ["显示 {n} / {all} 台", "{n} of {all} shown"], dev_problems: ["设备问题", "Problems"],
  dev_recent: ["最近事件", "Recent incidents"], dev_latest: ["最新读数", "Latest readings"],
  dev_heartbeat: ["心跳周期", "Heartbeat"], threshold: ["阈值", "Threshold"],
  stats_trend: ["事件趋势（按类别）", "Incidents over time, by category"],
  trend_day: ["按天", "Per day"], trend_week: ["按周", "Per week"],
  export_csv: ["导出 CSV", "Export CSV"], export_xlsx: ["导出 Excel", "Export Excel"],
  open_in_grid: ["未结（未升级）", "Open, not escalated"], cancelled_false: ["误报作废", "False alarms"],
  escalated_kept: ["升级上报", "Escalated"],
  flapped: ["告警反复 {n} 次", "Alarm flapped {n} times"], linked_to: ["与事件 {id} 关联", "Linked to incident {id}"],
};
for (const [k, [zh, en]] of Object.entries(WORDS)) addLabels(k, { zh, en });

export function metricLabel(m) { return METRICS[m] ? t("metric_" + m) : m; }
export function metricUnit(m) { return METRICS[m] ? METRICS[m][2] : ""; }
