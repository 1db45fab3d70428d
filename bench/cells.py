"""One cell of the quality pass, wherever it runs (in-process or on a Dask worker): a row's identity,
running a method with the out-of-memory retry, scoring, failure rows and the SR images kept for the report."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import infer, score_output
from bench.data import Sample, atomic_write_png
from bench.protocol import Protocol
from bench.registry import method_scales
from bench.store import RunStore, sr_image_path
from bench.upscale import UserWeightsMethod, build_method

__all__ = [
    "row_key", "has_scale", "skipped_scales", "images_to_save", "save_png", "is_oom",
    "upscale_or_tile", "failure_row", "failed", "finish", "run_one", "OOM_TILE", "MAX_SKIP_LINES",
]  # fmt: skip

Log = Callable[[str], None]


def row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    # a row is reusable when the method (and its weights), the image bytes, the scale and the protocol match;
    # the image name too: two files with the same bytes are two rows
    return (
        row["method"],
        row.get("weights_sha256") or "",
        row["dataset"],
        row["image"],
        row["image_sha256"],
        int(row["scale"]),
        row["protocol"],
    )


def has_scale(name: str, scale: int) -> bool:
    supported = method_scales(name)
    return supported is None or scale in supported


def skipped_scales(methods: list[str], scales: list[int]) -> list[str]:
    """Notes for (method, scale) pairs a run leaves out because the method does not exist at that scale."""
    notes = []
    for name in methods:
        missing = [s for s in scales if not has_scale(name, s)]
        if missing:
            have = ", ".join(f"x{s}" for s in method_scales(name) or ())
            notes.append(
                f"note: {name} has no x{', x'.join(map(str, missing))} (it has {have}); those cells are left out"
            )
    return notes


def texture(img: np.ndarray) -> float:
    g = img.astype(np.float32).mean(axis=2)
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def images_to_save(samples: list[Sample], mode: str) -> set[str]:
    if mode == "all":
        return {s.image for s in samples}
    if mode == "none" or not samples:
        return set()
    # the two most textured images: where methods differ visibly
    ranked = sorted(samples, key=lambda s: -texture(s.hr))
    return {s.image for s in ranked[:2]}


def save_png(path: Path, img: np.ndarray) -> None:
    atomic_write_png(path, img)


MAX_SKIP_LINES = 20  # skipped files named one per line; the rest are counted (problems.json lists all)
OOM_TILE = 128  # LR pixels per tile when a whole image does not fit in memory


def is_oom(exc: BaseException) -> bool:
    # numpy raises MemoryError; torch raises OutOfMemoryError (CUDA) or RuntimeError (CPU allocator)
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))
    )


def upscale_or_tile(
    method: Any, sample: Sample, protocol: Protocol, name: str, log: Log
) -> tuple[Any, tuple[int, ...], float]:
    """`infer`; out of memory on a method that can tile (a `tile` attribute, None when untiled): retried
    once with `tile=OOM_TILE` (the same weights file). Raises what the method raised otherwise."""
    try:
        return infer(method, sample, protocol)
    except (Exception, MemoryError, SystemExit) as exc:
        if not (is_oom(exc) and hasattr(method, "tile") and method.tile is None):
            raise
        oom = exc
    log(
        f"note: {name} ran out of memory on {sample.dataset}/{sample.image} x{sample.scale}; "
        f"retrying with tile={OOM_TILE}"
    )
    try:
        weights = method.path if isinstance(method, UserWeightsMethod) else None  # the same file, tiled
        tiled = build_method(name, scale=sample.scale, device=method.device, weights=weights, tile=OOM_TILE)
    except Exception:  # noqa: BLE001 - cannot tile after all: report the memory error
        raise oom from None
    return infer(tiled, sample, protocol)


def failure_row(base: dict[str, Any], error: str) -> dict[str, Any]:
    return {**base, "psnr": math.nan, "ssim": math.nan, "status": "failed", "error": error}


def failed(base: dict[str, Any], exc: BaseException, log: Log) -> dict[str, Any]:
    if is_oom(exc):
        msg = "out of memory; run with a tiled method (tile=...) or smaller images"
    else:
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    log(f"failed: {base['method']} on {base['dataset']}/{base['image']} x{base['scale']}: {msg}")
    return failure_row(base, msg)


def finish(
    raw: Any,
    expected: tuple[int, ...],
    seconds: float,
    sample: Sample,
    protocol: Protocol,
    base: dict[str, Any],
    to_save: set[str],
    store: RunStore,
    log: Log,
) -> dict[str, Any]:
    try:
        sr, p, q = score_output(raw, expected, sample, protocol)
    except Exception as exc:  # a contract breach (shape, dtype, NaN) fails the cell, the run goes on
        return failed(base, exc, log)
    if sample.image in to_save:
        save_png(sr_image_path(store.dir, base["method"], sample.dataset, sample.scale, sample.image), sr)
    return {**base, "psnr": p, "ssim": q, "status": "ok", "seconds": seconds}


def run_one(
    method: Any,
    sample: Sample,
    protocol: Protocol,
    base: dict[str, Any],
    to_save: set[str],
    store: RunStore,
    log: Log,
) -> dict[str, Any]:
    try:
        raw, expected, seconds = upscale_or_tile(method, sample, protocol, base["method"], log)
    except (
        Exception,
        MemoryError,
        SystemExit,
    ) as exc:  # any method bug becomes a failed cell, the run goes on
        return failed(base, exc, log)
    return finish(raw, expected, seconds, sample, protocol, base, to_save, store, log)
