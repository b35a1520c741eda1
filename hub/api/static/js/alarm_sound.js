// The console's alarm tone as an <audio> element, so that the browser's answer to
// play() says whether sound is allowed: after a reload without a click the promise
// is rejected (autoplay policy) and the page shows "click to enable sound" instead
// of pretending to ring. state: "idle" | "playing" | "blocked" | "error".

// Three short beeps (880/660 Hz) then silence, 2.5 s, looped for as long as the
// alarm stands. A file of the page's own origin: the console's CSP allows no blob:.
const TONE = "/static/audio/alarm.wav";

export class AlarmSound {
  constructor(onState) {
    this.onState = onState;
    this.audio = new Audio(TONE);
    this.audio.loop = true;
    this.wanted = false;
    this.state = "idle";
  }
  _set(s) { if (s !== this.state) { this.state = s; this.onState(s); } }
  // Ring (again); a rejected play() means the browser wants a click first.
  start() {
    this.wanted = true;
    this.audio.currentTime = 0;
    return this.audio.play().then(() => this._set(this.wanted ? "playing" : "idle"), (e) => {
      // NotAllowedError: the autoplay policy wants a click; anything else is a fault
      // (no audio device, file missing), shown as such rather than as "click".
      if (this.wanted) this._set(e && e.name === "NotAllowedError" ? "blocked" : "error");
    });
  }
  stop() {
    this.wanted = false;
    this.audio.pause();
    this._set("idle");
  }
  // Called from a click: the gesture the browser waits for.
  unlock() { if (this.wanted) return this.start(); return Promise.resolve(); }
}
