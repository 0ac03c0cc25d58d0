/* Giving answers and taking them back.
 *
 * An answer still in the outbox is taken back there, and the server never hears of it. One the
 * server may have (posted, or in the post in flight) is retracted there: the server deletes this
 * session's answer to the task and holds the row for this session again, so the counts drop.
 * If the task was answered again meanwhile, nothing is retracted: the new answer replaces the old
 * one on the server, and retracting would delete it instead.
 *
 * No DOM and no fetch: the outbox and retract(entry) (resolving to the number of answers the
 * server deleted) are passed in, so Node can test it.
 */
import { taskKey } from "./tasks.js";

const nothing = () => {};

export function createUndo({ outbox, retract, onRetracted = nothing, onFailed = nothing }) {
  const latest = new Map(); // task key -> the answer this page gave it last, while it stands

  function give(entry) {
    latest.set(taskKey(entry), entry);
    outbox.add(entry);
  }

  /**
   * Takes an answer back; resolves to "local" (it was still in the outbox), "retracted" or
   * "none" (what the server said), "replaced" (answered again meanwhile), or "failed".
   */
  async function takeBack(entry) {
    const key = taskKey(entry);
    if (latest.get(key) === entry) latest.delete(key);
    const inFlight = outbox.sending(entry);
    if (outbox.remove(entry) && !inFlight) return "local";
    if (inFlight) await outbox.settled();
    if (latest.has(key)) return "replaced";
    let n;
    try {
      n = await retract(entry);
    } catch (err) {
      onFailed(err);
      return "failed";
    }
    onRetracted(n);
    return n > 0 ? "retracted" : "none";
  }

  return { give, takeBack };
}
