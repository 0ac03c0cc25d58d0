"""Stable integer hashes for rows and tasks.

Prodigy-style records carry ``_input_hash`` (the row) and ``_task_hash`` (the row plus the
question asked about it). They must not change between runs, so Python's salted ``hash`` is out.
The values stay below 2**53 so that the browser's JavaScript numbers hold them exactly.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_JS_SAFE_BITS = 53


def stable_hash(value: Any) -> int:
    """Hash any JSON-serialisable value to a non-negative int below 2**53."""
    payload = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.blake2b(payload.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _JS_SAFE_BITS)


def task_hash(input_hash: int, labels: list[str] | tuple[str, ...]) -> int:
    """The question "which of these labels?" asked about one row."""
    return stable_hash({"_input_hash": int(input_hash), "options": list(labels)})
