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
    fetching: false,      // a GET /api/questions is in flight
    fetchFailed: false,   // the last GET /api/questions failed
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

  function modelGuess(task) {
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
    var guess = modelGuess(task);
    var meta = task.meta && typeof task.meta === "object" ? task.meta : {};
    if (guess === null) {
      el.guess.textContent = "no model yet";
      el.guess.classList.remove("has-model");
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
    var url = "/api/questions?session=" + encodeURIComponent(state.session) + "&n=" + state.batchSize;
    if (state.firstFetch) url += "&fresh=1";
    var added = 0;
    try {
      var data = await getJSON(url);
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
    renderPerLabel(s.per_label || {});
    renderCurve(Array.isArray(s.history) ? s.history : []);
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

  // Two honest signals, both free to compute: how often the annotator kept the model's guess on
  // the rows it was least sure of, and how many open rows kept their predicted label across the
  // last refit (near 100% means more labels are changing little).
  var SERIES = [
    { key: "guess_accuracy", cls: "line", dot: "dot", name: "guess kept" },
    { key: "agreement", cls: "line2", dot: "dot2", name: "predictions unchanged" },
  ];

  function seriesPoints(history, key) {
    return history.filter(function (h) {
      return h && h[key] !== null && h[key] !== undefined &&
        isFinite(Number(h[key])) && isFinite(Number(h.n_annotations));
    }).map(function (h) {
      return { x: Number(h.n_annotations), y: Math.max(0, Math.min(1, Number(h[key]))), h: h };
    });
  }

  function renderCurve(history) {
    var W = 300, H = 180, L = 46, R = 12, T = 22, B = 34;
    var pw = W - L - R, ph = H - T - B;
    var series = SERIES.map(function (s) { return { s: s, pts: seriesPoints(history, s.key) }; });
    var all = series[0].pts.concat(series[1].pts);
    clearChildren(el.curve);

    [0, 0.25, 0.5, 0.75, 1].forEach(function (v) {
      var y = T + ph - v * ph;
      el.curve.appendChild(svg("line", { x1: L, x2: L + pw, y1: y, y2: y, class: v === 0 ? "axis" : "grid" }));
      if (v === 0 || v === 0.5 || v === 1) {
        el.curve.appendChild(svg("text", { x: L - 5, y: y + 3, "text-anchor": "end", class: "tick" },
          Math.round(v * 100) + "%"));
      }
    });
    el.curve.appendChild(svg("line", { x1: L, x2: L, y1: T, y2: T + ph, class: "axis" }));
    el.curve.appendChild(svg("text", { x: L + pw / 2, y: H - 4, "text-anchor": "middle", class: "axis-title" },
      "answers"));
    series.forEach(function (entry, i) {
      var x = L + i * 110;
      el.curve.appendChild(svg("line", { x1: x, x2: x + 14, y1: 8, y2: 8, class: entry.s.cls }));
      el.curve.appendChild(svg("text", { x: x + 18, y: 11, class: "legend" }, entry.s.name));
    });

    if (all.length === 0) {
      el.curve.appendChild(svg("text", { x: L + pw / 2, y: T + ph / 2, "text-anchor": "middle", class: "empty" },
        history.length ? "no guesses rated yet" : "no model rounds yet"));
      return;
    }
    var xmin = 0;
    var xmax = Math.max.apply(null, all.map(function (p) { return p.x; }));
    if (xmax <= xmin) xmax = xmin + 1;
    function sx(x) { return L + ((x - xmin) / (xmax - xmin)) * pw; }
    function sy(y) { return T + ph - y * ph; }

    [xmin, xmax].forEach(function (x, i) {
      el.curve.appendChild(svg("text", {
        x: sx(x), y: T + ph + 13, "text-anchor": i === 0 ? "start" : "end", class: "tick",
      }, String(Math.round(x))));
    });

    series.forEach(function (entry) {
      if (!entry.pts.length) return;
      el.curve.appendChild(svg("polyline", {
        class: entry.s.cls,
        points: entry.pts.map(function (p) { return sx(p.x).toFixed(1) + "," + sy(p.y).toFixed(1); }).join(" "),
      }));
      entry.pts.forEach(function (p) {
        var dot = svg("circle", { cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 3, class: entry.s.dot });
        dot.appendChild(svg("title", {}, "round " + String(p.h.round) + ", " + p.x + " answers: " +
          entry.s.name + " " + Math.round(p.y * 100) + "%"));
        el.curve.appendChild(dot);
      });
    });
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

  // Space activates a focused button on keyup; the keydown handler already acted.
  function onKeyUp(e) {
    if (e.key === " " || e.key === "Spacebar") e.preventDefault();
  }

  function bind() {
    [
      "dataset", "model-info", "session", "unsaved", "save", "error-banner", "error-text", "error-dismiss",
      "loading", "task", "swatch-wrap", "swatch", "swatch-hex", "record", "record-body", "image-wrap",
      "image", "guess", "labels", "accept", "skip", "undo", "hint", "done", "done-undo", "stats-total",
      "stats-round", "stats-learner", "stats-refit-ms", "stats-remaining", "refitting", "stats-error", "per-label", "curve",
    ].forEach(function (id) {
      var camel = id.replace(/-([a-z])/g, function (_, c) { return c.toUpperCase(); });
      el[camel] = $(id);
    });
    document.addEventListener("keydown", onKeyDown);
    document.addEventListener("keyup", onKeyUp);
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
