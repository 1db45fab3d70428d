"""Whether a zoo model can run here without torch: a verified local copy of its weights, or the network."""

from __future__ import annotations

from bench.data import offline
from methods.zoo.catalog import checkpoints
from methods.zoo.weights import NO_WEIGHTS_FIX, local_checkpoint

__all__ = ["why_unavailable", "weights_present"]


def weights_present(method: str) -> bool:
    """True when every checkpoint of `method` has a verified local copy (SRBENCH_WEIGHTS_PATH or cache)."""
    return all(local_checkpoint(c) is not None for c in checkpoints() if c.method == method)


def why_unavailable(method: str) -> str | None:
    """A one-line reason when `method`'s weights can neither be found locally nor downloaded, else None."""
    if not offline() or weights_present(method):
        return None
    return f"{method}: weights not available offline; " + NO_WEIGHTS_FIX.format(method=method)
