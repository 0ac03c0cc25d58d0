/* The card and the top bar: a task in its view (colour, record or image), its labels with their
 * keys or its yes/no question, the model's guess, the empty states, the unsaved count, the error
 * banner, the hint and keys lines, and the announcement of each task to screen readers.
 */
import { byIds, clearChildren } from "./dom.js";
import { BINARY_KEYS } from "./keys.js";
import { isAudit, modelGuess, recordFields, taskMeta } from "./tasks.js";

const HINT_MS = 2500;

function clampChannel(v) {
  const n = Number(v);
  if (!isFinite(n)) return null;
  return Math.max(0, Math.min(255, Math.round(n)));
}

function toHex(r, g, b) {
  return "#" + [r, g, b].map((c) => c.toString(16).padStart(2, "0")).join("");
}

// onPick(labelId) is called when a label button is clicked.
export function createViews({ onPick }) {
  const el = byIds([
    "dataset", "model-info", "session", "unsaved", "error-banner", "error-text", "error-dismiss",
    "loading", "task", "swatch-wrap", "swatch", "swatch-hex", "record", "record-body", "image-wrap",
    "image", "guess", "labels", "undo", "hint", "done", "done-undo", "done-title", "question",
    "question-label", "accept-keys", "reject", "skip-text", "keys-help", "announce", "action-bar",
  ]);
  let hintTimer = null;

  el.errorDismiss.addEventListener("click", clearError);
  // The action bar is stuck at the bottom of the window when its bottom edge is cut off: then a
  // line and a shadow set it apart from the record scrolling under it.
  if (typeof IntersectionObserver !== "undefined") {
    new IntersectionObserver(([e]) => {
      el.actionBar.classList.toggle("stuck", e.intersectionRatio > 0 &&
        e.intersectionRect.bottom < e.boundingClientRect.bottom);
    }, { threshold: [0, 1] }).observe(el.actionBar);
  }
  el.image.addEventListener("load", () => {
    const tiny = el.image.naturalWidth > 0 && el.image.naturalWidth <= 64 && el.image.naturalHeight <= 64;
    el.image.classList.toggle("tiny", tiny);
  });

  // ---- top bar, banner, hint

  function showProject(p) {
    el.dataset.textContent = p.dataset !== undefined ? String(p.dataset) : "";
    document.title = (p.dataset !== undefined ? String(p.dataset) + " · " : "") + "retrain-loop";
    el.modelInfo.textContent = [p.model, p.strategy].filter(Boolean).map(String).join(" · ");
  }

  function showSession(session) { el.session.textContent = session; }

  function showUnsaved(n) {
    el.unsaved.textContent = n + " unsaved";
    el.unsaved.classList.toggle("has-unsaved", n > 0);
  }

  function showLoading(text) {
    el.loading.hidden = false;
    el.loading.textContent = text;
  }

  function showError(message) {
    el.errorText.textContent = message;
    el.errorBanner.hidden = false;
  }

  function clearError() {
    el.errorText.textContent = "";
    el.errorBanner.hidden = true;
  }

  function flashHint(message) {
    el.hint.textContent = message;
    el.hint.classList.remove("flash");
    void el.hint.offsetWidth; // restart the animation
    el.hint.classList.add("flash");
    if (hintTimer) clearTimeout(hintTimer);
    hintTimer = setTimeout(() => { el.hint.textContent = ""; el.hint.classList.remove("flash"); }, HINT_MS);
  }

  function clearHint() { el.hint.textContent = ""; }

  // ---- the task's view

  function renderColour(task) {
    const r = clampChannel(task.r), g = clampChannel(task.g), b = clampChannel(task.b);
    let label = "";
    el.swatch.style.backgroundColor = "";
    if (r !== null && g !== null && b !== null) {
      el.swatch.style.backgroundColor = "rgb(" + r + ", " + g + ", " + b + ")";
      label = typeof task.hex === "string" && task.hex ? task.hex : toHex(r, g, b);
    } else {
      const colour = typeof task.hex === "string" && task.hex ? task.hex
        : (typeof task.color === "string" ? task.color : (typeof task.colour === "string" ? task.colour : ""));
      // CSSOM assignment only ever parses a colour value; invalid strings are ignored.
      el.swatch.style.backgroundColor = colour;
      label = colour;
    }
    el.swatchHex.textContent = label;
    el.swatch.setAttribute("aria-label", "colour " + label);
    el.swatchWrap.hidden = false;
  }

  function renderRecord(task, binary) {
    clearChildren(el.recordBody);
    recordFields(task, { binary: binary !== null }).forEach((key) => {
      const value = task[key];
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = key;
      const td = document.createElement("td");
      if (value === null || value === undefined) td.textContent = "";
      else if (typeof value === "object") td.textContent = JSON.stringify(value);
      else td.textContent = String(value);
      tr.appendChild(th);
      tr.appendChild(td);
      el.recordBody.appendChild(tr);
    });
    el.record.hidden = false;
  }

  function renderImage(task) {
    const value = task.image === undefined || task.image === null ? "" : String(task.image);
    if (value.indexOf("data:image/") === 0) el.image.src = value;
    else el.image.src = "/api/image?path=" + encodeURIComponent(value);
    el.image.alt = task.id !== undefined ? "item " + String(task.id) : "item to label";
    el.imageWrap.hidden = false;
  }

  // keys: the key of each option (null: none), from keys.optionKeys.
  function renderLabels(options, keys) {
    clearChildren(el.labels);
    options.forEach((opt, i) => {
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "label";
      btn.dataset.label = opt.id;
      if (keys[i]) {
        const key = document.createElement("kbd");
        key.className = "key";
        key.textContent = keys[i];
        btn.appendChild(key);
        btn.title = "press " + keys[i];
        btn.setAttribute("aria-keyshortcuts", keys[i]);
      }
      const text = document.createElement("span");
      text.className = "label-text";
      text.textContent = opt.text;
      btn.appendChild(text);
      btn.addEventListener("click", () => onPick(opt.id));
      el.labels.appendChild(btn);
    });
  }

  // A yes/no question about one label, or the labels to choose from.
  function renderQuestion(binary, options, keys) {
    el.question.hidden = binary === null;
    el.labels.hidden = binary !== null;
    el.reject.hidden = binary === null;
    el.skipText.textContent = binary === null ? "Skip" : "Ignore";
    clearChildren(el.acceptKeys);
    (binary === null ? ["Enter"] : [BINARY_KEYS.accept, "Enter"]).forEach((k) => {
      el.acceptKeys.appendChild(document.createElement("kbd")).textContent = k;
    });
    if (binary !== null) {
      el.questionLabel.textContent = binary;
      clearChildren(el.labels);
    } else {
      renderLabels(options, keys);
    }
  }

  function renderGuess(task, binary) {
    const meta = taskMeta(task);
    el.guess.dataset.source = meta.source !== undefined && meta.source !== null ? String(meta.source) : "";
    el.guess.classList.remove("has-model", "audit");
    if (isAudit(task)) {
      el.guess.textContent = "Random check: the model's guess is hidden so it can't sway you.";
      el.guess.classList.add("audit");
      return;
    }
    const guess = modelGuess(task);
    if (guess === null && binary === null) {
      el.guess.textContent = "no model yet";
      return;
    }
    const p = Number(meta.p);
    const pct = meta.p !== undefined && meta.p !== null && isFinite(p) ? Math.round(p * 100) + "%" : null;
    // On a yes/no question the guess is the question; only its confidence is news.
    if (binary !== null) el.guess.textContent = "the model's guess" + (pct ? ", " + pct + " sure" : "");
    else el.guess.textContent = "model: " + guess + (pct ? " " + pct : "");
    el.guess.classList.add("has-model");
  }

  function showSelection(selected) {
    el.labels.querySelectorAll("button.label").forEach((btn) => {
      const on = btn.dataset.label === selected;
      btn.classList.toggle("selected", on);
      btn.setAttribute("aria-pressed", on ? "true" : "false");
    });
  }

  /**
   * view: the project's view ("colour", "image", else a record); options: from tasks.optionsFor,
   * keys: their keys; binary: the label of a yes/no question, else null; announce: the line for
   * screen readers, given only when the task is new on screen.
   */
  function showTask(task, { view, options, keys, binary = null, selected, canUndo, announce }) {
    el.loading.hidden = true;
    el.done.hidden = true;
    el.task.hidden = false;
    el.swatchWrap.hidden = true;
    el.record.hidden = true;
    el.imageWrap.hidden = true;
    if (view === "colour" || view === "color") renderColour(task);
    else if (view === "image") renderImage(task);
    else renderRecord(task, binary);
    renderQuestion(binary, options, keys);
    renderGuess(task, binary);
    showSelection(selected);
    el.undo.disabled = !canUndo;
    if (announce) el.announce.textContent = announce;
    document.body.dataset.ready = "1";
  }

  // No task on screen: either all is done (done, with its title), or more are on the way or being
  // retried (failed).
  function showEmpty({ done, failed, canUndo, title }) {
    el.loading.hidden = true;
    el.task.hidden = true;
    if (done) {
      if (el.doneTitle.textContent !== title) el.doneTitle.textContent = title;
      el.done.hidden = false;
      el.doneUndo.disabled = !canUndo;
      document.body.dataset.ready = "1";
    } else {
      el.done.hidden = true;
      showLoading(failed ? "Could not load tasks; retrying…" : "Loading tasks…");
    }
  }

  // The keys line, from keys.keysHelp: each key a <kbd>, "…" as text.
  function showKeysHelp(parts) {
    clearChildren(el.keysHelp);
    el.keysHelp.appendChild(document.createTextNode("Keys: "));
    parts.forEach((part, i) => {
      if (i > 0) el.keysHelp.appendChild(document.createTextNode(" · "));
      part.keys.forEach((k, j) => {
        if (j > 0) el.keysHelp.appendChild(document.createTextNode(part.join));
        if (k === "…") el.keysHelp.appendChild(document.createTextNode(k));
        else el.keysHelp.appendChild(document.createElement("kbd")).textContent = k;
      });
      el.keysHelp.appendChild(document.createTextNode(" " + part.text));
    });
  }

  function announce(text) { el.announce.textContent = text; }

  return {
    showProject, showKeysHelp, announce, showSession, showUnsaved, showLoading, showError, clearError, flashHint, clearHint,
    showTask, showEmpty, showSelection,
  };
}
