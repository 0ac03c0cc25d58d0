// A task's key, options and preselected guess.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  binaryLabel, isAudit, modelGuess, optionsFor, preselected, recordFields, taskKey,
} from "../../retrain_loop/server/static/tasks.js";

const LABELS = ["red", "green", "blue"];

test("a task is known by its task hash, else its id, else its content", () => {
  assert.equal(taskKey({ _task_hash: 0, id: "a" }), "t:0");
  assert.equal(taskKey({ _task_hash: null, id: "a" }), "i:a");
  assert.equal(taskKey({ r: 1 }), 'j:{"r":1}');
  assert.equal(taskKey({ _task_hash: 5, answer: "accept" }), taskKey({ _task_hash: 5 }), "an answer keeps its task's key");
});

test("a task's own options win over the project's labels", () => {
  assert.deepEqual(optionsFor({}, LABELS).map((o) => o.id), LABELS);
  assert.deepEqual(optionsFor({ options: [] }, LABELS).map((o) => o.id), LABELS);
  assert.deepEqual(optionsFor({ options: [{ id: 1, text: "One" }, { text: "two" }, 3] }, LABELS),
    [{ id: "1", text: "One" }, { id: "two", text: "two" }, { id: "3", text: "3" }]);
});

test("the guess is preselected only when it is one of the options, and never on a random check", () => {
  assert.equal(preselected({ accept: ["green"] }, LABELS), "green");
  assert.equal(preselected({ accept: ["purple"] }, LABELS), null);
  assert.equal(preselected({}, LABELS), null);
  const audit = { accept: ["green"], meta: { source: "audit" } };
  assert.equal(isAudit(audit), true);
  assert.equal(modelGuess(audit), null);
  assert.equal(preselected(audit, LABELS), null);
});

test("in binary mode a task with one of the labels is a yes/no question; otherwise it is multiple choice", () => {
  assert.equal(binaryLabel({ label: "green" }, "binary", LABELS), "green");
  assert.equal(binaryLabel({}, "binary", LABELS), null, "no model yet, or a random check");
  assert.equal(binaryLabel({ label: "mauve" }, "binary", LABELS), null, "not a label");
  assert.equal(binaryLabel({ label: 3 }, "binary", LABELS), null);
  assert.equal(binaryLabel({ label: "green" }, "choice", LABELS), null, "in choice mode a label column is data");
  assert.equal(binaryLabel({ label: "green" }, undefined, LABELS), null, "an older server: choice");
});

test("a record shows its own fields, not the engine's bookkeeping, nor a question's label", () => {
  const task = { id: 1, x: 2, label: "green", _input_hash: 3, options: [], accept: [], meta: {}, answer: "accept" };
  assert.deepEqual(recordFields(task), ["id", "x", "label"]);
  assert.deepEqual(recordFields(task, { binary: true }), ["id", "x"]);
});
