/* The side panel: answers, model round, learner, last refit, remaining rows (and how many of them
 * the ranking has seen, while not all), the audit accuracy,
 * the stop rule's verdict, the learning curve, mistakes on random checks, and labels per class.
 */
import { byIds, clearChildren } from "./dom.js";
import { confidencePct, fmtMs, isNum, objectOr, percent, plural } from "./format.js";
import { renderCurve } from "./curve.js";
import { scoredText } from "./messages.js";
import { renderMistakes } from "./mistakes.js";

const REFIT_POLL_MS = 600;

// load() resolves to GET /api/stats; labels: the project's labels, in their order; onStats(s)
// hears each stats read.
export function createPanel({ load, labels, onStats = () => {} }) {
  const el = byIds([
    "stats-total", "stats-round", "stats-learner", "stats-refit-ms", "stats-remaining", "stats-scored",
    "refitting",
    "stats-error", "per-label", "curve", "accuracy", "stop", "stop-badge", "stop-message", "stop-kappa",
    "legend-confidence", "legend-threshold", "legend-stopped", "curve-caption", "mistakes",
    "mistakes-summary", "confusion", "quality",
  ]);
  let refitPoll = null;
  const drawn = {};
  let reading = null;   // the read in flight
  let following = null; // the read asked for during it: what changed may postdate the first

  // Resolves to stats read after the call (null if the read failed), once they are drawn.
  function refresh() {
    if (!reading) {
      reading = read().finally(() => { reading = null; });
      return reading;
    }
    if (!following) following = reading.then(() => { following = null; return refresh(); });
    return following;
  }

  async function read() {
    let s;
    try {
      s = await load();
    } catch (err) {
      return null; // a stats hiccup is not worth a banner (the server being away has its own)
    }
    render(s);
    onStats(s);
    return s;
  }

  // Redraw a part only when its data changed: the panel refreshes every few seconds, and a redraw
  // would drop a tooltip the annotator is reading.
  function redraw(part, data, fn) {
    const key = JSON.stringify(data);
    if (drawn[part] === key) return;
    drawn[part] = key;
    fn();
  }

  function render(s) {
    if (!s || typeof s !== "object") return;
    el.statsTotal.textContent = s.n_annotations !== undefined ? String(s.n_annotations) : "–";
    el.statsRound.textContent = s.model_round !== undefined ? String(s.model_round) : "–";
    el.statsLearner.textContent = s.learner ? String(s.model) + ": " + String(s.learner) :
      (s.model ? String(s.model) + " (no model yet)" : "–");
    el.statsRefitMs.textContent = fmtMs(s.last_refit_ms);
    if (s.n_remaining !== undefined && s.n_remaining !== null) {
      clearChildren(el.statsRemaining);
      el.statsRemaining.appendChild(document.createTextNode(String(s.n_remaining)));
      if (s.n_pool !== undefined && s.n_pool !== null) {
        const of = document.createElement("span");
        of.className = "of";
        of.textContent = " / " + String(s.n_pool);
        el.statsRemaining.appendChild(of);
      }
    }
    const scored = scoredText(s);
    el.statsScored.textContent = scored || "";
    el.statsScored.hidden = !scored;
    el.refitting.hidden = !s.refitting;
    if (s.refitting && !refitPoll && document.visibilityState === "visible") {
      // Follow a running refit closely so the new round shows up without waiting for the tick.
      refitPoll = setTimeout(() => { refitPoll = null; refresh(); }, REFIT_POLL_MS);
    }
    if (s.last_error) {
      el.statsError.textContent = "Last refit failed: " + String(s.last_error);
      el.statsError.hidden = false;
    } else {
      el.statsError.textContent = "";
      el.statsError.hidden = true;
    }
    const history = Array.isArray(s.history) ? s.history : [];
    const est = objectOr(s.estimate);
    redraw("perLabel", [labels, s.per_label], () => renderPerLabel(objectOr(s.per_label) || {}));
    redraw("accuracy", [s.audit, s.model_round > 0, est], () => renderAccuracy(s));
    redraw("stop", s.stop, () => renderStop(s));
    redraw("caption", [s.stop, est && est.confidence], () => renderCaption(s));
    redraw("curve", [history, s.stop, est && est.confidence],
      () => renderCurve(el.curve, el.legendStopped, history, s));
    redraw("mistakes", est, () => renderMistakes(el, est));
  }

  function renderPerLabel(perLabel) {
    const names = (labels || []).map(String);
    Object.keys(perLabel).forEach((k) => { if (names.indexOf(k) === -1) names.push(k); });
    let max = 0;
    names.forEach((n) => { max = Math.max(max, Number(perLabel[n]) || 0); });
    clearChildren(el.perLabel);
    names.forEach((name) => {
      const count = Number(perLabel[name]) || 0;
      const row = document.createElement("div");
      row.className = "per-label-row";
      row.dataset.label = name;
      const label = document.createElement("span");
      label.className = "per-label-name";
      label.textContent = name;
      label.title = name;
      const track = document.createElement("span");
      track.className = "per-label-track";
      const bar = document.createElement("span");
      bar.className = "per-label-bar";
      bar.style.width = (max > 0 ? (100 * count) / max : 0) + "%";
      track.appendChild(bar);
      const c = document.createElement("span");
      c.className = "per-label-count";
      c.textContent = String(count);
      row.appendChild(label);
      row.appendChild(track);
      row.appendChild(c);
      el.perLabel.appendChild(row);
    });
  }

  // Accuracy is only ever the audit estimate. Audit tasks are drawn uniformly from the open rows
  // and the model's prediction is recorded before the answer, so their hit rate is unbiased; no
  // other number on the page is called accuracy.
  function renderAccuracy(s) {
    const est = objectOr(s.estimate);
    const n = est && isNum(est.n) ? Number(est.n) : 0;
    const nAll = est && isNum(est.n_audit) ? Number(est.n_audit) : n;
    const share = isNum(s.audit) ? Number(s.audit) : null;
    clearChildren(el.accuracy);
    el.accuracy.classList.toggle("has-estimate", !!(est && n > 0 && isNum(est.accuracy)));
    if (est && n > 0 && isNum(est.accuracy)) {
      const value = document.createElement("strong");
      value.className = "accuracy-value";
      value.textContent = percent(est.accuracy);
      el.accuracy.appendChild(value);
      let text = "";
      if (isNum(est.low) && isNum(est.high)) {
        text += " (" + confidencePct(est) + "% interval " + Math.round(Number(est.low) * 100) + "–" +
          percent(est.high) + ")";
      }
      text += n < nAll ? " from the latest " + n + " of " + nAll + " random checks"
        : " from " + plural(n, "random check", "random checks");
      if (share !== null && share <= 0) text += "; random checks are off now, so it will not change";
      el.accuracy.appendChild(document.createTextNode(text));
      return;
    }
    let msg;
    if (share === null) {
      msg = "No random checks answered yet.";
    } else if (share <= 0) {
      msg = "Random checks are off (audit share 0), so there is no honest accuracy estimate.";
    } else {
      const every = share >= 1 ? "every task is one" : "about 1 in " + Math.max(1, Math.round(1 / share)) +
        " tasks is one";
      msg = Number(s.model_round) > 0 ? "No random checks answered yet; " + every + "."
        : "No random checks yet: they start with the first model; then " + every + ".";
    }
    el.accuracy.textContent = msg;
  }

  // The stop rule's verdict, its message shown as the server wrote it.
  function renderStop(s) {
    const stop = objectOr(s.stop);
    const suggested = !!(stop && stop.suggested === true);
    el.stopMessage.textContent = stop && stop.message ? String(stop.message) : "–";
    el.stop.classList.toggle("suggested", suggested);
    el.stopBadge.hidden = !suggested;
    if (stop && isNum(stop.kappa)) {
      el.stopKappa.textContent = "Last round's predictions agree " + Number(stop.kappa).toFixed(3) +
        " with the round before (kappa).";
      el.stopKappa.hidden = false;
    } else {
      el.stopKappa.textContent = "";
      el.stopKappa.hidden = true;
    }
  }

  function renderCaption(s) {
    const stop = objectOr(s.stop);
    const threshold = stop && isNum(stop.threshold) ? String(Number(stop.threshold)) : "0.99";
    const nRounds = stop && isNum(stop.window) ? Number(stop.window) : 3;
    const conf = confidencePct(objectOr(s.estimate));
    el.legendConfidence.textContent = String(conf);
    el.legendThreshold.textContent = threshold;
    el.curveCaption.textContent = "Accuracy: share of random checks (random rows still to label) the model " +
      "got right, with its " + conf + "% interval. Kappa: agreement of each round's predictions with the round before on a fixed sample; " +
      "stopping is suggested when it stays above " + threshold +
      (nRounds > 1 ? " (its mean over the last " + nRounds + " rounds)." : ".");
  }

  return { refresh };
}
