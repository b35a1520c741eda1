// What the hub says about incident categories and the incident lifecycle
// (GET /api/meta, from hub/categories.py and hub/alerts/lifecycle.py), loaded once
// after login. The pages hold no copy of the category list, the states or which
// actions a state allows: a category a plug-in registers shows up with its labels.
import { api } from "./api.js";
import { addLabels, getLang, label } from "./i18n.js";

let M = { categories: [], lifecycle: { states: [], transitions: [], actions: {} }, severities: [] };
let byCat = new Map();
let byState = new Map();

export async function loadMeta() {
  M = await api("/api/meta");
  byCat = new Map(M.categories.map((c) => [c.code, c]));
  byState = new Map(M.lifecycle.states.map((s) => [s.code, s]));
  for (const c of M.categories) addLabels("cat_" + c.code, c.labels);
  for (const s of M.lifecycle.states) addLabels("st_" + s.code, s.labels);
  for (const [a, l] of Object.entries(M.lifecycle.actions)) addLabels("act_" + a, l);
  return M;
}

export function categories() { return M.categories; }
export function category(code) { return byCat.get(code); }
export function states() { return M.lifecycle.states; }
export function severities() { return M.severities; }
// The escalation chain's named levels, and how often the console reminds.
export function escalationLevels() { return M.escalation_levels || []; }
export function reminderSeconds() { return (M.console && M.console.reminder_s) || 120; }

// The actions people may take from a state (a role may allow fewer: me.actions).
export function stateActions(state) { return (byState.get(state) || { actions: [] }).actions; }

// Whether an action needs a reason (or note) and an assignee.
export function transition(action) {
  return M.lifecycle.transitions.find((t) => t.action === action) || { needs_reason: false, needs_assignee: false };
}

// The state a new incident starts in (the one an operator must look at).
export function isInitial(state) { const s = byState.get(state); return Boolean(s && s.initial); }

// The label of one evidence number of an incident: its category's own (two
// categories may mean different things by "threshold"), else the console's.
export function evidenceLabel(code, key) {
  const own = (byCat.get(code) || {}).evidence_labels || {};
  return own[key] ? own[key][getLang()] || own[key].zh : label("ev_", key);
}

// A state the hub does not describe (an old page against a newer hub) counts as
// open, so an incident never silently drops off the wall.
export function isOpen(state) { const s = byState.get(state); return s ? s.open : true; }

function escAttr(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// A category's badge: its icon and label, edged in its colour. A code no longer
// registered shows as itself.
export function categoryBadge(code) {
  const c = byCat.get(code);
  const text = label("cat_", code);
  if (!c) return `<span class="badge cat" data-category="${escAttr(code)}">${escAttr(text)}</span>`;
  return `<span class="badge cat" data-category="${escAttr(code)}" style="border-color:${escAttr(c.colour)}"><span class="cat-icon" aria-hidden="true">${escAttr(c.icon)}</span> ${escAttr(text)}</span>`;
}
