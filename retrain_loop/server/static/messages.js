/* What the page says in words: the banner when the server is away, the empty state, how much of
 * the pool the ranking has seen, and the announcement of each new task to screen readers. Pure functions, so Node can test them.
 */
import { messageOf } from "./api.js";
import { grouped, isNum, plural } from "./format.js";
import { isAudit, modelGuess, recordFields } from "./tasks.js";

// The banner while requests get no answer at all (the server stopped, the network gone).
export function serverAwayText(unsaved) {
  const kept = unsaved > 0
    ? (unsaved === 1 ? "your 1 answer is" : "your " + unsaved + " answers are") +
      " kept in this browser and will be sent when it is back"
    : "nothing is lost; the page carries on when it is back";
  return "The server is not answering; " + kept + ". Trying again every few seconds.";
}

const FAILED = {
  post: ["Saving answers failed", (n) => " — " + n + " answers kept; they will be sent again."],
  undo: ["Undo did not reach the server", () => " — answer this task again to replace the stored answer."],
  lease: ["", () => ""],
};

// The banner for a request the server refused (kind: "post", "undo" or "lease"); null when it
// got no response at all, which serverAwayText says. unsaved: the answers kept.
export function failureText(kind, err, unsaved) {
  if (err && err.away) return null;
  const [prefix, after] = FAILED[kind];
  let msg = messageOf(err);
  if (prefix && msg.indexOf(prefix) !== 0) msg = prefix + ": " + msg;
  return msg + after(unsaved);
}

// "in 9 min" for seconds until something happens; null when nothing will.
export function inTime(seconds) {
  if (seconds === null || seconds === undefined || seconds === "" || !isFinite(Number(seconds))) return null;
  const s = Number(seconds);
  if (s < 1) return "now";
  if (s < 60) return "in under a minute";
  const min = Math.ceil(s / 60);
  if (min < 60) return "in " + min + " min";
  const h = Math.floor(min / 60), rest = min % 60;
  return "in " + h + " h" + (rest ? " " + rest + " min" : "");
}

// The empty state's title, from the latest stats (null before the first). held: answers this page
// has not sent yet, whose rows count as out (to this page) until they are.
export function noTasksText(stats, { held = 0 } = {}) {
  const s = stats && typeof stats === "object" ? stats : {};
  const out = Math.max(0, Number(s.n_out) - held);
  if (isFinite(out) && out > 0) {
    let text = "No more tasks for now: " + plural(out, "row is", "rows are") +
      " out with other annotators or closed pages";
    const when = inTime(s.next_release_s);
    if (when !== null) text += when === "now" ? "; the first frees up now" : "; the first frees up " + when;
    return text + ".";
  }
  if (Number(s.n_remaining) === 0) return "No more tasks: every row is answered.";
  return "No more tasks for now.";
}

// How much of the pool the ranking has seen, while the model has not scored every open row yet
// (a large pool's round scores a sample; the rest is scored in the background); else null.
export function scoredText(stats) {
  const s = stats && typeof stats === "object" ? stats : {};
  if (!isNum(s.n_scored) || !isNum(s.n_unscored) || Number(s.n_unscored) <= 0) return null;
  const scored = Number(s.n_scored);
  return "Ranked from the " + grouped(scored) + " of " + grouped(scored + Number(s.n_unscored)) +
    " open rows the model has scored so far; the rest are being scored.";
}

/**
 * A short line for screen readers when a task comes on screen, e.g. "Task 3: colour #a1b2c3. Is
 * it red?". n: the task's number on this page; view: the project's view; binary: the label asked
 * about on a yes/no question, else null.
 */
export function announceText(task, { n, view, binary = null }) {
  let what;
  if (view === "colour" || view === "color") {
    const hex = typeof task.hex === "string" && task.hex ? task.hex : null;
    what = "colour" + (hex ? " " + hex : "");
  } else if (view === "image") {
    what = "image" + (task.id !== undefined ? " " + String(task.id) : "");
  } else {
    what = "record with " + plural(recordFields(task, { binary: binary !== null }).length, "field", "fields");
  }
  let text = "Task " + n + ": " + what + ".";
  if (binary !== null) return text + " Is it " + binary + "?";
  if (isAudit(task)) return text + " Random check.";
  const guess = modelGuess(task);
  return guess !== null ? text + " Model suggests " + guess + "." : text;
}
