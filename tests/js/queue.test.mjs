// The task queue: no task shown twice, one lease at a time, more leased when half a batch is left.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createQueue } from "../../retrain_loop/server/static/queue.js";
import { controlledServer, settle } from "./helpers.mjs";

const task = (h) => ({ id: "row" + h, _task_hash: h });

function setup(batchSize = 4) {
  const server = controlledServer();
  const shown = [];
  const queue = createQueue({
    lease: (n, fresh) => server.call({ n, fresh }),
    batchSize,
    onShow: (t) => shown.push(t && t._task_hash),
  });
  return { queue, server, shown };
}

test("one lease at a time; the first asks for fresh rows", async () => {
  const { queue, server, shown } = setup();
  queue.fetchMore();
  queue.fetchMore();
  queue.maybeFetch();
  await settle();
  assert.equal(server.calls.length, 1);
  assert.deepEqual(server.calls[0].payload, { n: 4, fresh: true });
  server.calls[0].resolve([task(1), task(2), task(3), task(4)]);
  await settle();
  assert.deepEqual(shown, [1]);
  assert.equal(queue.current._task_hash, 1);
});

test("a task leased again is not queued again, and answered ones are never shown twice", async () => {
  const { queue, server, shown } = setup();
  queue.fetchMore();
  await settle();
  server.calls[0].resolve([task(1), task(2)]);
  await settle();
  queue.markSeen(queue.current);
  queue.next(true); // two left of a batch of four: lease more
  await settle();
  assert.equal(server.calls.length, 2);
  assert.equal(server.calls[1].payload.fresh, false);
  server.calls[1].resolve([task(1), task(2), task(3)]);
  await settle();
  queue.next(false);
  queue.next(false);
  assert.deepEqual(shown, [1, 2, 3, null]);
});

test("a failed lease is remembered until one succeeds, and nothing more is leased meanwhile", async () => {
  const { queue, server } = setup();
  queue.fetchMore();
  await settle();
  server.calls[0].reject(new Error("502"));
  await settle();
  assert.equal(queue.failed, true);
  assert.equal(queue.done, false);
  queue.maybeFetch();
  await settle();
  assert.equal(server.calls.length, 1);
  queue.fetchMore(); // the page's tick retries
  await settle();
  server.calls[1].resolve([]);
  await settle();
  assert.equal(queue.failed, false);
  assert.equal(queue.done, true, "an empty answer: nothing left to show");
});

test("undo puts the answered task back on screen and the shown one first in line", async () => {
  const { queue, server } = setup(2);
  queue.fetchMore();
  await settle();
  server.calls[0].resolve([task(1), task(2)]);
  await settle();
  const first = queue.current;
  queue.next(false);
  queue.putBack(first);
  assert.equal(queue.current._task_hash, 1);
  queue.next(false);
  assert.equal(queue.current._task_hash, 2);
});
