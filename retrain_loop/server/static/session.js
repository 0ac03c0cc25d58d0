/* Who is annotating: the session name from ?session=…, else the one this browser used before,
 * else a new random one; and the page's localStorage, which may be blocked.
 */

export const SESSION_RE = /^[A-Za-z0-9_.@-]{1,64}$/; // what the server accepts as a session name
const SESSION_KEY = "retrain_loop.session";

// Any of these may throw where the browser blocks storage; the outbox and attempt() catch that.
export const storage = {
  getItem: (k) => window.localStorage.getItem(k),
  setItem: (k, v) => window.localStorage.setItem(k, v),
  removeItem: (k) => window.localStorage.removeItem(k),
};

function attempt(fn) {
  try { return fn(); } catch (e) { return null; }
}

function randomSuffix(n) {
  const chars = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(bytes, (b) => chars[b % chars.length]).join("");
}

export function resolveSession() {
  const fromUrl = new URLSearchParams(window.location.search).get("session");
  if (fromUrl && fromUrl.trim()) return fromUrl.trim();
  const stored = attempt(() => storage.getItem(SESSION_KEY));
  if (stored) return stored;
  const made = "annotator-" + randomSuffix(4);
  attempt(() => storage.setItem(SESSION_KEY, made));
  return made;
}
