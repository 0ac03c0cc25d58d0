"""The label-efficiency suite's datasets: real tabular data that ships inside installed packages.

    python scripts/learning_datasets.py     # print each dataset's rows, features and classes

Nothing is downloaded: scikit-learn's bundled sets, the colour demo named by the xkcd survey in
matplotlib (``scripts/colour_oracle.py``), Palmer penguins (palmerpenguins), vega_datasets' local
files and statsmodels' bundled datasets. Rows with a missing value are dropped. ``load``
returns features (float64), label indices and the labels, rows in a fixed shuffled order.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

Dataset = tuple[np.ndarray, np.ndarray, list[str]]


def _from_frame(frame, features: list[str], target: str) -> Dataset:
    frame = frame[[*features, target]].dropna()
    labels = sorted(str(v) for v in frame[target].unique())
    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index[str(v)] for v in frame[target]], dtype=np.int64)
    return frame[features].to_numpy(dtype=np.float64), y, labels


def _sklearn(name: str) -> Callable[[], Dataset]:
    def load() -> Dataset:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        return (np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64),
                [str(n) for n in bunch.target_names])

    return load


def colours() -> Dataset:
    spec = importlib.util.spec_from_file_location("colour_oracle",
                                                  ROOT / "scripts" / "colour_oracle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.colour_pool(2000, 0)


def penguins() -> Dataset:
    import palmerpenguins

    return _from_frame(palmerpenguins.load_penguins(),
                       ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"],
                       "species")


def cars() -> Dataset:
    from vega_datasets import data

    return _from_frame(data.cars(), ["Miles_per_Gallon", "Cylinders", "Displacement",
                                     "Horsepower", "Weight_in_lbs", "Acceleration"], "Origin")


def seattle_weather() -> Dataset:
    from vega_datasets import data

    frame = data.seattle_weather()
    frame["day_of_year"] = frame["date"].dt.day_of_year
    return _from_frame(frame, ["precipitation", "temp_max", "temp_min", "wind", "day_of_year"],
                       "weather")


def anes96() -> Dataset:
    import statsmodels.api as sm

    frame = sm.datasets.anes96.load_pandas().data
    frame["vote"] = frame["vote"].map({0.0: "clinton", 1.0: "dole"})
    return _from_frame(frame, ["logpopul", "TVnews", "selfLR", "ClinLR", "DoleLR", "PID", "age",
                               "educ", "income"], "vote")


def fair() -> Dataset:
    import statsmodels.api as sm

    frame = sm.datasets.fair.load_pandas().data
    frame["affair"] = np.where(frame["affairs"] > 0, "yes", "no")
    return _from_frame(frame, ["rate_marriage", "age", "yrs_married", "children", "religious",
                               "educ", "occupation", "occupation_husb"], "affair")


DATASETS: dict[str, Callable[[], Dataset]] = {
    "iris": _sklearn("iris"),
    "wine": _sklearn("wine"),
    "breast_cancer": _sklearn("breast_cancer"),
    "digits": _sklearn("digits"),
    "colours": colours,
    "penguins": penguins,
    "cars": cars,
    "seattle_weather": seattle_weather,
    "anes96": anes96,
    "fair": fair,
}


def load(name: str) -> Dataset:
    """The dataset with its rows in a fixed random order.

    Some files are sorted by their label (statsmodels' fair lists every affair first, Seattle's
    weather runs by date through the seasons). A strategy that breaks ties by row position
    would then pick by label: modAL's argmax takes the first of equal scores, and on fair's many
    identical rows that meant the minority class first. Shuffled, position says nothing.
    """
    X, y, labels = DATASETS[name]()
    order = np.random.default_rng(12345).permutation(len(y))
    return X[order], y[order], labels


def main() -> None:
    for name in DATASETS:
        X, y, labels = load(name)
        counts = np.bincount(y, minlength=len(labels))
        print(f"{name:16s} {len(y):6d} rows {X.shape[1]:3d} features {len(labels):3d} classes "
              f"(smallest {counts.min()}, largest {counts.max()})")


if __name__ == "__main__":
    main()
