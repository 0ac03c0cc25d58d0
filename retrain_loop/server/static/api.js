/* The server's HTTP API as the page uses it, with FastAPI's error detail turned into text.
 *
 * A request that gets no response at all (the server stopped, the network gone, no answer within
 * READ_TIMEOUT_MS for a read) throws an error with `away: true`; watchServer's listener hears
 * false then, and true on any response, even an error status: the server is answering.
 */

const KEEPALIVE_MAX_BYTES = 60000; // browsers cap keepalive bodies at 64 KiB
const READ_TIMEOUT_MS = 15000;
const JSON_HEADERS = { "Content-Type": "application/json", Accept: "application/json" };

let listener = () => {};

export function watchServer(fn) { listener = fn; }

async function request(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    listener(false);
    const away = new Error("the server is not answering (" + String(err && err.message ? err.message : err) + ")");
    away.away = true;
    throw away;
  }
  listener(true);
  return response;
}

function readSignal() {
  return typeof AbortSignal !== "undefined" && AbortSignal.timeout ? AbortSignal.timeout(READ_TIMEOUT_MS) : undefined;
}

// FastAPI sends {"detail": "text"} or, for validation errors, {"detail": [{loc, msg}, ...]}.
export function describeDetail(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      if (d && typeof d === "object" && d.msg !== undefined) {
        const loc = Array.isArray(d.loc) ? d.loc.filter((x) => x !== "body").join(".") : "";
        return (loc ? loc + ": " : "") + String(d.msg);
      }
      return JSON.stringify(d);
    }).join("; ");
  }
  return JSON.stringify(detail);
}

export async function errorText(response) {
  let text = response.status + " " + (response.statusText || "");
  try {
    const body = await response.text();
    if (body) {
      try {
        const parsed = JSON.parse(body);
        text += ": " + describeDetail(parsed && parsed.detail !== undefined ? parsed.detail : parsed);
      } catch (e) {
        text += ": " + body.slice(0, 300);
      }
    }
  } catch (e) { /* body unreadable */ }
  return text.trim();
}

export function messageOf(err) {
  return String(err && err.message ? err.message : err);
}

export async function postJSON(url, body) {
  const response = await request(url, {
    method: "POST", headers: JSON_HEADERS, body: JSON.stringify(body), cache: "no-store",
  });
  if (!response.ok) throw new Error("POST " + url + " failed: " + (await errorText(response)));
  return response.json();
}

export async function getJSON(url) {
  const response = await request(url, {
    headers: { Accept: "application/json" }, cache: "no-store", signal: readSignal(),
  });
  if (!response.ok) throw new Error("GET " + url.split("?")[0] + " failed: " + (await errorText(response)));
  return response.json();
}

// Leasing rows is a write: a POST with a JSON body, which another site's page cannot send.
export async function leaseTasks(session, n, fresh) {
  const data = await postJSON("/api/questions", { session, n, fresh });
  return data && Array.isArray(data.tasks) ? data.tasks : [];
}

// Resolves once the server has stored the answers; throws otherwise. A keepalive request outlives
// the page (pagehide), if its body is small enough for the browser to take it.
export async function postAnswers(session, answers, { keepalive = false } = {}) {
  const body = JSON.stringify({ session, answers });
  const init = { method: "POST", headers: JSON_HEADERS, body };
  if (keepalive && new TextEncoder().encode(body).length < KEEPALIVE_MAX_BYTES) init.keepalive = true;
  const response = await request("/api/answers", init);
  if (!response.ok) throw new Error("Saving answers failed: " + (await errorText(response)));
}

// Undo of an answer the server has stored: it deletes this session's answer to the task and holds
// the row for this session again. Resolves to how many answers it deleted (0 or 1).
export async function retractAnswer(session, entry) {
  const data = await postJSON("/api/retract", {
    session, _input_hash: entry._input_hash, _task_hash: entry._task_hash,
  });
  return data && typeof data.retracted === "number" ? data.retracted : 0;
}

// The page is going away: hand back the rows this session holds, so others get them now rather
// than when the leases run out. A beacon outlives the page; Chromium sends a Blob's type as the
// Content-Type, which the server's write guard asks for. Without a beacon, a keepalive fetch.
export function releaseSession(session) {
  const body = JSON.stringify({ session });
  try {
    if (navigator.sendBeacon && navigator.sendBeacon("/api/release", new Blob([body], { type: "application/json" }))) {
      return "beacon";
    }
  } catch (e) { /* fall through to fetch */ }
  fetch("/api/release", { method: "POST", headers: JSON_HEADERS, body, keepalive: true }).catch(() => {});
  return "fetch";
}
