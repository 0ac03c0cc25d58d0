/* The server's HTTP API as the page uses it, with FastAPI's error detail turned into text. */

const KEEPALIVE_MAX_BYTES = 60000; // browsers cap keepalive bodies at 64 KiB
const JSON_HEADERS = { "Content-Type": "application/json", Accept: "application/json" };

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
  const response = await fetch(url, {
    method: "POST", headers: JSON_HEADERS, body: JSON.stringify(body), cache: "no-store",
  });
  if (!response.ok) throw new Error("POST " + url + " failed: " + (await errorText(response)));
  return response.json();
}

export async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
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
  const response = await fetch("/api/answers", init);
  if (!response.ok) throw new Error("Saving answers failed: " + (await errorText(response)));
}
