/* retrain-loop annotation page.
 *
 * Plain JS, no dependencies, CSP-friendly: no inline code, no innerHTML with data. Every value that
 * comes from the data is written with textContent / createElement / setAttribute.
 *
 * Flow: fetch tasks into a local queue (prefetching when fewer than half a batch remains), show one
 * at a time, collect answers in an outbox (mirrored in localStorage so a reload or a crash loses
 * nothing), POST the outbox when it holds a batch, on "Save", and when the page is hidden.
 */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var STATS_EVERY_MS = 3000;
  var HISTORY_MAX = 200;
  var KEEPALIVE_MAX_BYTES = 60000; // browsers cap keepalive bodies at 64 KiB
  var POST_MAX_ANSWERS = 500;      // the server takes at most 1000 answers per request
  var SESSION_RE = /^[A-Za-z0-9_.@-]{1,64}$/; // what the server accepts as a session name
  var META_KEYS = { options: true, accept: true, meta: true, answer: true };

  var state = {
    project: null,
    session: null,
    batchSize: 10,
    queue: [],            // tasks fetched but not shown yet
    current: null,        // task on screen
    selected: null,       // label id selected for the current task
    history: [],          // [{task, entry, selected}] for undo, newest last
    outbox: [],           // answer entries not yet stored by the server
    seen: new Set(),      // task keys fetched/shown/answered on this page
    fetching: false,      // a POST /api/questions is in flight
    fetchFailed: false,   // the last POST /api/questions failed
    firstFetch: true,     // the first fetch carries fresh=1
    exhausted: false,     // the last fetch brought nothing new
    posting: false,       // a POST /api/answers is in flight
    pendingPosts: 0,
    flushAgain: false,    // a flush was asked for while one was in flight
    flushKeepalive: false,
    statsTimer: null,
    statsBusy: false,
    refitPoll: null,
    lastPostError: null,
  };

  var el = {};

  function $(id) { return document.getElementById(id); }

  // ---------------------------------------------------------------- helpers

  function taskKey(task) {
    if (task && task._task_hash !== undefined && task._task_hash !== null) {
      return "t:" + String(task._task_hash);
    }
    if (task && task.id !== undefined) return "i:" + String(task.id);
    return "j:" + JSON.stringify(task);
  }

  function clearChildren(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function randomSuffix(n) {
    var chars = "abcdefghijklmnopqrstuvwxyz0123456789";
    var out = "";
    var bytes = new Uint8Array(n);
    if (window.crypto && window.crypto.getRandomValues) {
      window.crypto.getRandomValues(bytes);
    } else {
      for (var i = 0; i < n; i++) bytes[i] = Math.floor(Math.random() * 256);
    }
    for (var j = 0; j < n; j++) out += chars[bytes[j] % chars.length];
    return out;
  }

  function storageGet(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }

  function storageSet(key, value) {
    try { window.localStorage.setItem(key, value); return true; } catch (e) { return false; }
  }

  function storageRemove(key) {
    try { window.localStorage.removeItem(key); } catch (e) { /* ignore */ }
  }

  function resolveSession() {
    var fromUrl = new URLSearchParams(window.location.search).get("session");
    if (fromUrl && fromUrl.trim()) return fromUrl.trim();
    var stored = storageGet("retrain_loop.session");
    if (stored) return stored;
    var made = "annotator-" + randomSuffix(4);
    storageSet("retrain_loop.session", made);
    return made;
  }

  function outboxKey() {
    return "retrain_loop.outbox." + String(state.project.dataset) + "." + state.session;
  }

  function persistOutbox() {
    if (state.outbox.length === 0) {
      storageRemove(outboxKey());
    } else {
      storageSet(outboxKey(), JSON.stringify(state.outbox));
    }
  }

  function restoreOutbox() {
    var raw = storageGet(outboxKey());
    if (!raw) return;
    try {
      var items = JSON.parse(raw);
      if (Array.isArray(items)) {
        items.forEach(function (item) {
          if (item && typeof item === "object" && item._task_hash !== undefined && item.answer) {
            state.outbox.push(item);
            state.seen.add(taskKey(item));
          }
        });
      }
    } catch (e) {
      storageRemove(outboxKey());
    }
  }

  // FastAPI sends {"detail": "text"} or, for validation errors, {"detail": [{loc, msg}, ...]}.
  function describeDetail(detail) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map(function (d) {
        if (d && typeof d === "object" && d.msg !== undefined) {
          var loc = Array.isArray(d.loc) ? d.loc.filter(function (x) { return x !== "body"; }).join(".") : "";
          return (loc ? loc + ": " : "") + String(d.msg);
        }
        return JSON.stringify(d);
      }).join("; ");
    }
    return JSON.stringify(detail);
  }

  async function errorText(response) {
    var text = response.status + " " + (response.statusText || "");
    try {
      var body = await response.text();
      if (body) {
        try {
          var parsed = JSON.parse(body);
          text += ": " + describeDetail(parsed && parsed.detail !== undefined ? parsed.detail : parsed);
        } catch (e) {
          text += ": " + body.slice(0, 300);
        }
      }
    } catch (e) { /* body unreadable */ }
    return text.trim();
  }

  async function postJSON(url, body) {
    var response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
    });
    if (!response.ok) throw new Error("POST " + url + " failed: " + (await errorText(response)));
    return response.json();
  }

  async function getJSON(url) {
    var response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!response.ok) throw new Error("GET " + url.split("?")[0] + " failed: " + (await errorText(response)));
    return response.json();
  }

  // ---------------------------------------------------------------- banner / hint

  function showError(message) {
    el.errorText.textContent = message;
    el.errorBanner.hidden = false;
  }

  function clearError() {
    el.errorText.textContent = "";
    el.errorBanner.hidden = true;
  }

  var hintTimer = null;
  function flashHint(message) {
    el.hint.textContent = message;
    el.hint.classList.remove("flash");
    void el.hint.offsetWidth; // restart the animation
    el.hint.classList.add("flash");
    if (hintTimer) clearTimeout(hintTimer);
    hintTimer = setTimeout(function () { el.hint.textContent = ""; el.hint.classList.remove("flash"); }, 2500);
  }

  // ---------------------------------------------------------------- rendering a task

  function optionsFor(task) {
    if (Array.isArray(task.options) && task.options.length) {
      return task.options.map(function (o) {
        if (o && typeof o === "object") {
          var id = o.id !== undefined ? String(o.id) : String(o.text);
          return { id: id, text: o.text !== undefined ? String(o.text) : id };
        }
        return { id: String(o), text: String(o) };
      });
    }
    return (state.project.labels || []).map(function (l) { return { id: String(l), text: String(l) }; });
  }

  function taskMeta(task) {
    return task && task.meta && typeof task.meta === "object" ? task.meta : {};
  }

  // An audit task is a random check: its answer measures the model, so the model's prediction is
  // neither shown nor preselected, whatever the task carries.
  function isAudit(task) {
    return taskMeta(task).source === "audit";
  }

  function modelGuess(task) {
    if (isAudit(task)) return null;
    if (Array.isArray(task.accept) && task.accept.length) return String(task.accept[0]);
    return null;
  }

  function clampChannel(v) {
    var n = Number(v);
    if (!isFinite(n)) return null;
    return Math.max(0, Math.min(255, Math.round(n)));
  }

  function toHex(r, g, b) {
    return "#" + [r, g, b].map(function (c) { return c.toString(16).padStart(2, "0"); }).join("");
  }

  function renderColour(task) {
    var r = clampChannel(task.r), g = clampChannel(task.g), b = clampChannel(task.b);
    var label = "";
    el.swatch.style.backgroundColor = "";
    if (r !== null && g !== null && b !== null) {
      el.swatch.style.backgroundColor = "rgb(" + r + ", " + g + ", " + b + ")";
      label = typeof task.hex === "string" && task.hex ? task.hex : toHex(r, g, b);
    } else {
      var colour = typeof task.hex === "string" && task.hex ? task.hex
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
    Object.keys(task).forEach(function (key) {
      if (key.charAt(0) === "_" || META_KEYS[key]) return;
      var value = task[key];
      var tr = document.createElement("tr");
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = key;
      var td = document.createElement("td");
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
    var value = task.image === undefined || task.image === null ? "" : String(task.image);
    if (value.indexOf("data:image/") === 0) el.image.src = value;
    else el.image.src = "/api/image?path=" + encodeURIComponent(value);
    el.image.alt = task.id !== undefined ? "item " + String(task.id) : "item to label";
    el.imageWrap.hidden = false;
  }

  function onImageLoad() {
    var tiny = el.image.naturalWidth > 0 && el.image.naturalWidth <= 64 && el.image.naturalHeight <= 64;
    el.image.classList.toggle("tiny", tiny);
  }

  function renderLabels(task) {
    clearChildren(el.labels);
    optionsFor(task).forEach(function (opt, i) {
      var btn = document.createElement("button");
      btn.type = "button";
      btn.className = "label";
      btn.dataset.label = opt.id;
      if (i < 9) {
        var key = document.createElement("span");
        key.className = "key";
        key.textContent = String(i + 1);
        btn.appendChild(key);
        btn.title = "press " + (i + 1);
      }
      var text = document.createElement("span");
      text.className = "label-text";
      text.textContent = opt.text;
      btn.appendChild(text);
      btn.addEventListener("click", function () { select(opt.id); });
      el.labels.appendChild(btn);
    });
  }

  function renderGuess(task) {
    var meta = taskMeta(task);
    el.guess.dataset.source = meta.source !== undefined && meta.source !== null ? String(meta.source) : "";
    el.guess.classList.remove("has-model", "audit");
    if (isAudit(task)) {
      el.guess.textContent = "Random check: the model's guess is hidden so it can't sway you.";
      el.guess.classList.add("audit");
      return;
    }
    var guess = modelGuess(task);
    if (guess === null) {
      el.guess.textContent = "no model yet";
      return;
    }
    var text = "model: " + guess;
    var p = Number(meta.p);
    if (meta.p !== undefined && meta.p !== null && isFinite(p)) text += " " + Math.round(p * 100) + "%";
    el.guess.textContent = text;
    el.guess.classList.add("has-model");
  }

  function updateSelection() {
    var buttons = el.labels.querySelectorAll("button.label");
    for (var i = 0; i < buttons.length; i++) {
      var on = buttons[i].dataset.label === state.selected;
      buttons[i].classList.toggle("selected", on);
      buttons[i].setAttribute("aria-pressed", on ? "true" : "false");
    }
  }

  function renderTask() {
    var task = state.current;
    el.loading.hidden = true;
    if (!task) {
      el.task.hidden = true;
      if (state.exhausted && !state.fetching && !state.fetchFailed) {
        el.done.hidden = false;
        el.doneUndo.disabled = state.history.length === 0;
        document.body.dataset.ready = "1";
      } else {
        el.done.hidden = true;
        el.loading.hidden = false;
        el.loading.textContent = state.fetchFailed ? "Could not load tasks; retrying…" : "Loading tasks…";
      }
      return;
    }
    el.done.hidden = true;
    el.task.hidden = false;
    el.swatchWrap.hidden = true;
    el.record.hidden = true;
    el.imageWrap.hidden = true;

    var view = state.project.view;
    if (view === "colour" || view === "color") renderColour(task);
    else if (view === "image") renderImage(task);
    else renderRecord(task);

    renderLabels(task);
    renderGuess(task);
    updateSelection();
    el.undo.disabled = state.history.length === 0;
    document.body.dataset.ready = "1";
  }

  // ---------------------------------------------------------------- task queue

  function showNext(allowFetch) {
    state.current = state.queue.length ? state.queue.shift() : null;
    state.selected = state.current ? modelGuess(state.current) : null;
    if (state.current && state.selected !== null) {
      // Only preselect a guess that is one of the offered options.
      var ok = optionsFor(state.current).some(function (o) { return o.id === state.selected; });
      if (!ok) state.selected = null;
    }
    renderTask();
    if (allowFetch) maybeFetch();
  }

  function maybeFetch() {
    if (state.fetching || state.fetchFailed) return; // after a failure the tick retries
    var local = state.queue.length + (state.current ? 1 : 0);
    if (local >= state.batchSize / 2) return;
    // After an empty answer, ask again only once the screen runs dry (and then from the tick).
    if (state.exhausted && state.current) return;
    fetchTasks();
  }

  async function fetchTasks() {
    if (state.fetching) return;
    state.fetching = true;
    // Leasing rows is a write: a POST with a JSON body, which another site's page cannot send.
    var request = { session: state.session, n: state.batchSize, fresh: state.firstFetch };
    var added = 0;
    try {
      var data = await postJSON("/api/questions", request);
      state.firstFetch = false;
      var tasks = data && Array.isArray(data.tasks) ? data.tasks : [];
      tasks.forEach(function (task) {
        if (!task || typeof task !== "object") return;
        var key = taskKey(task);
        if (state.seen.has(key)) return;
        state.seen.add(key);
        state.queue.push(task);
        added++;
      });
      state.exhausted = added === 0;
      if (state.fetchFailed) {
        state.fetchFailed = false;
        if (!state.lastPostError) clearError();
      }
    } catch (err) {
      state.fetchFailed = true;
      showError(String(err && err.message ? err.message : err));
    } finally {
      state.fetching = false;
    }
    if (!state.current) {
      showNext(added > 0);
    } else if (added > 0) {
      maybeFetch();
    }
  }

  // ---------------------------------------------------------------- answering

  function select(label) {
    if (!state.current) return;
    state.selected = label;
    updateSelection();
  }

  function selectByIndex(i) {
    if (!state.current) return;
    var opts = optionsFor(state.current);
    if (i < opts.length) select(opts[i].id);
  }

  function answer(kind) {
    var task = state.current;
    if (!task) return;
    var accept = [];
    if (kind === "accept") {
      if (state.selected === null) {
        flashHint("Pick a label first: press 1–9 or click one.");
        return;
      }
      accept = [state.selected];
    }
    var entry = Object.assign({}, task, { answer: kind, accept: accept });
    state.outbox.push(entry);
    persistOutbox();
    state.history.push({ task: task, entry: entry, selected: state.selected });
    if (state.history.length > HISTORY_MAX) state.history.shift();
    state.seen.add(taskKey(task));
    el.hint.textContent = "";
    updateUnsaved();
    showNext(true);
    if (state.outbox.length >= state.batchSize) flush(false);
  }

  function undo() {
    var last = state.history.pop();
    if (!last) {
      flashHint("Nothing to undo.");
      return;
    }
    var i = state.outbox.indexOf(last.entry);
    if (i !== -1) {
      state.outbox.splice(i, 1);
      persistOutbox();
    }
    // Otherwise it was posted already: the next answer for this task replaces it on the server.
    if (state.current) state.queue.unshift(state.current);
    state.current = last.task;
    state.selected = last.selected;
    el.hint.textContent = "";
    updateUnsaved();
    renderTask();
  }

  function updateUnsaved() {
    var n = state.outbox.length;
    el.unsaved.textContent = n + " unsaved";
    el.unsaved.classList.toggle("has-unsaved", n > 0);
  }

  function setPendingPosts(delta) {
    state.pendingPosts += delta;
    document.body.dataset.pendingPosts = String(state.pendingPosts);
  }

  async function flush(keepalive) {
    if (state.posting) {
      state.flushAgain = true;
      state.flushKeepalive = state.flushKeepalive || !!keepalive;
      return;
    }
    if (state.outbox.length === 0) return;
    var batch = state.outbox.slice(0, POST_MAX_ANSWERS);
    var more = state.outbox.length > batch.length;
    var body = JSON.stringify({ session: state.session, answers: batch });
    var init = {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body,
    };
    if (keepalive && new TextEncoder().encode(body).length < KEEPALIVE_MAX_BYTES) init.keepalive = true;

    state.posting = true;
    setPendingPosts(1);
    var ok = false;
    try {
      var response = await fetch("/api/answers", init);
      if (!response.ok) throw new Error("Saving answers failed: " + (await errorText(response)));
      ok = true;
      // Drop exactly the entries that were sent (undo may have removed some meanwhile).
      var sent = new Set(batch);
      state.outbox = state.outbox.filter(function (e) { return !sent.has(e); });
      persistOutbox();
      if (state.lastPostError) {
        state.lastPostError = null;
        clearError();
      }
      if (more) state.flushAgain = true;
    } catch (err) {
      var msg = String(err && err.message ? err.message : err);
      if (msg.indexOf("Saving answers failed") !== 0) msg = "Saving answers failed: " + msg;
      state.lastPostError = msg;
      showError(msg + " — " + state.outbox.length + " answers kept; they will be sent again.");
    } finally {
      state.posting = false;
      setPendingPosts(-1);
      updateUnsaved();
    }
    if (ok) refreshStats();
    if (state.flushAgain) {
      var ka = state.flushKeepalive;
      state.flushAgain = false;
      state.flushKeepalive = false;
      if (ok) flush(ka);
    }
  }

  // ---------------------------------------------------------------- stats panel

  async function refreshStats() {
    if (state.statsBusy) return;
    state.statsBusy = true;
    try {
      renderStats(await getJSON("/api/stats"));
    } catch (err) {
      // A stats hiccup is not worth a banner; the next tick tries again.
    } finally {
      state.statsBusy = false;
    }
  }

  function fmtMs(v) {
    var n = Number(v);
    if (v === null || v === undefined || !isFinite(n)) return "–";
    return n >= 100 ? String(Math.round(n)) : n.toFixed(1);
  }

  function renderStats(s) {
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
        var of = document.createElement("span");
        of.className = "of";
        of.textContent = " / " + String(s.n_pool);
        el.statsRemaining.appendChild(of);
      }
    }
    el.refitting.hidden = !s.refitting;
    if (s.refitting && !state.refitPoll && document.visibilityState === "visible") {
      // Follow a running refit closely so the new round shows up without waiting for the tick.
      state.refitPoll = setTimeout(function () { state.refitPoll = null; refreshStats(); }, 600);
    }
    if (s.last_error) {
      el.statsError.textContent = "Last refit failed: " + String(s.last_error);
      el.statsError.hidden = false;
    } else {
      el.statsError.textContent = "";
      el.statsError.hidden = true;
    }
    var history = Array.isArray(s.history) ? s.history : [];
    var est = objectOr(s.estimate);
    redraw("perLabel", [state.project.labels, s.per_label], function () { renderPerLabel(objectOr(s.per_label) || {}); });
    redraw("accuracy", [s.audit, s.model_round > 0, est], function () { renderAccuracy(s); });
    redraw("stop", s.stop, function () { renderStop(s); });
    redraw("caption", [s.stop, est && est.confidence], function () { renderCaption(s); });
    redraw("curve", [history, s.stop, est && est.confidence], function () { renderCurve(history, s); });
    redraw("mistakes", est, function () { renderMistakes(est); });
  }

  function renderPerLabel(perLabel) {
    var names = (state.project.labels || []).map(String);
    Object.keys(perLabel).forEach(function (k) { if (names.indexOf(k) === -1) names.push(k); });
    var max = 0;
    names.forEach(function (n) { max = Math.max(max, Number(perLabel[n]) || 0); });
    clearChildren(el.perLabel);
    names.forEach(function (name) {
      var count = Number(perLabel[name]) || 0;
      var row = document.createElement("div");
      row.className = "per-label-row";
      row.dataset.label = name;
      var label = document.createElement("span");
      label.className = "per-label-name";
      label.textContent = name;
      label.title = name;
      var track = document.createElement("span");
      track.className = "per-label-track";
      var bar = document.createElement("span");
      bar.className = "per-label-bar";
      bar.style.width = (max > 0 ? (100 * count) / max : 0) + "%";
      track.appendChild(bar);
      var c = document.createElement("span");
      c.className = "per-label-count";
      c.textContent = String(count);
      row.appendChild(label);
      row.appendChild(track);
      row.appendChild(c);
      el.perLabel.appendChild(row);
    });
  }

  function svg(name, attrs, text) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function isNum(v) {
    return v !== null && v !== undefined && v !== "" && typeof v !== "boolean" && isFinite(Number(v));
  }

  function percent(v) { return Math.round(Number(v) * 100) + "%"; }

  function plural(n, one, many) { return String(n) + " " + (n === 1 ? one : many); }

  function objectOr(v) { return v && typeof v === "object" && !Array.isArray(v) ? v : null; }

  function confidencePct(est) {
    return est && isNum(est.confidence) ? Math.round(Number(est.confidence) * 100) : 95;
  }

  // ---- accuracy: only ever the audit estimate. Audit tasks are drawn uniformly from the open rows
  // and the model's prediction is recorded before the answer, so their hit rate is unbiased; no
  // other number on the page is called accuracy.

  function renderAccuracy(s) {
    var est = objectOr(s.estimate);
    var n = est && isNum(est.n) ? Number(est.n) : 0;
    var nAll = est && isNum(est.n_audit) ? Number(est.n_audit) : n;
    var share = isNum(s.audit) ? Number(s.audit) : null;
    clearChildren(el.accuracy);
    el.accuracy.classList.toggle("has-estimate", !!(est && n > 0 && isNum(est.accuracy)));
    if (est && n > 0 && isNum(est.accuracy)) {
      var value = document.createElement("strong");
      value.className = "accuracy-value";
      value.textContent = percent(est.accuracy);
      el.accuracy.appendChild(value);
      var text = "";
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
    var msg;
    if (share === null) {
      msg = "No random checks answered yet.";
    } else if (share <= 0) {
      msg = "Random checks are off (audit share 0), so there is no honest accuracy estimate.";
    } else {
      var every = share >= 1 ? "every task is one" : "about 1 in " + Math.max(1, Math.round(1 / share)) +
        " tasks is one";
      msg = Number(s.model_round) > 0 ? "No random checks answered yet; " + every + "."
        : "No random checks yet: they start with the first model; then " + every + ".";
    }
    el.accuracy.textContent = msg;
  }

  // ---- the stop rule's verdict, its message shown as the server wrote it

  function renderStop(s) {
    var stop = objectOr(s.stop);
    var suggested = !!(stop && stop.suggested === true);
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

  // ---- learning curve: the audit estimate with its interval, and kappa, per refit

  function labelsAt(h) {
    if (isNum(h.n_train)) return Number(h.n_train);
    if (isNum(h.n_annotations)) return Number(h.n_annotations);
    return null;
  }

  function clamp01(v) { return Math.max(0, Math.min(1, Number(v))); }

  function renderCaption(s) {
    var stop = objectOr(s.stop);
    var threshold = stop && isNum(stop.threshold) ? String(Number(stop.threshold)) : "0.99";
    var nRounds = stop && isNum(stop.window) ? Number(stop.window) : 3;
    var conf = confidencePct(objectOr(s.estimate));
    el.legendConfidence.textContent = String(conf);
    el.legendThreshold.textContent = threshold;
    el.curveCaption.textContent = "Accuracy: share of random checks (random rows still to label) the model " +
      "got right, with its " + conf + "% interval. Kappa: agreement of each round's predictions with the round before on a fixed sample; " +
      "stopping is suggested when it stays above " + threshold +
      (nRounds > 1 ? " (its mean over the last " + nRounds + " rounds)." : ".");
  }

  function renderCurve(history, s) {
    var W = 300, H = 170, L = 34, R = 24, T = 8, B = 30;
    var pw = W - L - R, ph = H - T - B;
    var stop = objectOr(s.stop);
    var threshold = stop && isNum(stop.threshold) ? clamp01(stop.threshold) : null;
    var conf = confidencePct(objectOr(s.estimate));
    var rounds = history.filter(function (h) { return objectOr(h) && labelsAt(h) !== null; });
    var acc = rounds.filter(function (h) { return isNum(h.accuracy); });
    var band = acc.filter(function (h) { return isNum(h.low) && isNum(h.high); });
    var kap = rounds.filter(function (h) { return isNum(h.kappa); });
    var stopped = rounds.filter(function (h) { return h.stop_suggested === true; })[0] || null;
    clearChildren(el.curve);
    el.legendStopped.hidden = stopped === null;

    function sy(v) { return T + ph - clamp01(v) * ph; }
    [0, 0.25, 0.5, 0.75, 1].forEach(function (v) {
      el.curve.appendChild(svg("line", { x1: L, x2: L + pw, y1: sy(v), y2: sy(v), class: v === 0 ? "axis" : "grid" }));
      if (v === 0 || v === 0.5 || v === 1) {
        el.curve.appendChild(svg("text", { x: L - 4, y: sy(v) + 3, "text-anchor": "end", class: "tick tick-acc" },
          Math.round(v * 100) + "%"));
        el.curve.appendChild(svg("text", { x: L + pw + 4, y: sy(v) + 3, "text-anchor": "start", class: "tick tick-kappa" },
          String(v)));
      }
    });
    el.curve.appendChild(svg("line", { x1: L, x2: L, y1: T, y2: T + ph, class: "axis" }));
    el.curve.appendChild(svg("line", { x1: L + pw, x2: L + pw, y1: T, y2: T + ph, class: "axis" }));
    el.curve.appendChild(svg("text", { x: L + pw / 2, y: H - 4, "text-anchor": "middle", class: "axis-title" },
      "labels"));
    if (threshold !== null) {
      var thr = svg("line", { x1: L, x2: L + pw, y1: sy(threshold), y2: sy(threshold), class: "threshold" });
      thr.appendChild(svg("title", {}, "stop level: kappa " + threshold));
      el.curve.appendChild(thr);
    }

    if (rounds.length === 0) {
      el.curve.appendChild(svg("text", { x: L + pw / 2, y: T + ph * 0.375 + 4, "text-anchor": "middle", class: "empty" },
        "no model rounds yet"));
      return;
    }
    var xmax = Math.max.apply(null, rounds.map(labelsAt));
    if (xmax <= 0) xmax = 1;
    function sx(x) { return L + (Math.max(0, x) / xmax) * pw; }
    function pt(x, y) { return sx(x).toFixed(1) + "," + sy(y).toFixed(1); }

    el.curve.appendChild(svg("text", { x: sx(0), y: T + ph + 12, "text-anchor": "start", class: "tick" }, "0"));
    el.curve.appendChild(svg("text", { x: sx(xmax), y: T + ph + 12, "text-anchor": "end", class: "tick" },
      String(Math.round(xmax))));

    if (stopped) {
      var mark = svg("line", { x1: sx(labelsAt(stopped)), x2: sx(labelsAt(stopped)), y1: T, y2: T + ph, class: "stopped" });
      mark.appendChild(svg("title", {}, "stopping first suggested at round " + String(stopped.round) + ", " +
        labelsAt(stopped) + " labels"));
      el.curve.appendChild(mark);
    }

    if (band.length >= 2) {
      var upper = band.map(function (h) { return pt(labelsAt(h), h.high); });
      var lower = band.slice().reverse().map(function (h) { return pt(labelsAt(h), h.low); });
      el.curve.appendChild(svg("polygon", { class: "band", points: upper.concat(lower).join(" ") }));
    } else if (band.length === 1) {
      var b = band[0];
      el.curve.appendChild(svg("rect", {
        class: "band", x: (sx(labelsAt(b)) - 3).toFixed(1), width: 6,
        y: sy(b.high).toFixed(1), height: Math.max(1, sy(b.low) - sy(b.high)).toFixed(1),
      }));
    }

    function series(points, key, cls, describe) {
      if (!points.length) return;
      if (points.length > 1) {
        el.curve.appendChild(svg("polyline", {
          class: cls, points: points.map(function (h) { return pt(labelsAt(h), h[key]); }).join(" "),
        }));
      }
      // A dot per round while they fit; with many rounds only the latest, so the line stays readable.
      var dotted = points.length <= 40 ? points : points.slice(-1);
      dotted.forEach(function (h) {
        var dot = svg("circle", { cx: sx(labelsAt(h)).toFixed(1), cy: sy(h[key]).toFixed(1), r: 2.6, class: cls + "-dot" });
        dot.appendChild(svg("title", {}, "round " + String(h.round) + ", " + labelsAt(h) + " labels: " + describe(h)));
        el.curve.appendChild(dot);
      });
    }
    series(acc, "accuracy", "acc", function (h) {
      var text = "accuracy " + percent(h.accuracy);
      if (isNum(h.low) && isNum(h.high)) {
        text += " (" + conf + "% interval " + Math.round(Number(h.low) * 100) + "–" + percent(h.high) + ")";
      }
      var nUsed = isNum(h.n_used) ? h.n_used : h.n_audit;  // the checks behind that round's estimate
      if (isNum(nUsed)) text += " from " + plural(Number(nUsed), "random check", "random checks");
      return text;
    });
    series(kap, "kappa", "kappa", function (h) {
      return "kappa " + Number(h.kappa).toFixed(3) + " with the round before";
    });
    if (!acc.length && !kap.length) {
      el.curve.appendChild(svg("text", { x: L + pw / 2, y: T + ph * 0.375 + 4, "text-anchor": "middle", class: "empty" },
        "no random checks or rounds to compare yet"));
    }
  }

  // ---- mistakes on random checks: the confusion table and per-label precision and recall

  function cell(tag, text, cls, title) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    if (title) node.title = title;
    return node;
  }

  function renderMistakes(est) {
    var confusion = est ? objectOr(est.confusion) : null;
    var n = est && isNum(est.n) ? Number(est.n) : 0;
    if (!confusion || n <= 0 || !Array.isArray(confusion.labels) || !Array.isArray(confusion.matrix)) {
      el.mistakes.hidden = true;
      return;
    }
    var labels = confusion.labels.map(String);
    var m = labels.map(function (_, i) {
      var row = Array.isArray(confusion.matrix[i]) ? confusion.matrix[i] : [];
      return labels.map(function (_, j) { return isNum(row[j]) ? Number(row[j]) : 0; });
    });
    var rowSum = m.map(function (row) { return row.reduce(function (a, b) { return a + b; }, 0); });
    var colSum = labels.map(function (_, j) { return m.reduce(function (a, row) { return a + row[j]; }, 0); });
    var total = rowSum.reduce(function (a, b) { return a + b; }, 0);
    var hits = m.reduce(function (a, row, i) { return a + row[i]; }, 0);
    // Labels no random check has touched (as answer or prediction) would be empty rows and columns.
    var keep = [];
    labels.forEach(function (_, i) { if (rowSum[i] + colSum[i] > 0) keep.push(i); });
    var rowsName = confusion.rows ? String(confusion.rows) : "annotator's label";
    var colsName = confusion.columns ? String(confusion.columns) : "model's prediction";

    el.mistakesSummary.textContent = "Mistakes on random checks: " + (total - hits) + " of " + total;
    clearChildren(el.confusion);
    var caption = cell("caption", "Rows: " + rowsName + "; columns: " + colsName + "." +
      (keep.length < labels.length ? " Labels no random check has met are left out." : ""));
    el.confusion.appendChild(caption);
    var thead = document.createElement("thead");
    var top = document.createElement("tr");
    var corner = cell("th", rowsName + " ↓", "corner");
    corner.rowSpan = 2;
    corner.scope = "col";
    top.appendChild(corner);
    var colsHead = cell("th", colsName + " →", "cols-name");
    colsHead.colSpan = keep.length;
    colsHead.scope = "colgroup";
    top.appendChild(colsHead);
    thead.appendChild(top);
    var names = document.createElement("tr");
    keep.forEach(function (j) {
      var th = cell("th", null, "col-label", colsName + ": " + labels[j]);
      th.scope = "col";
      th.appendChild(cell("span", labels[j]));
      names.appendChild(th);
    });
    thead.appendChild(names);
    el.confusion.appendChild(thead);
    var tbody = document.createElement("tbody");
    keep.forEach(function (i) {
      var tr = document.createElement("tr");
      tr.dataset.label = labels[i];
      var th = cell("th", labels[i], "row-label", rowsName + ": " + labels[i]);
      th.scope = "row";
      tr.appendChild(th);
      keep.forEach(function (j) {
        var v = m[i][j];
        var cls = v === 0 ? "zero" : (i === j ? "hit" : "miss");
        var td = cell("td", v === 0 ? "" : v, cls, labels[i] + " answered, " + labels[j] + " predicted: " + v);
        td.dataset.count = String(v);
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    el.confusion.appendChild(tbody);

    clearChildren(el.quality);
    el.quality.appendChild(cell("caption", "Precision: share of the model's predictions of a label that were " +
      "right. Recall: share of a label's rows the model got right."));
    var qhead = document.createElement("thead");
    var qtr = document.createElement("tr");
    [["label", ""], ["checks", "random checks the annotator gave this label"], ["precision", ""], ["recall", ""]]
      .forEach(function (h) {
        var th = cell("th", h[0], null, h[1] || null);
        th.scope = "col";
        qtr.appendChild(th);
      });
    qhead.appendChild(qtr);
    el.quality.appendChild(qhead);
    var qbody = document.createElement("tbody");
    var perLabel = objectOr(est.per_label) || {};
    keep.forEach(function (i) {
      var q = objectOr(perLabel[labels[i]]) || {};
      var tr = document.createElement("tr");
      tr.dataset.label = labels[i];
      var th = cell("th", labels[i], "row-label");
      th.scope = "row";
      tr.appendChild(th);
      tr.appendChild(cell("td", isNum(q.support) ? Number(q.support) : rowSum[i], "num"));
      tr.appendChild(cell("td", isNum(q.precision) ? percent(q.precision) : "–", "num"));
      tr.appendChild(cell("td", isNum(q.recall) ? percent(q.recall) : "–", "num"));
      qbody.appendChild(tr);
    });
    el.quality.appendChild(qbody);
    el.mistakes.hidden = false;
  }

  // Redraw a part only when its data changed: the panel refreshes every few seconds, and a redraw
  // would drop a tooltip the annotator is reading.
  var drawn = {};
  function redraw(part, data, fn) {
    var key = JSON.stringify(data);
    if (drawn[part] === key) return;
    drawn[part] = key;
    fn();
  }

  function tick() {
    if (document.visibilityState !== "visible") return;
    refreshStats();
    // When the screen ran dry, look again: leases expire and other annotators undo.
    if (!state.fetching && (state.fetchFailed || (!state.current && state.queue.length === 0))) fetchTasks();
  }

  function startStatsTimer() {
    if (state.statsTimer) return;
    state.statsTimer = setInterval(tick, STATS_EVERY_MS);
  }

  function stopStatsTimer() {
    if (state.statsTimer) clearInterval(state.statsTimer);
    state.statsTimer = null;
  }

  // ---------------------------------------------------------------- input

  function onKeyDown(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) {
      return;
    }
    if (!state.project) return;
    var key = e.key;
    if (ownsEnterAndSpace(t) && (key === "Enter" || key === " " || key === "Spacebar")) return;
    if (key >= "1" && key <= "9" && key.length === 1) {
      e.preventDefault();
      selectByIndex(Number(key) - 1);
    } else if (key === "Enter") {
      e.preventDefault();
      if (!e.repeat) answer("accept");
    } else if (key === " " || key === "Spacebar") {
      e.preventDefault();
      if (!e.repeat) answer("ignore");
    } else if (key === "Backspace") {
      e.preventDefault();
      if (!e.repeat) undo();
    }
  }

  // A control reached with the keyboard (Undo, Skip, Save, a folded table's summary) does what
  // Enter and Space do to it, as the user who tabbed to it expects. A label button is the
  // exception: its choice is made when it is clicked, and Enter then accepts it. A button clicked
  // with the mouse lets go of the focus (onClickBlur), so Enter still accepts after a click on Save.
  function ownsEnterAndSpace(target) {
    if (!target || !target.closest) return false;
    var control = target.closest("button, a[href], summary, [role=button]");
    return !!control && !control.classList.contains("label");
  }

  function onClickBlur(e) {
    var control = e.target && e.target.closest ? e.target.closest("button, summary") : null;
    if (control && e.detail > 0 && !control.classList.contains("label")) control.blur();
  }

  // Space activates a focused button on keyup; where the keydown handler acted, it must not.
  function onKeyUp(e) {
    if ((e.key === " " || e.key === "Spacebar") && !ownsEnterAndSpace(e.target)) e.preventDefault();
  }

  function bind() {
    [
      "dataset", "model-info", "session", "unsaved", "save", "error-banner", "error-text", "error-dismiss",
      "loading", "task", "swatch-wrap", "swatch", "swatch-hex", "record", "record-body", "image-wrap",
      "image", "guess", "labels", "accept", "skip", "undo", "hint", "done", "done-undo", "stats-total",
      "stats-round", "stats-learner", "stats-refit-ms", "stats-remaining", "refitting", "stats-error", "per-label", "curve",
      "accuracy", "stop", "stop-badge", "stop-message", "stop-kappa", "legend-confidence", "legend-threshold",
      "legend-stopped", "curve-caption", "mistakes", "mistakes-summary", "confusion", "quality",
    ].forEach(function (id) {
      var camel = id.replace(/-([a-z])/g, function (_, c) { return c.toUpperCase(); });
      el[camel] = $(id);
    });
    document.addEventListener("keydown", onKeyDown);
    document.addEventListener("keyup", onKeyUp);
    document.addEventListener("click", onClickBlur);
    el.accept.addEventListener("click", function () { answer("accept"); });
    el.skip.addEventListener("click", function () { answer("ignore"); });
    el.undo.addEventListener("click", undo);
    el.doneUndo.addEventListener("click", undo);
    el.save.addEventListener("click", function () { flush(false); });
    el.errorDismiss.addEventListener("click", clearError);
    el.image.addEventListener("load", onImageLoad);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") {
        stopStatsTimer();
        flush(true);
      } else {
        refreshStats();
        startStatsTimer();
      }
    });
    // Last chance for anything still unsaved (also kept in localStorage).
    window.addEventListener("pagehide", function () { flush(true); });
  }

  async function init() {
    bind();
    document.body.dataset.pendingPosts = "0";
    state.session = resolveSession();
    el.session.textContent = state.session;
    updateUnsaved();
    try {
      state.project = await getJSON("/api/project");
    } catch (err) {
      el.loading.textContent = "Could not load the project.";
      showError(String(err && err.message ? err.message : err));
      return;
    }
    var p = state.project;
    var bs = Number(p.batch_size);
    state.batchSize = isFinite(bs) && bs >= 1 ? Math.floor(bs) : 10;
    el.dataset.textContent = p.dataset !== undefined ? String(p.dataset) : "";
    document.title = (p.dataset !== undefined ? String(p.dataset) + " · " : "") + "retrain-loop";
    el.modelInfo.textContent = [p.model, p.strategy].filter(Boolean).map(String).join(" · ");

    if (!SESSION_RE.test(state.session)) {
      el.loading.textContent = "Invalid session name.";
      showError("The session name \"" + state.session + "\" is not allowed: use 1–64 letters, digits, " +
        "'_', '.', '@' or '-' in ?session=…");
      return;
    }

    restoreOutbox();
    updateUnsaved();
    if (state.outbox.length) {
      // Store what an earlier visit left unsaved before asking for fresh tasks.
      await flush(false);
    }
    refreshStats();
    startStatsTimer();
    fetchTasks();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
