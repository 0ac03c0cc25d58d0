"""retrain-loop: refit on every batch, serve the rows the model is least sure of.

``from retrain_loop import Loop`` is the notebook API (``notebook.py``); it is imported on first
use, so ``import retrain_loop`` stays cheap for the CLI and the Prodigy recipe.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Loop", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Loop":
        from .notebook import Loop

        return Loop
    raise AttributeError(f"module 'retrain_loop' has no attribute {name!r}")
