/* retrain-loop annotation page: wires the modules together.
 *
 * Plain ES modules, no build step, no dependencies, CSP-friendly: no inline code, and no markup
 * built from data.
 *
 * Flow: lease tasks into a local queue (more when fewer than half a batch remains), show one at a
 * time, collect answers in the outbox (mirrored in localStorage, so a reload or a crash loses
 * nothing), and post the outbox when it holds a batch, on "Save", and when the page is hidden.
 */
import { getJSON, leaseTasks, messageOf, postAnswers } from "./api.js";
import { installKeys } from "./keys.js";
import { createOutbox, outboxKey } from "./outbox.js";
import { createQueue } from "./queue.js";
import { createPanel } from "./stats.js";
import { optionsFor, preselected } from "./tasks.js";
import { createViews } from "./views.js";

const STATS_EVERY_MS = 3000;
const HISTORY_MAX = 200;
const SESSION_RE = /^[A-Za-z0-9_.@-]{1,64}$/; // what the server accepts as a session name
const SESSION_KEY = "retrain_loop.session";

// Any of these may throw where the browser blocks storage; the outbox and attempt() catch that.
const storage = {
  getItem: (k) => window.localStorage.getItem(k),
  setItem: (k, v) => window.localStorage.setItem(k, v),
  removeItem: (k) => window.localStorage.removeItem(k),
};

function attempt(fn) {
  try { return fn(); } catch (e) { return null; }
}

function randomSuffix(n) {
  const chars = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(bytes, (b) => chars[b % chars.length]).join("");
}

function resolveSession() {
  const fromUrl = new URLSearchParams(window.location.search).get("session");
  if (fromUrl && fromUrl.trim()) return fromUrl.trim();
  const stored = attempt(() => storage.getItem(SESSION_KEY));
  if (stored) return stored;
  const made = "annotator-" + randomSuffix(4);
  attempt(() => storage.setItem(SESSION_KEY, made));
  return made;
}

// Set once the project is loaded (and, for the last three, the session name is valid).
let project = null;
let queue = null;
let outbox = null;
let panel = null;

let selected = null;   // the label selected for the task on screen
const history = [];    // [{task, entry, selected}] for undo, newest last
let ticker = null;
let views = null;

function render() {
  const task = queue.current;
  const canUndo = history.length > 0;
  if (task) {
    views.showTask(task, { view: project.view, options: optionsFor(task, project.labels), selected, canUndo });
  } else {
    views.showEmpty({ done: queue.done, failed: queue.failed, canUndo });
  }
}

function onShow(task) {
  selected = task ? preselected(task, project.labels) : null;
  render();
}

function select(label) {
  if (!queue || !queue.current) return;
  selected = label;
  views.showSelection(selected);
}

function pick(index) {
  if (!queue || !queue.current) return;
  const options = optionsFor(queue.current, project.labels);
  if (index < options.length) select(options[index].id);
}

function answer(kind) {
  const task = queue && queue.current;
  if (!task) return;
  let accept = [];
  if (kind === "accept") {
    if (selected === null) {
      views.flashHint("Pick a label first: press 1–9 or click one.");
      return;
    }
    accept = [selected];
  }
  const entry = Object.assign({}, task, { answer: kind, accept });
  outbox.add(entry);
  history.push({ task, entry, selected });
  if (history.length > HISTORY_MAX) history.shift();
  queue.markSeen(task);
  views.clearHint();
  queue.next(true);
  if (outbox.size >= queue.batchSize) outbox.flush();
}

function undo() {
  const last = history.pop();
  if (!last) {
    views.flashHint("Nothing to undo.");
    return;
  }
  // If it was posted already, the next answer for this task replaces it on the server.
  outbox.remove(last.entry);
  queue.putBack(last.task);
  selected = last.selected;
  views.clearHint();
  render();
}

function save(keepalive) {
  if (outbox) outbox.flush({ keepalive });
}

function showPostFailure(err) {
  let msg = messageOf(err);
  if (msg.indexOf("Saving answers failed") !== 0) msg = "Saving answers failed: " + msg;
  views.showError(msg + " — " + outbox.size + " answers kept; they will be sent again.");
}

function tick() {
  if (document.visibilityState !== "visible") return;
  panel.refresh();
  // When the screen ran dry, look again: leases expire and other annotators undo.
  if (!queue.fetching && (queue.failed || queue.dry)) queue.fetchMore();
}

function startTicking() {
  if (!ticker) ticker = setInterval(tick, STATS_EVERY_MS);
}

function stopTicking() {
  if (ticker) clearInterval(ticker);
  ticker = null;
}

function bind() {
  const on = (id, fn) => document.getElementById(id).addEventListener("click", fn);
  installKeys(document, {
    ready: () => project !== null,
    pick,
    accept: () => answer("accept"),
    skip: () => answer("ignore"),
    undo,
  });
  on("accept", () => answer("accept"));
  on("skip", () => answer("ignore"));
  on("undo", undo);
  on("done-undo", undo);
  on("save", () => save(false));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") {
      stopTicking();
      save(true);
    } else if (panel) {
      panel.refresh();
      startTicking();
    }
  });
  // Last chance for anything still unsaved (also kept in localStorage).
  window.addEventListener("pagehide", () => save(true));
}

async function init() {
  views = createViews({ onPick: select });
  bind();
  document.body.dataset.pendingPosts = "0";
  const session = resolveSession();
  views.showSession(session);
  views.showUnsaved(0);
  try {
    project = await getJSON("/api/project");
  } catch (err) {
    views.showLoading("Could not load the project.");
    views.showError(messageOf(err));
    return;
  }
  views.showProject(project);
  if (!SESSION_RE.test(session)) {
    views.showLoading("Invalid session name.");
    views.showError("The session name \"" + session + "\" is not allowed: use 1–64 letters, digits, " +
      "'_', '.', '@' or '-' in ?session=…");
    return;
  }
  const bs = Number(project.batch_size);
  const batchSize = isFinite(bs) && bs >= 1 ? Math.floor(bs) : 10;

  panel = createPanel({ load: () => getJSON("/api/stats"), labels: project.labels });
  outbox = createOutbox({
    storage,
    key: outboxKey(project.dataset, session),
    post: (answers, options) => postAnswers(session, answers, options),
    onChange: () => {
      views.showUnsaved(outbox.size);
      document.body.dataset.pendingPosts = outbox.posting ? "1" : "0";
    },
    onSent: (batch, recovered) => {
      if (recovered) views.clearError();
      panel.refresh();
    },
    onFailed: showPostFailure,
  });
  queue = createQueue({
    lease: (n, fresh) => leaseTasks(session, n, fresh),
    batchSize,
    onShow,
    onFailed: (err) => views.showError(messageOf(err)),
    onRecovered: () => { if (!outbox.failing) views.clearError(); },
  });

  outbox.restore().forEach(queue.markSeen);
  // Store what an earlier visit left unsaved before asking for fresh tasks.
  if (outbox.size) await outbox.flush();
  panel.refresh();
  startTicking();
  queue.fetchMore();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
