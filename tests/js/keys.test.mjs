// Which keydowns the page takes, and that a control reached with the keyboard keeps Enter and Space.
import assert from "node:assert/strict";
import { test } from "node:test";

import { keyCommand, ownsEnterAndSpace } from "../../retrain_loop/server/static/keys.js";

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
