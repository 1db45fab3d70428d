"""The zoo's catalogue: method names, their architecture files, and the checkpoint manifest (`weights.toml`).

Reading it never imports torch, so `bench list` and `--methods zoo` stay fast.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench.errors import UsageError

__all__ = ["ZOO_NAMES", "ARCH_MODULE", "Checkpoint", "checkpoints", "checkpoint_for", "scales_of"]

WEIGHTS_MANIFEST = Path(__file__).resolve().parent / "weights.toml"

# method name -> the file in methods/zoo/ holding its architecture; this order is the order of `--methods zoo`
ARCH_MODULE = {
    "pan": "pan",
    "bsrn": "bsrn",
    "carn-m": "carn_m",
    "rlfn": "rlfn",
    "rlfn-s": "rlfn",
    "imdn": "imdn",
    "latticenet": "latticenet",
    "a2n": "a2n",
    "lapsrn": "lapsrn",
    "smfanet": "smfanet",
    "smfanet-df2k": "smfanet",
    "lkdn": "lkdn",
    "vapsr": "vapsr",
}
ZOO_NAMES = tuple(ARCH_MODULE)


@dataclass(frozen=True)
class Checkpoint:
    """One official weights file: where it comes from, what it must hash to, and what it is."""

    method: str
    scales: tuple[int, ...]
    file: str  # relative path under a SRBENCH_WEIGHTS_PATH folder and the cache, e.g. "pan/PANx2_DF2K.pth"
    url: str
    sha256: str
    bytes: int
    params: int
    license: str
    training_data: str
    trained_on: str  # short name of the training set: DIV2K, DF2K, 291
    input: str
    repo: str
    commit: str
    paper: str


@cache
def checkpoints() -> tuple[Checkpoint, ...]:
    """Every checkpoint of `weights.toml`, in file order."""
    with open(WEIGHTS_MANIFEST, "rb") as f:
        raw = tomllib.load(f)["checkpoint"]
    return tuple(Checkpoint(**{**c, "scales": tuple(c["scales"])}) for c in raw)


def scales_of(method: str) -> tuple[int, ...]:
    """Scales that have official weights for `method`, ascending."""
    return tuple(sorted({s for c in checkpoints() if c.method == method for s in c.scales}))


def checkpoint_for(method: str, scale: int) -> Checkpoint:
    """The checkpoint of `method` at `scale`. Raises UsageError for a scale without official weights."""
    for c in checkpoints():
        if c.method == method and scale in c.scales:
            return c
    have = ", ".join(f"x{s}" for s in scales_of(method)) or "none"
    raise UsageError(
        f"{method} has no official weights for x{scale} (it has {have}); pick one of those scales"
    )
