/* The outbox: answers given on this page that the server has not acknowledged yet.
 *
 * This is the code that makes sure no answer is lost:
 * - an answer stays here until a post that carried it succeeded. A failed post keeps everything,
 *   and a successful one drops exactly the entries it carried, since an undo or a new answer may
 *   have changed the outbox while it was in flight;
 * - every change is mirrored in storage (localStorage on the page), so after a reload or a crash
 *   restore() gives back what was unsent;
 * - one post at a time: a flush asked for while one is in flight runs when that one has succeeded,
 *   so no entry is ever in two posts at once;
 * - one entry per task: answering a task again replaces its unsent answer.
 *
 * No DOM and no fetch: the storage ({getItem, setItem, removeItem}) and post(answers, {keepalive})
 * are passed in, so Node can test it.
 */
import { taskKey } from "./tasks.js";

export const POST_MAX_ANSWERS = 500; // the server takes at most 1000 answers per request

export function outboxKey(dataset, session) {
  return "retrain_loop.outbox." + String(dataset) + "." + session;
}

function isAnswer(item) {
  return !!item && typeof item === "object" && item._task_hash !== undefined && !!item.answer;
}

const nothing = () => {};

/**
 * post(answers, {keepalive}) resolves when the server has stored the answers and rejects otherwise.
 * onChange() follows every change of size or posting; onSent(batch, recovered) follows each
 * acknowledged post (recovered: the post before it had failed); onFailed(error) follows a failed one.
 */
export function createOutbox({
  storage, key, post, maxPerPost = POST_MAX_ANSWERS,
  onChange = nothing, onSent = nothing, onFailed = nothing,
}) {
  let entries = [];
  let posting = false;
  let running = null;       // the promise of the flush in flight
  let again = false;        // a flush was asked for while one was in flight
  let againKeepalive = false;
  let failing = false;      // the last post failed
  let carrying = new Set(); // the entries of the post in flight

  // A full or blocked storage loses only the mirror: the entries are still held here.
  function persist() {
    try {
      if (entries.length === 0) storage.removeItem(key);
      else storage.setItem(key, JSON.stringify(entries));
    } catch (e) { /* see above */ }
  }

  function put(entry) {
    const k = taskKey(entry);
    const i = entries.findIndex((e) => taskKey(e) === k);
    if (i === -1) entries.push(entry);
    else entries[i] = entry;
  }

  // What an earlier visit left unsent, added to this outbox; returns the entries restored.
  function restore() {
    let raw = null;
    try { raw = storage.getItem(key); } catch (e) { return []; }
    if (!raw) return [];
    let items;
    try {
      items = JSON.parse(raw);
    } catch (e) {
      try { storage.removeItem(key); } catch (e2) { /* nothing to keep */ }
      return [];
    }
    const restored = Array.isArray(items) ? items.filter(isAnswer) : [];
    restored.forEach(put);
    if (restored.length) onChange();
    return restored;
  }

  function add(entry) {
    put(entry);
    persist();
    onChange();
  }

  // Takes back an entry not sent yet; false if it is not here (the server has it already). An
  // entry in the post in flight (sending()) is taken back too, but that post may still store it.
  function remove(entry) {
    const i = entries.indexOf(entry);
    if (i === -1) return false;
    entries.splice(i, 1);
    persist();
    onChange();
    return true;
  }

  // Resolves true when everything in the outbox was acknowledged, false when a post failed.
  function flush({ keepalive = false } = {}) {
    if (posting) {
      again = true;
      againKeepalive = againKeepalive || keepalive;
      return running;
    }
    if (entries.length === 0) return Promise.resolve(true);
    posting = true;
    onChange();
    running = send(keepalive);
    return running;
  }

  async function send(keepalive) {
    try {
      for (;;) {
        const batch = entries.slice(0, maxPerPost);
        const more = entries.length > batch.length;
        carrying = new Set(batch);
        try {
          await post(batch, { keepalive });
        } catch (err) {
          carrying = new Set();
          // Nothing is dropped, and nothing more is tried now: the next flush sends it all again.
          failing = true;
          again = false;
          againKeepalive = false;
          onFailed(err);
          return false;
        }
        const carried = carrying;
        carrying = new Set();
        entries = entries.filter((e) => !carried.has(e));
        persist();
        const recovered = failing;
        failing = false;
        onSent(batch, recovered);
        if (!(more || again) || entries.length === 0) return true;
        keepalive = againKeepalive;
        again = false;
        againKeepalive = false;
      }
    } finally {
      // Cleared in the same turn as the last look at `again`, so no request to flush is missed.
      posting = false;
      running = null;
      onChange();
    }
  }

  return {
    restore, add, remove, flush,
    // The entry is in the post in flight: whether the server stores it is known once settled().
    sending: (entry) => carrying.has(entry),
    settled: () => (running ? running.then(() => undefined, () => undefined) : Promise.resolve()),
    get size() { return entries.length; },
    get entries() { return entries.slice(); },
    get posting() { return posting; },
    get failing() { return failing; },
  };
}
