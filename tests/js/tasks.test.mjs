// A task's key, options and preselected guess.
import assert from "node:assert/strict";
import { test } from "node:test";

import { isAudit, modelGuess, optionsFor, preselected, taskKey } from "../../retrain_loop/server/static/tasks.js";

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
