// The outbox's guarantees: no answer is lost, none is sent twice at once, and what storage holds is
// exactly what the server has not acknowledged.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { createOutbox, outboxKey } from "../../retrain_loop/server/static/outbox.js";
import { answer, controlledServer, memoryStorage, settle } from "./helpers.mjs";

const KEY = outboxKey("colours", "ann");

function setup({ storage = memoryStorage(), maxPerPost } = {}) {
  const server = controlledServer();
  const events = { sent: [], failed: [] };
  const outbox = createOutbox({
    storage, key: KEY, post: server.call, maxPerPost,
    onSent: (batch, recovered) => events.sent.push({ batch, recovered }),
    onFailed: (err) => events.failed.push(err),
  });
  return { outbox, server, storage, events };
}

const stored = (storage) => JSON.parse(storage.getItem(KEY) ?? "[]");
const hashes = (entries) => entries.map((e) => e._task_hash);

describe("acknowledgement", () => {
  test("an answer stays, in memory and in storage, until the server acknowledged it", async () => {
    const { outbox, server, storage } = setup();
    outbox.add(answer(1));
    const done = outbox.flush();
    await settle();
    assert.equal(server.calls.length, 1);
    assert.deepEqual(hashes(server.calls[0].payload), [1]);
    assert.equal(outbox.posting, true);
    assert.equal(outbox.size, 1, "dropped before the server answered");
    assert.deepEqual(hashes(stored(storage)), [1]);

    server.calls[0].resolve();
    assert.equal(await done, true);
    assert.equal(outbox.size, 0);
    assert.equal(outbox.posting, false);
    assert.equal(storage.getItem(KEY), null, "an empty outbox leaves nothing in storage");
  });

  test("a failed post keeps every answer, and the next flush sends them again", async () => {
    const { outbox, server, storage, events } = setup();
    outbox.add(answer(1));
    outbox.add(answer(2));
    const first = outbox.flush();
    await settle();
    server.calls[0].reject(new Error("500 disk on fire"));
    assert.equal(await first, false);
    assert.deepEqual(hashes(outbox.entries), [1, 2]);
    assert.deepEqual(hashes(stored(storage)), [1, 2]);
    assert.equal(outbox.failing, true);
    assert.equal(events.failed.length, 1);
    assert.equal(events.sent.length, 0);

    const second = outbox.flush();
    await settle();
    assert.equal(server.calls.length, 2);
    assert.deepEqual(hashes(server.calls[1].payload), [1, 2]);
    server.calls[1].resolve();
    assert.equal(await second, true);
    assert.equal(outbox.size, 0);
    assert.equal(outbox.failing, false);
    assert.deepEqual(events.sent.map((e) => e.recovered), [true], "the success after a failure says so");
  });

  test("a long outbox goes in posts of at most maxPerPost; a failure part way keeps the rest", async () => {
    const { outbox, server, storage } = setup({ maxPerPost: 2 });
    [1, 2, 3, 4, 5].forEach((h) => outbox.add(answer(h)));
    const done = outbox.flush();
    await settle();
    assert.deepEqual(hashes(server.calls[0].payload), [1, 2]);
    server.calls[0].resolve();
    await settle();
    assert.equal(server.calls.length, 2, "the rest follows once the first post succeeded");
    assert.deepEqual(hashes(server.calls[1].payload), [3, 4]);
    server.calls[1].reject(new Error("network down"));
    assert.equal(await done, false);
    assert.equal(server.calls.length, 2, "nothing more is tried after a failure");
    assert.deepEqual(hashes(outbox.entries), [3, 4, 5]);
    assert.deepEqual(hashes(stored(storage)), [3, 4, 5]);
  });

  test("an answer given while a post is in flight is not taken as sent by it", async () => {
    const { outbox, server, storage } = setup();
    outbox.add(answer(1));
    const done = outbox.flush();
    await settle();
    outbox.add(answer(2));
    server.calls[0].resolve();
    await done;
    assert.deepEqual(hashes(outbox.entries), [2]);
    assert.deepEqual(hashes(stored(storage)), [2]);
  });
});

describe("restore after a reload", () => {
  test("gives back exactly the answers not acknowledged", async () => {
    const storage = memoryStorage();
    const before = setup({ storage, maxPerPost: 2 });
    [1, 2, 3].forEach((h) => before.outbox.add(answer(h, "blue")));
    const done = before.outbox.flush();
    await settle();
    before.server.calls[0].resolve(); // 1 and 2 are stored on the server
    await settle();
    before.server.calls[1].reject(new Error("gone")); // 3 is not
    await done;
    before.outbox.add(answer(4, "green"));

    // The page is reloaded: a new outbox over the same storage.
    const after = setup({ storage });
    const restored = after.outbox.restore();
    assert.deepEqual(restored, [answer(3, "blue"), answer(4, "green")]);
    assert.deepEqual(after.outbox.entries, restored);
  });

  test("storage for another dataset or session is not read", () => {
    const storage = memoryStorage({ [outboxKey("colours", "other")]: JSON.stringify([answer(9)]) });
    assert.deepEqual(setup({ storage }).outbox.restore(), []);
  });

  test("what is not an answer is left out, and unreadable storage is cleared", () => {
    const mixed = memoryStorage({ [KEY]: JSON.stringify([answer(1), { answer: "accept" }, null, { _task_hash: 2 }, 7]) });
    assert.deepEqual(hashes(setup({ storage: mixed }).outbox.restore()), [1]);
    const broken = memoryStorage({ [KEY]: "[{not json" });
    assert.deepEqual(setup({ storage: broken }).outbox.restore(), []);
    assert.equal(broken.getItem(KEY), null);
  });

  test("a storage that throws loses only the mirror: the answers are still sent", async () => {
    const throwing = {
      getItem() { throw new Error("blocked"); },
      setItem() { throw new Error("quota exceeded"); },
      removeItem() { throw new Error("blocked"); },
    };
    const { outbox, server } = setup({ storage: throwing });
    assert.deepEqual(outbox.restore(), []);
    outbox.add(answer(1));
    assert.equal(outbox.size, 1);
    const done = outbox.flush();
    await settle();
    assert.deepEqual(hashes(server.calls[0].payload), [1]);
    server.calls[0].resolve();
    assert.equal(await done, true);
    assert.equal(outbox.size, 0);
  });
});

describe("revising and undoing", () => {
  test("a second answer to the same task replaces the unsent one", () => {
    const { outbox, storage } = setup();
    outbox.add(answer(1, "red"));
    outbox.add(answer(2, "red"));
    outbox.add(answer(1, "blue"));
    assert.deepEqual(outbox.entries, [answer(1, "blue"), answer(2, "red")]);
    assert.deepEqual(stored(storage), [answer(1, "blue"), answer(2, "red")]);
  });

  test("a revision made while the first answer is in flight is still sent", async () => {
    const { outbox, server } = setup();
    outbox.add(answer(1, "red"));
    const done = outbox.flush();
    await settle();
    outbox.add(answer(1, "blue"));
    server.calls[0].resolve();
    await done;
    assert.deepEqual(outbox.entries, [answer(1, "blue")]);
  });

  test("undo of an unsent answer takes it out of memory and storage", () => {
    const { outbox, storage } = setup();
    const first = answer(1);
    const second = answer(2);
    outbox.add(first);
    outbox.add(second);
    assert.equal(outbox.remove(second), true);
    assert.deepEqual(outbox.entries, [first]);
    assert.deepEqual(stored(storage), [first]);
    assert.equal(outbox.remove(first), true);
    assert.equal(storage.getItem(KEY), null);
  });

  test("undo of an answer the server has is a no-op", async () => {
    const { outbox, server } = setup();
    const first = answer(1);
    outbox.add(first);
    const done = outbox.flush();
    await settle();
    server.calls[0].resolve();
    await done;
    outbox.add(answer(2));
    assert.equal(outbox.remove(first), false);
    assert.deepEqual(hashes(outbox.entries), [2]);
  });

  test("undo while its post is in flight: the answer does not come back when that post fails", async () => {
    const { outbox, server, storage } = setup();
    const first = answer(1);
    outbox.add(first);
    outbox.add(answer(2));
    const done = outbox.flush();
    await settle();
    outbox.remove(first);
    server.calls[0].reject(new Error("503"));
    await done;
    assert.deepEqual(hashes(outbox.entries), [2]);
    assert.deepEqual(hashes(stored(storage)), [2]);
  });
});

describe("one post at a time", () => {
  test("flushes asked for during a post wait for it, then send only what is new", async () => {
    const { outbox, server } = setup();
    outbox.add(answer(1));
    const first = outbox.flush();
    await settle();
    outbox.add(answer(2));
    const second = outbox.flush({ keepalive: true });
    const third = outbox.flush();
    await settle();
    assert.equal(server.calls.length, 1, "a second post went out while the first was in flight");

    server.calls[0].resolve();
    await settle();
    assert.equal(server.calls.length, 2, "the flush asked for meanwhile did not follow");
    assert.deepEqual(hashes(server.calls[1].payload), [2], "an answer was sent twice");
    assert.equal(server.calls[1].options.keepalive, true, "the follow-up lost the keepalive wish");
    server.calls[1].resolve();
    assert.deepEqual(await Promise.all([first, second, third]), [true, true, true]);
    await settle();
    assert.equal(server.calls.length, 2);
    assert.equal(outbox.size, 0);
  });

  test("after a failed post, the flushes asked for meanwhile do not hammer the server", async () => {
    const { outbox, server } = setup();
    outbox.add(answer(1));
    const first = outbox.flush();
    await settle();
    outbox.flush();
    server.calls[0].reject(new Error("down"));
    assert.equal(await first, false);
    await settle();
    assert.equal(server.calls.length, 1);
    assert.equal(outbox.posting, false);
    assert.equal(outbox.size, 1);
  });

  test("an empty outbox posts nothing", async () => {
    const { outbox, server } = setup();
    assert.equal(await outbox.flush(), true);
    assert.equal(server.calls.length, 0);
  });

  test("a post function that throws at once still leaves the outbox able to flush", async () => {
    let attempts = 0;
    const outbox = createOutbox({
      storage: memoryStorage(), key: KEY,
      post: () => { attempts++; if (attempts === 1) throw new Error("sync failure"); return Promise.resolve(); },
    });
    outbox.add(answer(1));
    assert.equal(await outbox.flush(), false);
    assert.equal(outbox.posting, false);
    assert.equal(await outbox.flush(), true);
    assert.equal(outbox.size, 0);
  });
});
