/* The page's keys: 1–9 pick a label, Enter accepts, Space skips, Backspace undoes.
 *
 * keyCommand() is pure (it reads only the event's fields and its target's tag, class and
 * ancestors), so Node can test it.
 */

const SPACE = new Set([" ", "Spacebar"]);
const TYPING = new Set(["INPUT", "TEXTAREA", "SELECT"]);

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
 * {command, index} with command one of "pick", "accept", "skip", "undo", or null for a held-down
 * key that is swallowed without acting again.
 */
export function keyCommand(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return null;
  const t = e.target;
  if (t && (TYPING.has(t.tagName) || t.isContentEditable)) return null;
  const key = typeof e.key === "string" ? e.key : "";
  if ((key === "Enter" || SPACE.has(key)) && ownsEnterAndSpace(t)) return null;
  if (key.length === 1 && key >= "1" && key <= "9") return { command: "pick", index: Number(key) - 1 };
  const command = key === "Enter" ? "accept" : SPACE.has(key) ? "skip" : key === "Backspace" ? "undo" : undefined;
  if (command === undefined) return null;
  return { command: e.repeat ? null : command };
}

function releaseClickedControl(e) {
  const control = e.target && e.target.closest ? e.target.closest("button, summary") : null;
  if (control && e.detail > 0 && !control.classList.contains("label")) control.blur();
}

// Space activates a focused button on keyup; where the keydown handler acted, it must not.
function onKeyUp(e) {
  if (SPACE.has(e.key) && !ownsEnterAndSpace(e.target)) e.preventDefault();
}

// actions: {ready(), pick(index), accept(), skip(), undo()}; keys do nothing until ready().
export function installKeys(doc, actions) {
  doc.addEventListener("keydown", (e) => {
    if (!actions.ready()) return;
    const c = keyCommand(e);
    if (!c) return;
    e.preventDefault();
    if (c.command === "pick") actions.pick(c.index);
    else if (c.command) actions[c.command]();
  });
  doc.addEventListener("keyup", onKeyUp);
  doc.addEventListener("click", releaseClickedControl);
}
