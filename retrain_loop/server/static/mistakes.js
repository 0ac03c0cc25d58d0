/* Mistakes on random checks: the confusion table and per-label precision and recall. */
import { cell, clearChildren } from "./dom.js";
import { isNum, objectOr, percent } from "./format.js";

// el: {mistakes, mistakesSummary, confusion, quality}; est: the stats' audit estimate.
export function renderMistakes(el, est) {
  const confusion = est ? objectOr(est.confusion) : null;
  const n = est && isNum(est.n) ? Number(est.n) : 0;
  if (!confusion || n <= 0 || !Array.isArray(confusion.labels) || !Array.isArray(confusion.matrix)) {
    el.mistakes.hidden = true;
    return;
  }
  const labels = confusion.labels.map(String);
  const m = labels.map((_, i) => {
    const row = Array.isArray(confusion.matrix[i]) ? confusion.matrix[i] : [];
    return labels.map((_, j) => (isNum(row[j]) ? Number(row[j]) : 0));
  });
  const rowSum = m.map((row) => row.reduce((a, b) => a + b, 0));
  const colSum = labels.map((_, j) => m.reduce((a, row) => a + row[j], 0));
  const total = rowSum.reduce((a, b) => a + b, 0);
  const hits = m.reduce((a, row, i) => a + row[i], 0);
  // Labels no random check has touched (as answer or prediction) would be empty rows and columns.
  const keep = [];
  labels.forEach((_, i) => { if (rowSum[i] + colSum[i] > 0) keep.push(i); });
  const rowsName = confusion.rows ? String(confusion.rows) : "annotator's label";
  const colsName = confusion.columns ? String(confusion.columns) : "model's prediction";

  el.mistakesSummary.textContent = "Mistakes on random checks: " + (total - hits) + " of " + total;
  renderConfusion(el.confusion, { labels, m, keep, rowsName, colsName });
  renderQuality(el.quality, { labels, keep, rowSum, perLabel: objectOr(est.per_label) || {} });
  el.mistakes.hidden = false;
}

function renderConfusion(table, { labels, m, keep, rowsName, colsName }) {
  clearChildren(table);
  table.appendChild(cell("caption", "Rows: " + rowsName + "; columns: " + colsName + "." +
    (keep.length < labels.length ? " Labels no random check has met are left out." : "")));
  const thead = document.createElement("thead");
  const top = document.createElement("tr");
  const corner = cell("th", rowsName + " ↓", "corner");
  corner.rowSpan = 2;
  corner.scope = "col";
  top.appendChild(corner);
  const colsHead = cell("th", colsName + " →", "cols-name");
  colsHead.colSpan = keep.length;
  colsHead.scope = "colgroup";
  top.appendChild(colsHead);
  thead.appendChild(top);
  const names = document.createElement("tr");
  keep.forEach((j) => {
    const th = cell("th", null, "col-label", colsName + ": " + labels[j]);
    th.scope = "col";
    th.appendChild(cell("span", labels[j]));
    names.appendChild(th);
  });
  thead.appendChild(names);
  table.appendChild(thead);
  const tbody = document.createElement("tbody");
  keep.forEach((i) => {
    const tr = document.createElement("tr");
    tr.dataset.label = labels[i];
    const th = cell("th", labels[i], "row-label", rowsName + ": " + labels[i]);
    th.scope = "row";
    tr.appendChild(th);
    keep.forEach((j) => {
      const v = m[i][j];
      const cls = v === 0 ? "zero" : (i === j ? "hit" : "miss");
      const td = cell("td", v === 0 ? "" : v, cls, labels[i] + " answered, " + labels[j] + " predicted: " + v);
      td.dataset.count = String(v);
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
  });
  table.appendChild(tbody);
}

function renderQuality(table, { labels, keep, rowSum, perLabel }) {
  clearChildren(table);
  table.appendChild(cell("caption", "Precision: share of the model's predictions of a label that were " +
    "right. Recall: share of a label's rows the model got right."));
  const qhead = document.createElement("thead");
  const qtr = document.createElement("tr");
  [["label", ""], ["checks", "random checks the annotator gave this label"], ["precision", ""], ["recall", ""]]
    .forEach((h) => {
      const th = cell("th", h[0], null, h[1] || null);
      th.scope = "col";
      qtr.appendChild(th);
    });
  qhead.appendChild(qtr);
  table.appendChild(qhead);
  const qbody = document.createElement("tbody");
  keep.forEach((i) => {
    const q = objectOr(perLabel[labels[i]]) || {};
    const tr = document.createElement("tr");
    tr.dataset.label = labels[i];
    const th = cell("th", labels[i], "row-label");
    th.scope = "row";
    tr.appendChild(th);
    tr.appendChild(cell("td", isNum(q.support) ? Number(q.support) : rowSum[i], "num"));
    tr.appendChild(cell("td", isNum(q.precision) ? percent(q.precision) : "–", "num"));
    tr.appendChild(cell("td", isNum(q.recall) ? percent(q.recall) : "–", "num"));
    qbody.appendChild(tr);
  });
  table.appendChild(qbody);
}
