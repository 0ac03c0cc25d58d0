"""The keys that pick labels on the page: one per label, shown on its button.

By default ``1``-``9`` and ``0``, then letters row by row as they lie on a keyboard, so twelve
colours or ten digits all have a key; a project with more labels than keys leaves the rest to
the mouse. Enter, Space and Backspace are the page's own, and binary questions use ``a`` and
``x``, which only label keys of multiple-choice questions could shadow, never in binary mode.
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_KEYS = "1234567890qwertyuiopasdfghjklzxcvbnm"


class KeysError(ValueError):
    """Keys the page cannot use."""


def label_keys(labels: Sequence[str], keys: str | None = None) -> list[str | None]:
    """The key of each label, in order; None for labels past the last key.

    ``keys`` is a string of single characters, one per label (``--keys 1234qwer``).
    """
    chosen = DEFAULT_KEYS if keys is None else keys
    if keys is not None:
        if not keys or any(k.isspace() or not k.isprintable() for k in keys):
            raise KeysError(f"--keys must be printable characters without spaces, got {keys!r}")
        lowered = keys.lower()
        twice = next((k for i, k in enumerate(lowered) if k in lowered[:i]), None)
        if twice is not None:
            raise KeysError(f"--keys names {twice!r} twice; each label needs its own key")
        chosen = lowered
    return [chosen[i] if i < len(chosen) else None for i in range(len(labels))]
