"""Plain-text reports: how good the model is and whether to stop (``retrain-loop status``), a
simulation's summary (``retrain-loop simulate``) and what an import found (``db-in``)."""

from __future__ import annotations

from typing import Any


def status_text(report: dict[str, Any]) -> str:
    """``history.status`` as the lines a terminal shows."""
    lines = [(f"Dataset {report['dataset']}: {report['n_labels']} labels "
             f"({_counts(report['per_label'])}), {report['rounds']} model rounds.")]
    lines += estimate_lines(report["estimate"])
    lines += stop_lines(report["stop"])
    return "\n".join(lines)


def estimate_lines(est: dict[str, Any]) -> list[str]:
    if not est["n"]:
        return [("Accuracy: no audit answers yet, so there is no honest estimate to show. Audit "
                "tasks are a random share of the served tasks (--audit, 0.1 by default); "
                "accuracy on the rows the model chose itself would flatter or wrong it.")]
    lines = [(f"Accuracy: {est['accuracy']:.3f} (95% interval {est['low']:.3f} to {est['high']:.3f}), "
             f"from the latest {est['n']} random checks (audit answers; {est['n_audit']} in all).")]
    labels = est["confusion"]["labels"]
    width = max([len(label) for label in labels] + [5])
    lines += ["", f"{'label':<{width}}  precision  recall  checked"]
    for label in labels:
        row = est["per_label"][label]
        lines.append(f"{label:<{width}}  {_num(row['precision']):>9}  {_num(row['recall']):>6}  "
                     f"{row['support']:>7}")
    lines += ["", "Confusion (rows: the annotator's label, columns: the model's prediction):",
              " " * width + "  " + "  ".join(f"{label[:6]:>6}" for label in labels)]
    for label, counts in zip(labels, est["confusion"]["matrix"]):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{c or '.':>6}" for c in counts))
    return lines


def stop_lines(stop: dict[str, Any]) -> list[str]:
    detail = []
    if stop["kappa"] is not None:
        detail.append(f"last kappa {stop['kappa']:.3f}")
    if stop["mean_kappa"] is not None:
        detail.append(f"mean of the last {stop['window']} rounds {stop['mean_kappa']:.3f}")
    detail.append(f"suggested at {stop['threshold']:g}, which bounds the change in F1 between "
                  f"rounds by {stop['f_change_bound']:.3f}")
    return ["", f"Stop: {stop['message']}", f"      ({'; '.join(detail)})"]


def _counts(per_label: dict[str, int]) -> str:
    return ", ".join(f"{label} {n}" for label, n in per_label.items()) or "none"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_table(summary: list[dict[str, Any]]) -> str:
    """A simulation's summary (``simulate.summarize``) as an aligned table."""
    header = ["strategy", "AULC", "labels to 95%", "final accuracy", "full-data accuracy",
              "stop at", "accuracy at stop", "interval coverage"]

    def fmt(value, never="never") -> str:
        return never if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    rows = [[s["strategy"], f"{s['aulc']:.4f}", fmt(s["labels_to_95pct"]),
             f"{s['final_accuracy']:.4f}", f"{s['full_data_accuracy']:.4f}",
             fmt(s["labels_at_stop"]), fmt(s["accuracy_at_stop"], "-"),
             fmt(s["estimate_coverage"], "-")] for s in summary]
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w)
                               for j, (cell, w) in enumerate(zip(r, widths)))
                     for r in [header, *rows])


def import_lines(report: dict[str, int], pool_path: Any = None) -> list[str]:
    """What ``db-in`` found (``offline.import_report``): how many records match the pool
    (``pool_path``, when one was given), and how many needed hashes or were binary answers."""
    lines = []
    if pool_path is not None:
        matched = sum(report[f"matched by {how}"] for how in ("hash", "id", "content"))
        lines.append(f"{matched} of {report['records']} match a row of {pool_path} (by hash "
                     f"{report['matched by hash']}, by id {report['matched by id']}, by content "
                     f"{report['matched by content']}); {report['matching no pool row']} match "
                     "none")
    for what in ("hashes computed", "binary accepted", "binary rejected"):
        if report[what]:
            lines.append(f"{what}: {report[what]}" + (" (kept: the row is never that label)"
                                                      if what == "binary rejected" else ""))
    return lines
