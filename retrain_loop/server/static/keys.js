/* The page's keys: each label's key picks it, Enter accepts, Space skips, Backspace undoes; on a
 * yes/no question, a or Enter accepts, x rejects, Space ignores.
 *
 * Everything here but installKeys() is pure (keyCommand reads only the event's fields and its
 * target's tag, class and ancestors), so Node can test it.
 */

const SPACE = new Set([" ", "Spacebar"]);
const TYPING = new Set(["INPUT", "TEXTAREA", "SELECT"]);
// An older server sends no keys: the first nine labels get 1–9, as the page always did.
const FALLBACK_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9"];
export const BINARY_KEYS = { accept: "a", reject: "x" };

// A key as matched: a letter in either case is the same key (Shift or Caps Lock held).
export function normalKey(key) {
  if (typeof key !== "string" || key === "") return null;
  return key.length === 1 ? key.toLowerCase() : key;
}

// One key (or null) per label, in label order: the project's keys, else 1–9 for the first nine.
export function labelKeys(labels, keys) {
  const given = Array.isArray(keys) ? keys : FALLBACK_KEYS;
  return (labels || []).map((_, i) => (typeof given[i] === "string" && given[i] ? given[i] : null));
}

// The key of each option on screen: its label's key, or null for an option that is not a label.
export function optionKeys(options, labels, keys) {
  const byLabel = labelKeys(labels, keys);
  return options.map((o) => {
    const i = (labels || []).map(String).indexOf(o.id);
    return i === -1 ? null : byLabel[i];
  });
}

// A control reached with the keyboard (Undo, Skip, Save, a folded table's summary) does what
// Enter and Space do to it, as the user who tabbed to it expects. A label button is the
// exception: its choice is made when it is clicked, and Enter then accepts it. A button clicked
// with the mouse lets go of the focus (releaseClickedControl), so Enter still accepts after a
// click on Save.
export function ownsEnterAndSpace(target) {
  if (!target || !target.closest) return false;
  const control = target.closest("button, a[href], summary, [role=button]");
  return !!control && !control.classList.contains("label");
}

/**
 * What a keydown means to the page: null when the page leaves it to the browser, else
 * {command, index} with command one of "pick" (the option at index), "accept", "reject", "skip",
 * "undo", or null for a held-down key that is swallowed without acting again.
 *
 * context: {pickKeys: the key of each option on screen (null for none), binary: the task on
 * screen is a yes/no question}. Enter, Space and Backspace are never a label's key.
 */
export function keyCommand(e, { pickKeys = FALLBACK_KEYS, binary = false } = {}) {
  if (e.ctrlKey || e.metaKey || e.altKey) return null;
  const t = e.target;
  if (t && (TYPING.has(t.tagName) || t.isContentEditable)) return null;
  const key = typeof e.key === "string" ? e.key : "";
  if ((key === "Enter" || SPACE.has(key)) && ownsEnterAndSpace(t)) return null;
  let command;
  if (key === "Enter") command = "accept";
  else if (SPACE.has(key)) command = "skip";
  else if (key === "Backspace") command = "undo";
  else if (binary && normalKey(key) === BINARY_KEYS.accept) command = "accept";
  else if (binary && normalKey(key) === BINARY_KEYS.reject) command = "reject";
  if (command !== undefined) return { command: e.repeat ? null : command };
  const pressed = normalKey(key);
  const index = pressed === null ? -1 : pickKeys.findIndex((k) => normalKey(k) === pressed);
  return index === -1 ? null : { command: "pick", index };
}

const isDigit = (k) => k.length === 1 && k >= "0" && k <= "9";

// Runs of three or more consecutive digits ("1".."9") as one range ("1–9"), the rest as they are:
// letters in a row of the alphabet are not in a row on the keyboard ("f–h" would puzzle).
export function keyRanges(keys) {
  const shown = keys.filter((k) => typeof k === "string" && k);
  const out = [];
  let i = 0;
  while (i < shown.length) {
    let j = i;
    while (j + 1 < shown.length && isDigit(shown[j]) && isDigit(shown[j + 1]) &&
      shown[j + 1].charCodeAt(0) === shown[j].charCodeAt(0) + 1) j++;
    if (j - i >= 2) out.push(shown[i] + "–" + shown[j]);
    else for (let k = i; k <= j; k++) out.push(shown[k]);
    i = j + 1;
  }
  return out;
}

const MAX_PICK_KEYS = 12; // more than this and the line names the first ten and the last

/**
 * The keys line for the task on screen, as parts to show: [{keys: [...], join, text}], each key
 * shown as a <kbd>, the keys of a part joined by `join`.
 */
export function keysHelp({ pickKeys = [], binary = false } = {}) {
  if (binary) {
    return [
      { keys: [BINARY_KEYS.accept, "Enter"], join: " or ", text: "accept" },
      { keys: [BINARY_KEYS.reject], join: ", ", text: "reject" },
      { keys: ["Space"], join: ", ", text: "ignore" },
      { keys: ["Backspace"], join: ", ", text: "undo" },
    ];
  }
  let ranges = keyRanges(pickKeys);
  if (ranges.length > MAX_PICK_KEYS) ranges = ranges.slice(0, 10).concat(["…", ranges[ranges.length - 1]]);
  const parts = ranges.length ? [{ keys: ranges, join: ", ", text: "pick a label" }] : [];
  return parts.concat([
    { keys: ["Enter"], join: ", ", text: "accept" },
    { keys: ["Space"], join: ", ", text: "skip" },
    { keys: ["Backspace"], join: ", ", text: "undo" },
  ]);
}

// The same line as plain text, e.g. "1–9, 0, q pick a label · Enter accept · ...".
export function keysHelpText(parts) {
  return parts.map((p) => p.keys.join(p.join) + " " + p.text).join(" · ");
}

function releaseClickedControl(e) {
  const control = e.target && e.target.closest ? e.target.closest("button, summary") : null;
  if (control && e.detail > 0 && !control.classList.contains("label")) control.blur();
}

// Space activates a focused button on keyup; where the keydown handler acted, it must not.
function onKeyUp(e) {
  if (SPACE.has(e.key) && !ownsEnterAndSpace(e.target)) e.preventDefault();
}

// actions: {ready(), context() (keyCommand's), pick(index), accept(), reject(), skip(), undo()};
// keys do nothing until ready().
export function installKeys(doc, actions) {
  doc.addEventListener("keydown", (e) => {
    if (!actions.ready()) return;
    const c = keyCommand(e, actions.context());
    if (!c) return;
    e.preventDefault();
    if (c.command === "pick") actions.pick(c.index);
    else if (c.command) actions[c.command]();
  });
  doc.addEventListener("keyup", onKeyUp);
  doc.addEventListener("click", releaseClickedControl);
}
