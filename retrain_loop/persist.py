"""Save a trained model with its metadata, and load it back without trusting pickle.

A model file is a skops file (a zip archive that skops.io writes and reads without pickle) with
one more entry, ``retrain_loop.json``, holding the metadata as plain JSON. The metadata can be
read without rebuilding any object, and skops ignores the extra entry.

Loading rebuilds only classes on an allowlist: classes defined in scikit-learn, LightGBM and
``retrain_loop.models``, and numpy's scalar, dtype and random-generator classes. Anything else,
such as a user's own estimator class, needs ``trusted=True``: rebuilding it may run its code.
The allowlist guards against running code, not against every damaged model: skops itself warns
that a crafted scikit-learn tree can crash ``predict`` (``skops.io.exceptions``), and
LightGBM's model text is parsed by C++ code. Load files you did not make only from sources you
would run code from.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import platform
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "retrain-loop-model"
FORMAT_VERSION = 1
_META_ENTRY = "retrain_loop.json"
# Distribution names whose versions are recorded: a model may not load, or may predict
# differently, under another scikit-learn or LightGBM.
_VERSIONED = ("retrain-loop", "scikit-learn", "lightgbm", "numpy", "skops")
_TRUSTED_PACKAGES = ("sklearn", "lightgbm", "retrain_loop.models", "retrain_loop.auto", "numpy")
# numpy also has classes that open or map files when constructed (memmap, DataSource), so only
# the kinds that fitted estimators hold are trusted from it.
_NUMPY_KINDS = (np.generic, np.dtype, np.random.Generator, np.random.BitGenerator,
                np.random.RandomState)
_TRUSTED_NAMES = frozenset({"collections.OrderedDict"})  # LightGBM keeps its params in one
_USER_MODULE_PREFIX = "retrain_loop_user_model_"  # how models names a module run from a file


class ModelFileError(ValueError):
    """A model file that is missing, damaged, untrusted, or does not fit the pool."""


@dataclass(eq=False)
class SavedModel:
    estimator: Any
    labels: list[str]
    features: list[str]
    meta: dict[str, Any] = field(default_factory=dict)


def save_model(
    path: str | Path,
    estimator: Any,
    *,
    labels: list[str],
    features: list[str],
    n_annotations: int,
    cv_accuracy: float | None,
    dataset: str,
    model_spec: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the estimator and its metadata to ``path`` in one step; returns the metadata."""
    import skops.io

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "model": model_spec,
        "labels": list(labels),
        "features": list(features),
        "n_annotations": int(n_annotations),
        "cv_accuracy": None if cv_accuracy is None else float(cv_accuracy),
        **(extra or {}),
        "model_source": _model_source(model_spec),
        "versions": library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        buffer = io.BytesIO(skops.io.dumps(estimator))
    except TypeError as e:  # skops.io.exceptions.UnsupportedTypeException is a TypeError
        raise ModelFileError(f"cannot save {model_spec}: {e}") from e
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(_META_ENTRY, json.dumps(meta, indent=2))
    with atomic_output(path, error=ModelFileError) as out:
        out.write(buffer.getvalue())
    return meta


def load_model(path: str | Path, trusted: bool = False) -> SavedModel:
    """Read a model file. Types off the allowlist are refused unless ``trusted`` is True."""
    import skops.io

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"cannot read model file {path}: {e.strerror or e}") from e
    meta = _read_meta(path, data)
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as e:  # a damaged file can make skops raise nearly anything
        raise ModelFileError(f"{path}: damaged model file: {type(e).__name__}: {e}") from e
    refused = [name for name in untrusted if not _on_allowlist(name)]
    if refused and not trusted:
        source = f" (from {meta['model_source']})" if meta.get("model_source") else ""
        raise ModelFileError(
            f"{path}: refusing to load types that are not on the allowlist: {', '.join(refused)}"
            f"{source}. Loading them can run their code; pass trusted=True (--trust on the "
            "command line) only for model files you made yourself."
        )
    if trusted:
        _import_model_source(path, meta, untrusted)
    try:
        estimator = skops.io.loads(data, trusted=untrusted)
    except Exception as e:  # so can the classes it rebuilds, or a missing module
        raise ModelFileError(f"{path}: cannot load the model: {type(e).__name__}: {e}") from e
    if not callable(getattr(estimator, "predict_proba", None)) or not hasattr(estimator, "classes_"):
        raise ModelFileError(f"{path}: the saved object is not a fitted classifier")
    return SavedModel(estimator, list(meta["labels"]), list(meta["features"]), meta)


def check_features(saved: SavedModel, pool: Any) -> None:
    """Columns are matched by position, so the pool must have the model's features in order."""
    if list(pool.features) != saved.features:
        raise ModelFileError(
            f"model was trained on features {', '.join(saved.features)}; the pool has "
            f"{', '.join(pool.features)} (use --features to pick the same columns)"
        )


def library_versions() -> dict[str, str | None]:
    return {"python": platform.python_version()} | {name: _version(name) for name in _VERSIONED}


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def version_differences(saved: SavedModel) -> list[str]:
    """Libraries whose installed version differs from the one the model was saved with."""
    saved_versions = saved.meta.get("versions") or {}
    now = library_versions()
    return [
        f"{name} {now[name]} (model saved with {saved_versions[name]})"
        for name in ("scikit-learn", "lightgbm", "numpy")
        if saved_versions.get(name) and now.get(name) and saved_versions[name] != now[name]
    ]


@contextmanager
def atomic_output(path: str | Path, mode: str = "wb", *, error: type[Exception] = OSError,
                  newline: str | None = None) -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    A failed run then leaves the old file, or none, never half a file. ``error`` is the
    exception type an unwritable path is reported as; ``newline`` is ``open``'s, for text.
    """
    path = Path(path)
    encoding = None if "b" in mode else "utf-8"
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise error(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as out:
            yield out
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise error(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_meta(path: Path, data: bytes) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            meta = json.loads(archive.read(_META_ENTRY))
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path}: damaged model file: not a zip archive") from None
    except KeyError:
        raise ModelFileError(f"{path}: not a retrain-loop model file (no {_META_ENTRY})") from None
    except (ValueError, OSError) as e:  # bad JSON, bad UTF-8, or a damaged zip entry
        raise ModelFileError(f"{path}: damaged model metadata: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a retrain-loop model file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model file format {meta.get('format_version')!r} is not "
                             f"the one this retrain-loop reads ({FORMAT_VERSION})")
    for key in ("labels", "features"):
        value = meta.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ModelFileError(f"{path}: damaged model metadata: bad {key!r}")
    return meta


def _model_source(spec: str) -> str | None:
    """The absolute path of the file a ``path/to/file.py:callable`` spec loads, if it is one."""
    target, colon, _ = spec.rpartition(":")
    if colon and (target.endswith(".py") or "/" in target or "\\" in target):
        path = Path(target)
        if path.is_file():
            return str(path.resolve())
    return None


def _import_model_source(path: Path, meta: dict[str, Any], untrusted: list[str]) -> None:
    """Make a class from the user's model file importable under the name it was saved with.

    ``models`` imports such a file under a module name that differs from one process to the
    next, so another process would not find the class. The file is run again (which the caller
    has trusted) and registered under the saved name.
    """
    from .models import ModelError, resolve

    source = meta.get("model_source")
    missing = {name.rpartition(".")[0] for name in untrusted
               if name.startswith(_USER_MODULE_PREFIX)} - set(sys.modules)
    if not source or not missing:
        return
    spec = f"{source}:{str(meta.get('model', '')).rpartition(':')[2]}"
    try:
        module = sys.modules[resolve(spec).__module__]
    except (ModelError, AttributeError, KeyError) as e:
        raise ModelFileError(f"{path}: cannot import the model's code from {source}: {e}") from e
    for name in missing:
        sys.modules[name] = module


def _on_allowlist(name: str) -> bool:
    if name in _TRUSTED_NAMES:
        return True
    cls = _defined_class(name)
    if cls is None:
        return False
    return not name.startswith("numpy.") or issubclass(cls, _NUMPY_KINDS)


def _defined_class(name: str) -> type | None:
    """The class a type name stands for, when a trusted package defines it under that name.

    Only modules inside trusted packages are imported. The class must be defined where the name
    says: ``retrain_loop.models.Path`` would otherwise pass as pathlib's Path.
    """
    if not any(name.startswith(f"{package}.") for package in _TRUSTED_PACKAGES):
        return None
    module_name, _, attr = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except (ImportError, ValueError):  # ValueError: a crafted name such as "sklearn..x"
        return None
    cls = getattr(module, attr, None)
    if not isinstance(cls, type) or f"{cls.__module__}.{cls.__name__}" != name:
        return None
    return cls
