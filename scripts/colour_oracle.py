"""A colour-naming oracle from real named-colour data: the xkcd colour survey, via matplotlib.

    python scripts/colour_oracle.py            # print the mapping's counts and a few examples

The labelled colour demo needs someone who names colours. Rather than hand-made prototypes, this
uses the 949 colours of Randall Munroe's xkcd colour survey that ship with matplotlib as
``matplotlib.colors.XKCD_COLORS`` (keys like ``"xkcd:light blue"``): the colour that hundreds of
thousands of survey answers called by that name.

Each xkcd name is reduced to one of the demo's twelve basic colour terms (red, orange, yellow,
green, cyan, blue, purple, pink, brown, grey, black, white) by its HEAD word, the last word of
the name, since English puts the hue last and the modifiers first: "light blue" -> blue,
"bluish green" -> green, "dark sky blue" -> blue. The head word is looked up:

1. as a basic term itself ("grey", "blue", ...);
2. in ``SYNONYMS`` below (gray -> grey; violet, lavender, lilac, magenta, mauve -> purple; teal,
   turquoise, aqua -> cyan; tan, beige, khaki -> brown; maroon, crimson -> red; rose, salmon,
   fuchsia -> pink; lime, olive -> green; ...), including "-ish" forms such as "bluish";
3. as a word run together with its modifier whose END is a basic term ("darkgreen" -> green,
   "greyblue" -> blue, "orangered" -> red).

A name whose head word maps to none of these is dropped, for example "green/blue" (the survey's
in-between colours, written with a slash), "coral", "peach", "periwinkle", "puce", "midnight",
"mushroom". With matplotlib 3.11, 872 of the 949 colours are kept (run this file to print the
counts per term and every dropped name): green 225, blue 132, brown 106, purple 100, pink 75,
red 63, yellow 60, cyan 35, grey 34, orange 32, white 8 (with the override below), black 2.
One name is overridden, in ``OVERRIDES``: the survey's "pale grey" is #fdfdfe, which no screen
shows apart from white, and kept as grey it would name every near-white colour grey.

The oracle names an RGB colour by its nearest kept xkcd colour in CIELAB (1-nearest neighbour;
CIELAB distances follow perceived differences far better than RGB ones). The sRGB -> Lab
conversion (D65 white) is a few lines of numpy below, so the oracle adds no dependency.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BASIC = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "grey",
         "black", "white")

# Head words that are not basic terms, by the basic term a speaker would use instead. Words that
# sit between two terms (coral: pink or orange? periwinkle: blue or purple?) are left out.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("maroon", "crimson", "scarlet", "carmine", "ruby", "cherry", "blood", "wine",
            "burgundy", "claret", "bordeaux", "merlot", "cranberry", "vermillion", "rouge",
            "brick", "tomato", "lipstick", "strawberry", "raspberry", "reddish"),
    "orange": ("tangerine", "pumpkin", "apricot", "mango", "squash", "orangish", "orangeish"),
    "yellow": ("gold", "golden", "mustard", "lemon", "canary", "butter", "banana", "dandelion",
               "sunflower", "maize", "goldenrod", "saffron", "marigold", "straw", "custard",
               "yellowish"),
    "green": ("lime", "olive", "sage", "mint", "seafoam", "emerald", "jade", "forest", "grass",
              "moss", "fern", "pine", "shamrock", "kiwi", "pea", "avocado", "chartreuse",
              "pistachio", "leaf", "spearmint", "wintergreen", "evergreen", "viridian",
              "celadon", "asparagus", "algae", "lichen", "seaweed", "spruce", "apple", "camo",
              "greenish"),
    "cyan": ("teal", "turquoise", "aqua", "aquamarine", "tealish"),
    "blue": ("navy", "azure", "cobalt", "cerulean", "sapphire", "ultramarine", "denim",
             "cornflower", "sky", "ocean", "marine", "azul", "blueberry", "bluish"),
    "purple": ("violet", "lavender", "lavendar", "lilac", "liliac", "magenta", "mauve", "plum",
               "eggplant", "aubergine", "grape", "amethyst", "orchid", "heliotrope", "wisteria",
               "indigo", "purplish", "purpleish", "purply", "purpley"),
    "pink": ("rose", "rosa", "salmon", "fuchsia", "blush", "bubblegum", "carnation",
             "watermelon", "cerise", "pinkish", "pinky"),
    "brown": ("tan", "beige", "khaki", "taupe", "toupe", "umber", "sienna", "siena", "chocolate",
              "coffee", "mocha", "cocoa", "chestnut", "mahogany", "auburn", "russet", "rust",
              "sepia", "camel", "caramel", "cinnamon", "leather", "hazel", "fawn", "buff", "sand",
              "sandy", "sandstone", "ochre", "ocher", "ocre", "mud", "dirt", "earth", "clay",
              "bronze", "copper", "poo", "poop", "brownish"),
    "grey": ("gray", "silver", "charcoal", "slate", "steel", "gunmetal", "cement", "stone",
             "greyish"),
    "black": (),
    "white": ("ivory", "cream", "creme", "eggshell"),
}
OVERRIDES = {"pale grey": "white"}
_TERM = {word: term for term, words in SYNONYMS.items() for word in words} | {t: t for t in BASIC}


def basic_term(name: str) -> str | None:
    """The basic colour term of an xkcd colour name, or None when its head word maps to none."""
    if name in OVERRIDES:
        return OVERRIDES[name]
    head = name.split()[-1]
    if "/" in head:  # "green/blue": the survey's in-between colours belong to neither term
        return None
    if head in _TERM:
        return _TERM[head]
    # Modifier run into the head ("darkgreen", "greyblue"): the longest basic term at the end.
    for term in sorted(BASIC, key=len, reverse=True):
        if head.endswith(term) and len(head) > len(term):
            return term
    return None


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours given as 0-255 values, shape (n, 3)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124564, 0.3575761, 0.1804375],
                             [0.2126729, 0.7151522, 0.0721750],
                             [0.0193339, 0.1191920, 0.9503041]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])  # the D65 white point
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])],
                    axis=1)


@lru_cache(maxsize=1)
def reference() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The kept xkcd colours: their names, their basic terms and their Lab coordinates."""
    from matplotlib.colors import XKCD_COLORS, to_rgb

    names, terms, rgb = [], [], []
    for key, hex_value in XKCD_COLORS.items():
        name = key.removeprefix("xkcd:")
        term = basic_term(name)
        if term is not None:
            names.append(name)
            terms.append(term)
            rgb.append(to_rgb(hex_value))
    return tuple(names), np.array(terms), srgb_to_lab(np.array(rgb) * 255.0)


def name_colours(rgb: np.ndarray) -> np.ndarray:
    """The basic colour term of each 0-255 RGB colour (n, 3): that of its nearest xkcd colour."""
    _, terms, lab = reference()
    query = srgb_to_lab(np.atleast_2d(rgb))
    distances = ((query[:, None, :] - lab[None, :, :]) ** 2).sum(axis=2)
    return terms[distances.argmin(axis=1)]


def _make_colours(n: int, seed: int) -> list[dict]:
    spec = importlib.util.spec_from_file_location("make_colour_pool",
                                                  ROOT / "scripts" / "make_colour_pool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_colours(n, seed)


def colour_pool(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The demo's colour pool with oracle labels: X (n, 3) as r, g, b; y as label indices; labels.

    Labels are the basic terms in the demo's order, dropping any no colour of the pool received,
    so ``y`` indexes ``labels`` as ``simulate.run`` expects.
    """
    rows = _make_colours(n, seed)
    X = np.array([[r["r"], r["g"], r["b"]] for r in rows], dtype=np.float64)
    names = name_colours(X)
    labels = [t for t in BASIC if t in set(names.tolist())]
    index = {t: i for i, t in enumerate(labels)}
    return X, np.array([index[t] for t in names], dtype=np.int64), labels


def main() -> int:
    from collections import Counter

    from matplotlib.colors import XKCD_COLORS

    names, terms, _ = reference()
    print(f"kept {len(names)} of {len(XKCD_COLORS)} xkcd colours")
    print("per term:", dict(Counter(terms.tolist()).most_common()))
    dropped = sorted({k.removeprefix("xkcd:") for k in XKCD_COLORS} - set(names))
    print(f"dropped ({len(dropped)}):", ", ".join(dropped))
    _, y, labels = colour_pool()
    print("demo pool (2,000 colours):", dict(Counter(labels[i] for i in y).most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
