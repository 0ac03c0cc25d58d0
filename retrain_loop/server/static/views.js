/* The card and the top bar: a task in its view (colour, record or image), its labels and the
 * model's guess, the empty states, the unsaved count, the error banner and the hint line.
 */
import { byIds, clearChildren } from "./dom.js";
import { isAudit, modelGuess, taskMeta } from "./tasks.js";

// Engine bookkeeping that a record view does not show (besides fields starting with "_").
const META_KEYS = new Set(["options", "accept", "meta", "answer"]);
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
    "image", "guess", "labels", "undo", "hint", "done", "done-undo",
  ]);
  let hintTimer = null;

  el.errorDismiss.addEventListener("click", clearError);
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

  function renderRecord(task) {
    clearChildren(el.recordBody);
    Object.keys(task).forEach((key) => {
      if (key.charAt(0) === "_" || META_KEYS.has(key)) return;
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

  function renderLabels(options) {
    clearChildren(el.labels);
    options.forEach((opt, i) => {
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "label";
      btn.dataset.label = opt.id;
      if (i < 9) {
        const key = document.createElement("span");
        key.className = "key";
        key.textContent = String(i + 1);
        btn.appendChild(key);
        btn.title = "press " + (i + 1);
      }
      const text = document.createElement("span");
      text.className = "label-text";
      text.textContent = opt.text;
      btn.appendChild(text);
      btn.addEventListener("click", () => onPick(opt.id));
      el.labels.appendChild(btn);
    });
  }

  function renderGuess(task) {
    const meta = taskMeta(task);
    el.guess.dataset.source = meta.source !== undefined && meta.source !== null ? String(meta.source) : "";
    el.guess.classList.remove("has-model", "audit");
    if (isAudit(task)) {
      el.guess.textContent = "Random check: the model's guess is hidden so it can't sway you.";
      el.guess.classList.add("audit");
      return;
    }
    const guess = modelGuess(task);
    if (guess === null) {
      el.guess.textContent = "no model yet";
      return;
    }
    let text = "model: " + guess;
    const p = Number(meta.p);
    if (meta.p !== undefined && meta.p !== null && isFinite(p)) text += " " + Math.round(p * 100) + "%";
    el.guess.textContent = text;
    el.guess.classList.add("has-model");
  }

  function showSelection(selected) {
    el.labels.querySelectorAll("button.label").forEach((btn) => {
      const on = btn.dataset.label === selected;
      btn.classList.toggle("selected", on);
      btn.setAttribute("aria-pressed", on ? "true" : "false");
    });
  }

  // view: the project's view ("colour", "image", else a record); options: from tasks.optionsFor.
  function showTask(task, { view, options, selected, canUndo }) {
    el.loading.hidden = true;
    el.done.hidden = true;
    el.task.hidden = false;
    el.swatchWrap.hidden = true;
    el.record.hidden = true;
    el.imageWrap.hidden = true;
    if (view === "colour" || view === "color") renderColour(task);
    else if (view === "image") renderImage(task);
    else renderRecord(task);
    renderLabels(options);
    renderGuess(task);
    showSelection(selected);
    el.undo.disabled = !canUndo;
    document.body.dataset.ready = "1";
  }

  // No task on screen: either all is done (done), or more are on the way or being retried (failed).
  function showEmpty({ done, failed, canUndo }) {
    el.loading.hidden = true;
    el.task.hidden = true;
    if (done) {
      el.done.hidden = false;
      el.doneUndo.disabled = !canUndo;
      document.body.dataset.ready = "1";
    } else {
      el.done.hidden = true;
      showLoading(failed ? "Could not load tasks; retrying…" : "Loading tasks…");
    }
  }

  return {
    showProject, showSession, showUnsaved, showLoading, showError, clearError, flashHint, clearHint,
    showTask, showEmpty, showSelection,
  };
}
