"""Whether a zoo model can run here: a verified local copy of its weights, or one downloaded now."""

from __future__ import annotations

from bench.data import offline
from bench.errors import WeightsError
from methods.zoo.catalog import checkpoints
from methods.zoo.weights import NO_WEIGHTS_FIX, checkpoint_path, local_checkpoint

__all__ = ["why_unavailable", "weights_present"]


def weights_present(method: str) -> bool:
    """True when every checkpoint of `method` has a verified local copy (SRBENCH_WEIGHTS_PATH or cache)."""
    return all(local_checkpoint(c) is not None for c in checkpoints() if c.method == method)


def why_unavailable(method: str) -> str | None:
    """None when `method`'s weights are here or could be downloaded now (they are, into the cache);
    else a one-line reason naming SRBENCH_WEIGHTS_PATH and SRBENCH_MIRROR."""
    if weights_present(method):
        return None
    if offline():
        return "weights not available offline; " + NO_WEIGHTS_FIX.format(method=method)
    try:
        for ck in checkpoints():
            if ck.method == method:
                checkpoint_path(ck)  # the run would download them first thing anyway
    except WeightsError as exc:
        return str(exc)
    return None
