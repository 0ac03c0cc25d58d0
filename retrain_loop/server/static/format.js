/* Number formatting and type checks for the side panel; pure, no DOM. */

export function isNum(v) {
  return v !== null && v !== undefined && v !== "" && typeof v !== "boolean" && isFinite(Number(v));
}

export function percent(v) { return Math.round(Number(v) * 100) + "%"; }

export function plural(n, one, many) { return String(n) + " " + (n === 1 ? one : many); }

export function objectOr(v) { return v && typeof v === "object" && !Array.isArray(v) ? v : null; }

export function clamp01(v) { return Math.max(0, Math.min(1, Number(v))); }

export function confidencePct(est) {
  return est && isNum(est.confidence) ? Math.round(Number(est.confidence) * 100) : 95;
}

export function fmtMs(v) {
  const n = Number(v);
  if (v === null || v === undefined || !isFinite(n)) return "–";
  return n >= 100 ? String(Math.round(n)) : n.toFixed(1);
}

// 1234567 -> "1,234,567".
export function grouped(n) { return String(Math.round(Number(n))).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
