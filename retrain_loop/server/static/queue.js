/* The tasks this page holds: those fetched and not shown yet, the one on screen, and leasing more
 * when fewer than half a batch remains.
 *
 * No DOM: lease(n, fresh) is passed in and resolves to a list of tasks; onShow(task or null) is
 * called whenever another task (or none) comes on screen.
 */
import { taskKey } from "./tasks.js";

export function createQueue({ lease, batchSize, onShow, onFailed = () => {}, onRecovered = () => {} }) {
  const held = [];          // fetched, not shown yet
  const seen = new Set();   // keys of tasks fetched, shown or answered on this page
  let current = null;       // the task on screen
  let fetching = false;     // a lease is in flight
  let failed = false;       // the last lease failed
  let fresh = true;         // the first lease asks for fresh rows
  let exhausted = false;    // the last lease brought nothing new

  function next(allowFetch) {
    current = held.length ? held.shift() : null;
    onShow(current);
    if (allowFetch) maybeFetch();
  }

  function maybeFetch() {
    if (fetching || failed) return; // after a failure the page's tick retries
    const local = held.length + (current ? 1 : 0);
    if (local >= batchSize / 2) return;
    // After an empty answer, ask again only once the screen runs dry (and then from the tick).
    if (exhausted && current) return;
    fetchMore();
  }

  async function fetchMore() {
    if (fetching) return;
    fetching = true;
    let added = 0;
    try {
      const tasks = await lease(batchSize, fresh);
      fresh = false;
      (Array.isArray(tasks) ? tasks : []).forEach((task) => {
        if (!task || typeof task !== "object") return;
        const key = taskKey(task);
        if (seen.has(key)) return;
        seen.add(key);
        held.push(task);
        added++;
      });
      exhausted = added === 0;
      if (failed) {
        failed = false;
        onRecovered();
      }
    } catch (err) {
      failed = true;
      onFailed(err);
    } finally {
      fetching = false;
    }
    if (!current) next(added > 0);
    else if (added > 0) maybeFetch();
  }

  return {
    next, maybeFetch, fetchMore, batchSize,
    markSeen(task) { seen.add(taskKey(task)); },
    // Undo: the task answered last comes back on screen, the one shown goes back to the front.
    putBack(task) {
      if (current) held.unshift(current);
      current = task;
    },
    get current() { return current; },
    get fetching() { return fetching; },
    get failed() { return failed; },
    // Nothing left to show, nothing on the way, and the server had nothing more to give.
    get done() { return exhausted && !fetching && !failed; },
    get dry() { return !current && held.length === 0; },
  };
}
