"""Shared by the benchmark scripts: BENCHMARKS.md sections and the machine line.

Each script owns one or more ``## ...`` sections of BENCHMARKS.md and rewrites only those, in
place, so a hand-written section or another script's numbers are never lost.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def write_section(path: Path, heading: str, text: str) -> None:
    """Replace the section under ``heading`` in place, or append it; other sections stay."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    parts = old.split("\n## ")
    head, sections = parts[0], ["## " + p for p in parts[1:]]
    for i, section in enumerate(sections):
        if section.splitlines()[0].strip() == heading:
            sections[i] = text.rstrip() + "\n"
            break
    else:
        sections.append(text.rstrip() + "\n")
    body = "\n\n".join(s.rstrip() for s in [head, *sections])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body.rstrip() + "\n")


def machine(note: str = "Shared and noisy: read the ratios, not the milliseconds.") -> str:
    import lightgbm
    import numpy
    import sklearn

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"Machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}, "
            f"NumPy {numpy.__version__}, scikit-learn {sklearn.__version__}, "
            f"LightGBM {lightgbm.__version__}. {note}")
