// An incident's timeline as the operator reads it: an alarm that keeps clearing and
// firing again (a person moving in and out of view, a sensor on its threshold) writes
// a pair of rows per cycle; a run of those is shown as one expandable row
// "告警反复 12 次 (10:01–10:04)". A link to a related incident is a link.
import { t } from "./i18n.js";
import { esc, fmtTime } from "./api.js";

// A run shorter than this is left as it is: two cycles read fine row by row.
export const MIN_FLAP_ROWS = 4;

// The engine's rows of one firing cycle: the alarm cleared, or fired again.
function isFlapRow(a) {
  if (a.actor !== "engine" || a.from_state !== a.to_state) return false;
  return a.action === "clear" || (a.action === "comment" && !!(a.data && a.data.alarm_ts) && !(a.data && a.data.assignee));
}

// [entry | {flap: [entries]}] in the order given.
export function collapseFlaps(tl) {
  const out = [];
  let run = [];
  const flush = () => {
    if (run.length >= MIN_FLAP_ROWS && run.some((a) => a.action === "clear")) out.push({ flap: run });
    else out.push(...run);
    run = [];
  };
  for (const a of tl) {
    if (isFlapRow(a)) run.push(a);
    else { flush(); out.push(a); }
  }
  flush();
  return out;
}

function hhmm(iso) {
  const d = new Date(iso);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// A row: render(entry) gives one <li>'s inner HTML.
export function timelineHtml(tl, render) {
  const rows = collapseFlaps(tl).map((x) => {
    if (!x.flap) return `<li>${render(x)}</li>`;
    // The alarms' own times: the rows' times are when the hub wrote them, the same
    // second for a backlog the hub caught up on.
    const times = x.flap.map((a) => (a.data && a.data.alarm_ts) || a.at).sort((p, q) => new Date(p) - new Date(q));
    const n = x.flap.filter((a) => a.action === "clear").length;
    return `<li class="flap" data-flap-rows="${x.flap.length}"><details><summary><b>${esc(t("flapped", { n }))}</b>
      <span class="when">(${esc(hhmm(times[0]))}–${esc(hhmm(times[times.length - 1]))})</span></summary>
      <ul class="timeline">${x.flap.map((a) => `<li>${render(a)}</li>`).join("")}</ul></details>
      <div class="when">${esc(fmtTime(times[0]))}</div></li>`;
  });
  return `<ul class="timeline">${rows.join("")}</ul>`;
}

// The reason of a row: a related incident's number is a link that opens it.
export function reasonHtml(a) {
  const rel = a.data && (a.data.group_id || a.data.related_id);
  if (a.action === "group" && rel) {
    return `<div><a href="#incident-${+rel}" class="incident-link" data-open-incident="${+rel}">${esc(t("linked_to", { id: +rel }))}</a></div>`;
  }
  return a.reason ? `<div>${esc(a.reason)}</div>` : "";
}
