// What the page says when the server is away, when it has no tasks, and to screen readers.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  announceText, failureText, inTime, noTasksText, scoredText, serverAwayText,
} from "../../retrain_loop/server/static/messages.js";

test("the server-away banner says what happened and that the answers are kept", () => {
  assert.equal(serverAwayText(3), "The server is not answering; your 3 answers are kept in this browser " +
    "and will be sent when it is back. Trying again every few seconds.");
  assert.match(serverAwayText(1), /your 1 answer is kept in this browser/);
  assert.match(serverAwayText(0), /^The server is not answering; nothing is lost/);
  for (const n of [0, 1, 5]) assert.doesNotMatch(serverAwayText(n), /fetch/i);
});

test("seconds until something happens, in words", () => {
  assert.equal(inTime(null), null);
  assert.equal(inTime(undefined), null);
  assert.equal(inTime("soon"), null);
  assert.equal(inTime(0), "now");
  assert.equal(inTime(42), "in under a minute");
  assert.equal(inTime(60), "in 1 min");
  assert.equal(inTime(539.2), "in 9 min", "minutes round up: it is not free before");
  assert.equal(inTime(3600), "in 1 h");
  assert.equal(inTime(3725), "in 1 h 3 min");
});

test("no more tasks: how many rows are out and when the first frees up", () => {
  assert.equal(noTasksText({ n_out: 10, next_release_s: 540, n_remaining: 10 }),
    "No more tasks for now: 10 rows are out with other annotators or closed pages; the first frees up in 9 min.");
  assert.equal(noTasksText({ n_out: 1, next_release_s: 12 }),
    "No more tasks for now: 1 row is out with other annotators or closed pages; the first frees up in under a minute.");
  assert.equal(noTasksText({ n_out: 2 }),
    "No more tasks for now: 2 rows are out with other annotators or closed pages.", "an older server: no time");
  assert.equal(noTasksText({ n_out: 0, next_release_s: null, n_remaining: 0 }), "No more tasks: every row is answered.");
  assert.equal(noTasksText({ n_out: 0, n_remaining: 4 }), "No more tasks for now.");
  assert.equal(noTasksText(null), "No more tasks for now.", "before the first stats");
  assert.match(noTasksText({ n_out: 8, next_release_s: 590 }, { held: 5 }), /: 3 rows are out/,
    "rows held for this page's unsent answers are not out with others");
  assert.equal(noTasksText({ n_out: 5, n_remaining: 5 }, { held: 5 }), "No more tasks for now.");
});

test("each new task is announced in a few words", () => {
  const colour = { hex: "#a1b2c3", r: 161, g: 178, b: 195, accept: ["blue"], meta: { source: "active" } };
  assert.equal(announceText(colour, { n: 3, view: "colour" }), "Task 3: colour #a1b2c3. Model suggests blue.");
  assert.equal(announceText({ ...colour, meta: { source: "audit" } }, { n: 4, view: "colour" }),
    "Task 4: colour #a1b2c3. Random check.");
  assert.equal(announceText({ ...colour, label: "blue", accept: [] }, { n: 5, view: "colour", binary: "blue" }),
    "Task 5: colour #a1b2c3. Is it blue?");
  const wide = Object.fromEntries(Array.from({ length: 30 }, (_, i) => ["f" + i, i]));
  const record = { ...wide, _input_hash: 1, _task_hash: 2, options: [], accept: [], meta: {} };
  assert.equal(announceText(record, { n: 1, view: "record" }), "Task 1: record with 30 fields.");
  assert.equal(announceText({ ...record, label: "x" }, { n: 1, view: "record", binary: "x" }),
    "Task 1: record with 30 fields. Is it x?", "the question's label is not a field");
  assert.equal(announceText({ f: 1 }, { n: 2, view: "record" }), "Task 2: record with 1 field.");
  assert.equal(announceText({ id: "img7", image: "a.png" }, { n: 1, view: "image" }), "Task 1: image img7.");
});

test("a refused request says what failed and what is kept; a server away is left to its own banner", () => {
  assert.equal(failureText("post", new Error("Saving answers failed: 500: disk on fire"), 5),
    "Saving answers failed: 500: disk on fire — 5 answers kept; they will be sent again.");
  assert.equal(failureText("post", new Error("413: too big"), 2),
    "Saving answers failed: 413: too big — 2 answers kept; they will be sent again.");
  assert.equal(failureText("undo", new Error("POST /api/retract failed: 404"), 0),
    "Undo did not reach the server: POST /api/retract failed: 404 — answer this task again to replace the stored answer.");
  assert.equal(failureText("lease", new Error("POST /api/questions failed: 500"), 0), "POST /api/questions failed: 500");
  const away = Object.assign(new Error("the server is not answering"), { away: true });
  for (const kind of ["post", "undo", "lease"]) assert.equal(failureText(kind, away, 3), null);
});

test("how much of the pool the ranking has seen, only while the model has not scored it all", () => {
  assert.equal(scoredText({ n_scored: 36864, n_unscored: 962126 }),
    "Ranked from the 36,864 of 998,990 open rows the model has scored so far; the rest are being scored.");
  assert.equal(scoredText({ n_scored: 4990, n_unscored: 0 }), null, "every open row scored");
  assert.equal(scoredText({ n_scored: null, n_unscored: 0 }), null, "no model yet");
  assert.equal(scoredText({}), null, "an older server");
  assert.equal(scoredText(null), null);
});
