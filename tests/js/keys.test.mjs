// Which keydowns the page takes, and that a control reached with the keyboard keeps Enter and Space.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  keyCommand, keyRanges, keysHelp, keysHelpText, labelKeys, normalKey, optionKeys, ownsEnterAndSpace,
} from "../../retrain_loop/server/static/keys.js";

// Just enough of an element for keys.js: tag, classes, role, href, parent and closest().
function node({ tag, classes = [], role, href, parent = null, editable = false }) {
  const n = {
    tagName: tag, parent, isContentEditable: editable, role, href,
    classList: { contains: (c) => classes.includes(c) },
    closest(selector) {
      assert.equal(selector.includes(","), true); // a list: button, a[href], summary, [role=button]
      const parts = selector.split(",").map((s) => s.trim());
      for (let at = n; at; at = at.parent) {
        const hit = parts.some((p) => (p === "button" && at.tagName === "BUTTON")
          || (p === "summary" && at.tagName === "SUMMARY")
          || (p === "a[href]" && at.tagName === "A" && at.href)
          || (p === "[role=button]" && at.role === "button"));
        if (hit) return at;
      }
      return null;
    },
  };
  return n;
}

const body = node({ tag: "BODY" });
const undoButton = node({ tag: "BUTTON", parent: body });
const kbdInUndo = node({ tag: "KBD", parent: undoButton });
const labelButton = node({ tag: "BUTTON", classes: ["label"], parent: body });
const labelText = node({ tag: "SPAN", classes: ["label-text"], parent: labelButton });
const summary = node({ tag: "SUMMARY", parent: body });
const link = node({ tag: "A", href: "/x", parent: body });
const anchor = node({ tag: "A", parent: body });
const roleButton = node({ tag: "DIV", role: "button", parent: body });

const key = (k, more = {}) => keyCommand({ key: k, target: body, ...more });

test("with nothing focused: digits pick, Enter accepts, Space skips, Backspace undoes", () => {
  assert.deepEqual(key("1"), { command: "pick", index: 0 });
  assert.deepEqual(key("9"), { command: "pick", index: 8 });
  assert.deepEqual(key("Enter"), { command: "accept" });
  assert.deepEqual(key(" "), { command: "skip" });
  assert.deepEqual(key("Spacebar"), { command: "skip" });
  assert.deepEqual(key("Backspace"), { command: "undo" });
});

test("other keys, and keys with a modifier, are left to the browser", () => {
  for (const k of ["0", "a", "Tab", "Escape", "ArrowDown", "F5", "10"]) assert.equal(key(k), null, k);
  for (const mod of ["ctrlKey", "metaKey", "altKey"]) {
    assert.equal(key("1", { [mod]: true }), null, mod);
    assert.equal(key("Backspace", { [mod]: true }), null, mod);
  }
  assert.equal(keyCommand({ target: body }), null, "an event without a key");
});

test("a held-down key is swallowed but does not answer again; digits still pick", () => {
  assert.deepEqual(key("Enter", { repeat: true }), { command: null });
  assert.deepEqual(key(" ", { repeat: true }), { command: null });
  assert.deepEqual(key("Backspace", { repeat: true }), { command: null });
  assert.deepEqual(key("2", { repeat: true }), { command: "pick", index: 1 });
});

test("typing in a field is never taken", () => {
  for (const tag of ["INPUT", "TEXTAREA", "SELECT"]) {
    const field = node({ tag, parent: body });
    for (const k of ["1", "Enter", " ", "Backspace"]) assert.equal(keyCommand({ key: k, target: field }), null);
  }
  const editable = node({ tag: "DIV", editable: true, parent: body });
  assert.equal(keyCommand({ key: "Backspace", target: editable }), null);
});

test("a focused control keeps Enter and Space, and still lets digits and Backspace through", () => {
  for (const target of [undoButton, kbdInUndo, summary, link, roleButton]) {
    assert.equal(ownsEnterAndSpace(target), true);
    assert.equal(keyCommand({ key: "Enter", target }), null);
    assert.equal(keyCommand({ key: " ", target }), null);
    assert.deepEqual(keyCommand({ key: "3", target }), { command: "pick", index: 2 });
    assert.deepEqual(keyCommand({ key: "Backspace", target }), { command: "undo" });
  }
});

test("a label button does not keep Enter: after a click on a label, Enter accepts", () => {
  for (const target of [labelButton, labelText]) {
    assert.equal(ownsEnterAndSpace(target), false);
    assert.deepEqual(keyCommand({ key: "Enter", target }), { command: "accept" });
    assert.deepEqual(keyCommand({ key: " ", target }), { command: "skip" });
  }
});

test("a link without href, or no target at all, keeps nothing", () => {
  assert.equal(ownsEnterAndSpace(anchor), false);
  assert.equal(ownsEnterAndSpace(null), false);
  assert.deepEqual(keyCommand({ key: "Enter", target: null }), { command: "accept" });
});

// ---- keys for every label

const TWELVE = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "grey", "black", "white"];
const SERVER_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "q", "w"];

test("each label gets the project's key; an older server without keys gives 1–9 to the first nine", () => {
  assert.deepEqual(labelKeys(TWELVE, SERVER_KEYS), SERVER_KEYS);
  assert.deepEqual(labelKeys(TWELVE, undefined), ["1", "2", "3", "4", "5", "6", "7", "8", "9", null, null, null]);
  assert.deepEqual(labelKeys(["a", "b", "c"], ["1", null, ""]), ["1", null, null], "null or empty: no key");
  assert.deepEqual(labelKeys(["a", "b"], ["1"]), ["1", null], "a label past the keys has none");
});

test("an option has its label's key; an option that is no label has none", () => {
  const options = [{ id: "grey" }, { id: "red" }, { id: "mauve" }];
  assert.deepEqual(optionKeys(options, TWELVE, SERVER_KEYS), ["0", "1", null]);
});

test("the key shown on the twelfth label picks the twelfth label", () => {
  const pickKeys = labelKeys(TWELVE, SERVER_KEYS);
  assert.equal(key("w"), null, "not with an older server's keys");
  assert.deepEqual(keyCommand({ key: "w", target: body }, { pickKeys }), { command: "pick", index: 11 });
  assert.deepEqual(keyCommand({ key: "0", target: body }, { pickKeys }), { command: "pick", index: 9 });
  assert.deepEqual(keyCommand({ key: "1", target: body }, { pickKeys }), { command: "pick", index: 0 });
  assert.equal(keyCommand({ key: "e", target: body }, { pickKeys }), null, "no thirteenth label");
});

test("letters match in either case; other keys only as they are", () => {
  const pickKeys = ["1", "q", "W", "F2"];
  assert.deepEqual(keyCommand({ key: "Q", target: body }, { pickKeys }), { command: "pick", index: 1 });
  assert.deepEqual(keyCommand({ key: "w", target: body }, { pickKeys }), { command: "pick", index: 2 });
  assert.deepEqual(keyCommand({ key: "F2", target: body }, { pickKeys }), { command: "pick", index: 3 });
  assert.equal(keyCommand({ key: "f2", target: body }, { pickKeys }), null);
  assert.equal(normalKey("Q"), "q");
  assert.equal(normalKey(""), null);
});

test("a label's key never takes Enter, Space or Backspace, nor a focused control's Enter", () => {
  const pickKeys = ["Enter", " ", "Backspace", "x"];
  assert.deepEqual(keyCommand({ key: "Enter", target: body }, { pickKeys }), { command: "accept" });
  assert.deepEqual(keyCommand({ key: " ", target: body }, { pickKeys }), { command: "skip" });
  assert.deepEqual(keyCommand({ key: "Backspace", target: body }, { pickKeys }), { command: "undo" });
  assert.equal(keyCommand({ key: "Enter", target: undoButton }, { pickKeys }), null);
  assert.deepEqual(keyCommand({ key: "x", target: undoButton }, { pickKeys }), { command: "pick", index: 3 });
});

test("on a yes/no question: a or Enter accepts, x rejects, Space ignores, labels' keys do nothing", () => {
  const binary = { pickKeys: [], binary: true };
  assert.deepEqual(keyCommand({ key: "a", target: body }, binary), { command: "accept" });
  assert.deepEqual(keyCommand({ key: "A", target: body }, binary), { command: "accept" });
  assert.deepEqual(keyCommand({ key: "Enter", target: body }, binary), { command: "accept" });
  assert.deepEqual(keyCommand({ key: "x", target: body }, binary), { command: "reject" });
  assert.deepEqual(keyCommand({ key: " ", target: body }, binary), { command: "skip" });
  assert.deepEqual(keyCommand({ key: "Backspace", target: body }, binary), { command: "undo" });
  assert.deepEqual(keyCommand({ key: "x", target: body, repeat: true }, binary), { command: null });
  assert.equal(keyCommand({ key: "1", target: body }, binary), null);
  assert.equal(keyCommand({ key: "Enter", target: undoButton }, binary), null, "a focused control keeps Enter");
  // On a multiple-choice question of the same project, a and x are labels' keys when they have them.
  const choice = { pickKeys: ["a", "x"], binary: false };
  assert.deepEqual(keyCommand({ key: "x", target: body }, choice), { command: "pick", index: 1 });
});

test("runs of three or more digits in a row are shown as a range; letters one by one", () => {
  assert.deepEqual(keyRanges(SERVER_KEYS), ["1–9", "0", "q", "w"]);
  assert.deepEqual(keyRanges(["1", "2", null, "q"]), ["1", "2", "q"]);
  assert.deepEqual(keyRanges(["3", "4", "5", "7"]), ["3–5", "7"]);
  assert.deepEqual(keyRanges(["h", "j", "k", "l"]), ["h", "j", "k", "l"]);
  assert.deepEqual(keyRanges([]), []);
});

test("the keys line is made from the labels' keys and the task on screen", () => {
  assert.equal(keysHelpText(keysHelp({ pickKeys: SERVER_KEYS })),
    "1–9, 0, q, w pick a label · Enter accept · Space skip · Backspace undo");
  assert.equal(keysHelpText(keysHelp({ pickKeys: ["1", "2", "3"] })),
    "1–3 pick a label · Enter accept · Space skip · Backspace undo");
  assert.equal(keysHelpText(keysHelp({ pickKeys: "asdfghjkl;zq".split("") })),
    "a, s, d, f, g, h, j, k, l, ;, z, q pick a label · Enter accept · Space skip · Backspace undo");
  assert.equal(keysHelpText(keysHelp({ pickKeys: [null, null] })),
    "Enter accept · Space skip · Backspace undo", "no label has a key");
  assert.equal(keysHelpText(keysHelp({ pickKeys: [], binary: true })),
    "a or Enter accept · x reject · Space ignore · Backspace undo");
  const all = "1234567890qwertyuiopasdfghjklzxcvbnm".split("");
  assert.equal(keysHelpText(keysHelp({ pickKeys: all })),
    "1–9, 0, q, w, e, r, t, y, u, i, …, m pick a label · Enter accept · Space skip · Backspace undo");
});
