"""Write a seeded pool of distinct RGB colours for the demo, one JSON object per line.

python scripts/make_colour_pool.py --n 2000 --seed 0 --out demo/colours.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# Near the size of the RGB cube, finding the last unseen colours by rejection would take ages.
_MAX_N = 1_000_000
# Uniform saturation almost never lands on exactly zero, yet "grey", "black" and "white" are labels
# in the demo, so a slice of the pool is drawn on the grey axis on purpose.
_GREY_SHARE = 0.08


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    i = sector.astype(np.int64) % 6
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.rint(np.stack([r, g, b], axis=1) * 255).astype(np.int64)


def _sample(rng: np.random.Generator, size: int) -> np.ndarray:
    # Uniform in HSV rather than in the RGB cube: the cube is dominated by muddy mid-tones, while
    # HSV gives dark, light, pale and vivid colours of every hue a fair share.
    h, s, v = rng.random(size), rng.random(size), rng.random(size)
    s[rng.random(size) < _GREY_SHARE] = 0.0
    return _hsv_to_rgb(h, s, v)


def make_colours(n: int, seed: int) -> list[dict]:
    """``n`` distinct colours, the same ones in the same order for the same seed."""
    if not 1 <= n <= _MAX_N:
        raise ValueError(f"n must be between 1 and {_MAX_N}, got {n}")
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, int, int]] = set()
    picked: list[tuple[int, int, int]] = []
    while len(picked) < n:
        # Rounding to 8 bits makes some draws collide; draw extra and keep first occurrences.
        for rgb in map(tuple, _sample(rng, 2 * (n - len(picked)) + 16).tolist()):
            if rgb not in seen:
                seen.add(rgb)
                picked.append(rgb)
                if len(picked) == n:
                    break
    width = max(4, len(str(n - 1)))
    return [
        {"id": f"c{i:0{width}d}", "r": r, "g": g, "b": b, "hex": f"#{r:02x}{g:02x}{b:02x}"}
        for i, (r, g, b) in enumerate(picked)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of colours (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=Path("demo/colours.jsonl"))
    args = parser.parse_args(argv)
    try:
        colours = make_colours(args.n, args.seed)
    except ValueError as e:
        parser.error(str(e))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so an interrupted run never leaves a half pool that make thinks is done.
    tmp = args.out.with_name(args.out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(c) + "\n" for c in colours)
    tmp.replace(args.out)
    print(f"wrote {len(colours)} colours to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
