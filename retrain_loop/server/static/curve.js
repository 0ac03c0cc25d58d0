/* The learning curve: the audit estimate of accuracy with its interval, and kappa between
 * consecutive rounds, against the number of labels, drawn as SVG.
 */
import { clearChildren, svg } from "./dom.js";
import { clamp01, confidencePct, isNum, objectOr, percent, plural } from "./format.js";

const W = 300, H = 170, L = 34, R = 24, T = 8, B = 30;
const PW = W - L - R, PH = H - T - B;
const MAX_DOTS = 40;

function labelsAt(h) {
  if (isNum(h.n_train)) return Number(h.n_train);
  if (isNum(h.n_annotations)) return Number(h.n_annotations);
  return null;
}

function sy(v) { return T + PH - clamp01(v) * PH; }

function emptyNote(text) {
  return svg("text", { x: L + PW / 2, y: T + PH * 0.375 + 4, "text-anchor": "middle", class: "empty" }, text);
}

// node: the <svg>; legendStopped: the legend's "stop first suggested" entry; s: the stats.
export function renderCurve(node, legendStopped, history, s) {
  const stop = objectOr(s.stop);
  const threshold = stop && isNum(stop.threshold) ? clamp01(stop.threshold) : null;
  const conf = confidencePct(objectOr(s.estimate));
  const rounds = history.filter((h) => objectOr(h) && labelsAt(h) !== null);
  const acc = rounds.filter((h) => isNum(h.accuracy));
  const band = acc.filter((h) => isNum(h.low) && isNum(h.high));
  const kap = rounds.filter((h) => isNum(h.kappa));
  const stopped = rounds.filter((h) => h.stop_suggested === true)[0] || null;
  clearChildren(node);
  legendStopped.hidden = stopped === null;

  [0, 0.25, 0.5, 0.75, 1].forEach((v) => {
    node.appendChild(svg("line", { x1: L, x2: L + PW, y1: sy(v), y2: sy(v), class: v === 0 ? "axis" : "grid" }));
    if (v === 0 || v === 0.5 || v === 1) {
      node.appendChild(svg("text", { x: L - 4, y: sy(v) + 3, "text-anchor": "end", class: "tick tick-acc" },
        Math.round(v * 100) + "%"));
      node.appendChild(svg("text", { x: L + PW + 4, y: sy(v) + 3, "text-anchor": "start", class: "tick tick-kappa" },
        String(v)));
    }
  });
  node.appendChild(svg("line", { x1: L, x2: L, y1: T, y2: T + PH, class: "axis" }));
  node.appendChild(svg("line", { x1: L + PW, x2: L + PW, y1: T, y2: T + PH, class: "axis" }));
  node.appendChild(svg("text", { x: L + PW / 2, y: H - 4, "text-anchor": "middle", class: "axis-title" },
    "labels"));
  if (threshold !== null) {
    const thr = svg("line", { x1: L, x2: L + PW, y1: sy(threshold), y2: sy(threshold), class: "threshold" });
    thr.appendChild(svg("title", {}, "stop level: kappa " + threshold));
    node.appendChild(thr);
  }

  if (rounds.length === 0) {
    node.appendChild(emptyNote("no model rounds yet"));
    return;
  }
  let xmax = Math.max.apply(null, rounds.map(labelsAt));
  if (xmax <= 0) xmax = 1;
  const sx = (x) => L + (Math.max(0, x) / xmax) * PW;
  const pt = (x, y) => sx(x).toFixed(1) + "," + sy(y).toFixed(1);

  node.appendChild(svg("text", { x: sx(0), y: T + PH + 12, "text-anchor": "start", class: "tick" }, "0"));
  node.appendChild(svg("text", { x: sx(xmax), y: T + PH + 12, "text-anchor": "end", class: "tick" },
    String(Math.round(xmax))));

  if (stopped) {
    const mark = svg("line", { x1: sx(labelsAt(stopped)), x2: sx(labelsAt(stopped)), y1: T, y2: T + PH, class: "stopped" });
    mark.appendChild(svg("title", {}, "stopping first suggested at round " + String(stopped.round) + ", " +
      labelsAt(stopped) + " labels"));
    node.appendChild(mark);
  }

  if (band.length >= 2) {
    const upper = band.map((h) => pt(labelsAt(h), h.high));
    const lower = band.slice().reverse().map((h) => pt(labelsAt(h), h.low));
    node.appendChild(svg("polygon", { class: "band", points: upper.concat(lower).join(" ") }));
  } else if (band.length === 1) {
    const b = band[0];
    node.appendChild(svg("rect", {
      class: "band", x: (sx(labelsAt(b)) - 3).toFixed(1), width: 6,
      y: sy(b.high).toFixed(1), height: Math.max(1, sy(b.low) - sy(b.high)).toFixed(1),
    }));
  }

  function series(points, key, cls, describe) {
    if (!points.length) return;
    if (points.length > 1) {
      node.appendChild(svg("polyline", {
        class: cls, points: points.map((h) => pt(labelsAt(h), h[key])).join(" "),
      }));
    }
    // A dot per round while they fit; with many rounds only the latest, so the line stays readable.
    const dotted = points.length <= MAX_DOTS ? points : points.slice(-1);
    dotted.forEach((h) => {
      const dot = svg("circle", { cx: sx(labelsAt(h)).toFixed(1), cy: sy(h[key]).toFixed(1), r: 2.6, class: cls + "-dot" });
      dot.appendChild(svg("title", {}, "round " + String(h.round) + ", " + labelsAt(h) + " labels: " + describe(h)));
      node.appendChild(dot);
    });
  }
  series(acc, "accuracy", "acc", (h) => {
    let text = "accuracy " + percent(h.accuracy);
    if (isNum(h.low) && isNum(h.high)) {
      text += " (" + conf + "% interval " + Math.round(Number(h.low) * 100) + "–" + percent(h.high) + ")";
    }
    const nUsed = isNum(h.n_used) ? h.n_used : h.n_audit; // the checks behind that round's estimate
    if (isNum(nUsed)) text += " from " + plural(Number(nUsed), "random check", "random checks");
    return text;
  });
  series(kap, "kappa", "kappa", (h) => "kappa " + Number(h.kappa).toFixed(3) + " with the round before");
  if (!acc.length && !kap.length) node.appendChild(emptyNote("no random checks or rounds to compare yet"));
}
