// Undo: an answer still in the outbox is taken back there; one the server has is retracted there,
// unless the task was answered again meanwhile.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createOutbox } from "../../retrain_loop/server/static/outbox.js";
import { createUndo } from "../../retrain_loop/server/static/undo.js";
import { answer, controlledServer, memoryStorage, settle } from "./helpers.mjs";

function setup() {
  const server = controlledServer();
  const retracts = controlledServer();
  const events = { retracted: [], failed: [] };
  const outbox = createOutbox({ storage: memoryStorage(), key: "k", post: server.call });
  const undo = createUndo({
    outbox,
    retract: (entry) => retracts.call(entry),
    onRetracted: (n) => events.retracted.push(n),
    onFailed: (err) => events.failed.push(err),
  });
  return { outbox, server, retracts, undo, events };
}

// An answer given, posted and acknowledged by the server.
async function givenSaved(outbox, undo, server) {
  const first = answer(1);
  undo.give(first);
  const flushed = outbox.flush();
  await settle();
  server.calls[0].resolve();
  await flushed;
  return first;
}

test("an answer still in the outbox is taken back there; the server hears nothing", async () => {
  const { outbox, undo, retracts, server } = setup();
  const first = answer(1);
  undo.give(first);
  assert.equal(outbox.size, 1);
  assert.equal(await undo.takeBack(first), "local");
  assert.equal(outbox.size, 0);
  assert.equal(retracts.calls.length, 0);
  assert.equal(server.calls.length, 0);
});

test("an answer the server has is retracted there, and the counts are told", async () => {
  const { outbox, undo, retracts, server, events } = setup();
  const first = await givenSaved(outbox, undo, server);
  const taken = undo.takeBack(first);
  await settle();
  assert.equal(retracts.calls.length, 1);
  assert.equal(retracts.calls[0].payload, first);
  retracts.calls[0].resolve(1);
  assert.equal(await taken, "retracted");
  assert.deepEqual(events.retracted, [1]);
});

test("undo while the answer's post is in flight: retracted once the post is done", async () => {
  const { outbox, undo, retracts, server } = setup();
  const first = answer(1);
  undo.give(first);
  outbox.flush();
  await settle();
  assert.equal(outbox.sending(first), true);
  const taken = undo.takeBack(first);
  await settle();
  assert.equal(retracts.calls.length, 0, "retracted before the server had it");
  server.calls[0].resolve();
  await settle();
  assert.equal(retracts.calls.length, 1);
  retracts.calls[0].resolve(1);
  assert.equal(await taken, "retracted");
  assert.equal(outbox.size, 0, "the answer is not sent again");
});

test("undo while a post that then fails is in flight: the answer is gone, the retract finds none", async () => {
  const { outbox, undo, retracts, server } = setup();
  const first = answer(1);
  undo.give(first);
  outbox.flush();
  await settle();
  const taken = undo.takeBack(first);
  server.calls[0].reject(new Error("503"));
  await settle();
  assert.equal(outbox.size, 0);
  retracts.calls[0].resolve(0);
  assert.equal(await taken, "none");
});

test("a task answered again before the retract went out is not retracted: the new answer replaces the old", async () => {
  const { outbox, undo, retracts, server } = setup();
  const first = answer(1, "red");
  undo.give(first);
  outbox.flush();
  await settle();
  const taken = undo.takeBack(first);
  const again = answer(1, "blue");
  undo.give(again);
  server.calls[0].resolve();
  assert.equal(await taken, "replaced");
  assert.equal(retracts.calls.length, 0);
  assert.deepEqual(outbox.entries, [again]);
});

test("a retract that fails is reported", async () => {
  const { outbox, undo, retracts, server, events } = setup();
  const first = await givenSaved(outbox, undo, server);
  const taken = undo.takeBack(first);
  await settle();
  const err = new Error("away");
  retracts.calls[0].reject(err);
  assert.equal(await taken, "failed");
  assert.deepEqual(events.failed, [err]);
  assert.deepEqual(events.retracted, []);
});
