/* retrain-loop annotation page: wires the modules together.
 *
 * Plain ES modules, no build step, no dependencies, CSP-friendly: no inline code, and no markup
 * built from data.
 *
 * Flow: lease tasks into a local queue (more when fewer than half a batch remains), show one at a
 * time, collect answers in the outbox (mirrored in localStorage, so a reload or a crash loses
 * nothing), and post the outbox when it holds a batch, on "Save", and when the page is hidden.
 * While the server does not answer, the banner says so and the stats tick keeps asking; when it
 * answers again, the outbox goes out by itself. Leaving the page hands its leased rows back.
 */
import {
  getJSON, leaseTasks, messageOf, postAnswers, releaseSession, retractAnswer, watchServer,
} from "./api.js";
import { installKeys, keysHelp, optionKeys } from "./keys.js";
import { announceText, failureText, noTasksText, serverAwayText } from "./messages.js";
import { createOutbox, outboxKey } from "./outbox.js";
import { createQueue } from "./queue.js";
import { SESSION_RE, resolveSession, storage } from "./session.js";
import { createPanel } from "./stats.js";
import { binaryLabel, optionsFor, preselected } from "./tasks.js";
import { createUndo } from "./undo.js";
import { createViews } from "./views.js";

const STATS_EVERY_MS = 3000;
const HISTORY_MAX = 200;
const UNDO_ONLY = [{ keys: ["Backspace"], join: ", ", text: "undo" }];

// Set once the project is loaded (and, for the rest, the session name is valid).
let project = null;
let session = null;
let queue = null;
let outbox = null;
let panel = null;
let undoer = null;

let views = null;
let selected = null;   // the label selected for the task on screen
let screen = { options: [], pickKeys: [], binary: false }; // what the keys mean for it
const history = [];    // [{task, entry, selected}] for undo, newest last
let lastStats = null;  // the latest GET /api/stats, for the empty state
let away = false;      // the last request got no response at all
let dry = false;       // the empty state is on screen, with no more tasks to come
let ticker = null;

// isNew: the task has just come on screen (it is announced), rather than redrawn.
function render(isNew) {
  const task = queue.current;
  const canUndo = history.length > 0;
  if (!task) {
    screen = { options: [], pickKeys: [], binary: false };
    const title = noTasksText(lastStats, { held: outbox.size });
    views.showEmpty({ done: queue.done, failed: queue.failed, canUndo, title });
    views.showKeysHelp(UNDO_ONLY);
    if (queue.done && !dry) ranDry();
    return;
  }
  dry = false;
  const binary = binaryLabel(task, project.mode, project.labels);
  const options = binary === null ? optionsFor(task, project.labels) : [];
  const pickKeys = optionKeys(options, project.labels, project.keys);
  screen = { options, pickKeys, binary: binary !== null };
  const announce = isNew ? announceText(task, { n: history.length + 1, view: project.view, binary }) : null;
  views.showTask(task, { view: project.view, options, keys: pickKeys, binary, selected, canUndo, announce });
  views.showKeysHelp(keysHelp(screen));
}

// Nothing more to ask: what is unsaved goes out now (there is no batch left to fill), and the
// empty state is announced once the stats read after it say how many rows are out.
function ranDry() {
  dry = true;
  outbox.flush().then(() => panel.refresh()).then((s) => {
    if (s && !queue.current && queue.done) views.announce(noTasksText(s, { held: outbox.size }));
  });
}

function onShow(task) {
  selected = task && binaryLabel(task, project.mode, project.labels) === null
    ? preselected(task, project.labels) : null;
  render(true);
}

function select(label) {
  if (!queue || !queue.current) return;
  selected = label;
  views.showSelection(selected);
}

function pick(index) {
  if (index < screen.options.length) select(screen.options[index].id);
}

// kind: "accept", "reject" (a yes/no question only) or "ignore".
function answer(kind) {
  const task = queue && queue.current;
  if (!task) return;
  let accept = [];
  if (!screen.binary) {
    if (kind === "reject") return;
    if (kind === "accept") {
      if (selected === null) {
        views.flashHint("Pick a label first: press its key or click it.");
        return;
      }
      accept = [selected];
    }
  }
  // A yes/no answer carries its label and accepts nothing: the server reads accept or reject.
  const entry = Object.assign({}, task, { answer: kind, accept });
  undoer.give(entry);
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
  queue.putBack(last.task);
  selected = last.selected;
  views.clearHint();
  render(true);
  undoer.takeBack(last.entry); // from the outbox, or retracted on the server
}

function save(keepalive) {
  if (outbox) outbox.flush({ keepalive });
}

function showAway() {
  views.showError(serverAwayText(outbox ? outbox.size : 0));
}

// Every response, or its absence, says whether the server is there.
function serverAnswering(up) {
  if (!up) {
    away = true;
    showAway();
    return;
  }
  if (!away) return;
  away = false;
  views.clearError();
  if (!outbox || !queue) return;
  outbox.flush();
  if (!queue.fetching && (queue.failed || queue.dry)) queue.fetchMore();
}

// A failed request's banner; none for a server that is away (serverAnswering has said so).
function showFailure(kind) {
  return (err) => {
    const text = failureText(kind, err, outbox ? outbox.size : 0);
    if (text) views.showError(text);
  };
}

function tick() {
  if (document.visibilityState !== "visible") return;
  panel.refresh(); // while the server is away, this is the request that finds it back
  // When the screen ran dry, look again: leases expire and other annotators undo.
  if (!away && !queue.fetching && (queue.failed || queue.dry)) queue.fetchMore();
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
    ready: () => queue !== null,
    context: () => screen,
    pick,
    accept: () => answer("accept"),
    reject: () => answer("reject"),
    skip: () => answer("ignore"),
    undo,
  });
  on("accept", () => answer("accept"));
  on("reject", () => answer("reject"));
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
  // Last chance for anything still unsaved (also kept in localStorage); the rows this page holds
  // go back to the others now, not when their leases run out.
  window.addEventListener("pagehide", () => {
    save(true);
    if (queue) releaseSession(session);
  });
  // Back from the back-forward cache, the tasks held here were handed back: lease afresh.
  window.addEventListener("pageshow", (e) => { if (e.persisted && queue) window.location.reload(); });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The project, asked for again every few seconds while the server is away.
async function loadProject() {
  for (;;) {
    try {
      return await getJSON("/api/project");
    } catch (err) {
      if (!err.away) throw err;
      views.showLoading("Waiting for the server…");
      await sleep(STATS_EVERY_MS);
    }
  }
}

async function init() {
  views = createViews({ onPick: select });
  watchServer(serverAnswering);
  bind();
  document.body.dataset.pendingPosts = "0";
  session = resolveSession();
  views.showSession(session);
  views.showUnsaved(0);
  try {
    project = await loadProject();
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

  panel = createPanel({
    load: () => getJSON("/api/stats"),
    labels: project.labels,
    onStats: (s) => {
      lastStats = s;
      if (queue && !queue.current && queue.done) render(false);
    },
  });
  outbox = createOutbox({
    storage,
    key: outboxKey(project.dataset, session),
    post: (answers, options) => postAnswers(session, answers, options),
    onChange: () => {
      views.showUnsaved(outbox.size);
      document.body.dataset.pendingPosts = outbox.posting ? "1" : "0";
      if (away) showAway();
    },
    onSent: (batch, recovered) => {
      if (recovered) views.clearError();
      panel.refresh();
    },
    onFailed: showFailure("post"),
  });
  undoer = createUndo({
    outbox,
    retract: (entry) => retractAnswer(session, entry),
    onRetracted: () => panel.refresh(),
    onFailed: showFailure("undo"),
  });
  const lease = createQueue({
    lease: (n, fresh) => leaseTasks(session, n, fresh),
    batchSize,
    onShow,
    onFailed: showFailure("lease"),
    onRecovered: () => { if (!outbox.failing && !away) views.clearError(); },
  });

  outbox.restore().forEach(lease.markSeen);
  // Store what an earlier visit left unsaved before asking for fresh tasks.
  if (outbox.size) await outbox.flush();
  queue = lease;
  panel.refresh();
  startTicking();
  queue.fetchMore();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
