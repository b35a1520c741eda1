// An incident's event clip (GET /api/incidents/{id}/clip, H.264 MP4) in a
// <video controls>, for the console's detail and the phone view. The incident names
// its clip from the moment the alarm fired, but the file comes only after the
// seconds after it were recorded and encoded: until then the route answers 404
// clip_pending, and the player asks again every RETRY_MS for a while.
import { t } from "./i18n.js";
import { esc } from "./api.js";

const RETRY_MS = 5000;
const TRIES = 30; // 2.5 minutes: the route stops saying "pending" 2 minutes after the window

export function clipUrl(inc) {
  return inc && inc.evidence && inc.evidence.clip ? `/api/incidents/${+inc.id}/clip` : null;
}

export function clipHtml(inc, cls = "") {
  const url = clipUrl(inc);
  if (!url) return "";
  return `<h3>${t("clip")}</h3><video id="evidence-clip" class="${esc(cls)}" controls preload="metadata" playsinline src="${esc(url)}"></video>
    <div class="muted" id="clip-note" hidden></div>`;
}

export function wireClip(root = document) {
  const v = root.querySelector("#evidence-clip");
  const note = root.querySelector("#clip-note");
  if (!v || !note) return;
  const url = v.getAttribute("src");
  let tries = 0;
  v.addEventListener("loadedmetadata", () => { note.hidden = true; v.hidden = false; });
  v.addEventListener("error", async () => {
    // A media error does not say why; the route's JSON does.
    let code = "";
    try {
      const r = await fetch(url, { headers: { Range: "bytes=0-0" } });
      if (!r.ok) code = ((await r.json().catch(() => ({}))).code) || "";
    } catch (e) { code = ""; }
    v.hidden = true;
    note.hidden = false;
    if (code === "clip_pending" && tries < TRIES && v.isConnected) {
      note.textContent = t("clip_pending");
      tries += 1;
      setTimeout(() => { if (v.isConnected) v.src = `${url}?try=${tries}`; }, RETRY_MS);
    } else {
      note.textContent = t("clip_missing");
    }
  });
}
