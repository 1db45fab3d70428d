"""Official checkpoints: find (SRBENCH_WEIGHTS_PATH, cache) or download them, verify sha256, load without pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.data import cache_dir, offline, retrieve, sha256_file, weights_paths
from bench.errors import DataError, WeightsError
from methods.zoo.catalog import Checkpoint

__all__ = ["local_checkpoint", "checkpoint_path", "load_checkpoint", "NO_WEIGHTS_FIX"]

NO_WEIGHTS_FIX = (
    "point SRBENCH_WEIGHTS_PATH at a folder laid out as <model>/<file> (e.g. shared/weights), "
    "set SRBENCH_MIRROR to a reachable mirror, or run 'python -m bench fetch {method}' with network access"
)


def _cached(ck: Checkpoint) -> Path:
    return cache_dir() / "weights" / ck.file


def _verified(path: Path, ck: Checkpoint, *, remove_if_bad: bool) -> bool:
    """True when `path` hashes to the checkpoint's sha256; a bad file raises (or is removed from the cache)."""
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise WeightsError(
            f"cannot read weights {path}: {exc.strerror}; check the file's permissions"
        ) from exc
    if digest == ck.sha256:
        return True
    if remove_if_bad:
        path.unlink(missing_ok=True)  # a damaged or replaced cached copy is downloaded again
        return False
    raise WeightsError(
        f"sha256 of {path} is {digest[:12]}..., expected {ck.sha256[:12]}... ({ck.method}): the file is "
        f"corrupt or was replaced; restore it from {ck.url} or take its folder out of SRBENCH_WEIGHTS_PATH"
    )


def local_checkpoint(ck: Checkpoint) -> Path | None:
    """The verified local copy (SRBENCH_WEIGHTS_PATH first, then the cache), or None when there is none."""
    for root in weights_paths():
        path = root / ck.file
        if path.is_file() and _verified(path, ck, remove_if_bad=False):
            return path
    cached = _cached(ck)
    if cached.is_file() and _verified(cached, ck, remove_if_bad=True):
        return cached
    return None


def checkpoint_path(ck: Checkpoint) -> Path:
    """A verified local file for `ck`, downloading it into the cache when needed.

    Raises WeightsError naming SRBENCH_WEIGHTS_PATH / SRBENCH_MIRROR when it cannot be had, and
    when a local file does not match its sha256.
    """
    found = local_checkpoint(ck)
    if found is not None:
        return found
    if offline():
        raise WeightsError(
            f"weights of {ck.method} ({Path(ck.file).name}) are not available locally and SRBENCH_OFFLINE "
            f"forbids downloading; " + NO_WEIGHTS_FIX.format(method=ck.method)
        )
    target = _cached(ck)
    try:
        return retrieve(ck.url, f"sha256:{ck.sha256}", target.name, target.parent)
    except DataError as exc:
        raise WeightsError(
            f"could not download the weights of {ck.method}: {exc}; "
            + NO_WEIGHTS_FIX.format(method=ck.method)
        ) from exc


def load_checkpoint(path: Path) -> Any:
    """The checkpoint object, read without running pickle code.

    `.mat` (MatConvNet) files go through `scipy.io.loadmat`; `.pth`/`.pt` through
    `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
    """
    try:
        if path.suffix == ".mat":
            import scipy.io

            return scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
        import torch

        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad weights file
        raise WeightsError(
            f"cannot read weights {path}: {str(exc).splitlines()[0][:200]}; delete it and fetch again"
        ) from exc
