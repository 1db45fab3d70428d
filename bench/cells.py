"""One cell of the quality pass, wherever it runs (in-process or on a Dask worker): a row's identity,
running a method with the out-of-memory retry, scoring, failure rows and the SR images kept for the report."""

from __future__ import annotations

import gc
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import infer, score_output
from bench.data import Sample, atomic_write_png
from bench.limits import from_method, time_limit
from bench.protocol import Protocol
from bench.registry import method_scales
from bench.store import RunStore, sr_image_path
from bench.upscale import UserWeightsMethod, build_method

__all__ = [
    "row_key", "has_scale", "skipped_scales", "images_to_save", "save_png", "is_oom",
    "upscale_or_tile", "failure_row", "failed", "hung_message", "finish", "run_one", "OOM_TILE", "MAX_SKIP_LINES",
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


def images_to_save(samples: Iterable[Sample], mode: str) -> set[str]:
    """The images whose SR outputs the run keeps; reads `samples` one at a time (a generator is fine)."""
    if mode == "none":
        return set()
    if mode == "all":
        return {s.image for s in samples}
    textures = [(texture(s.hr), s.image) for s in samples]  # one number per image, not the image
    # the two most textured images: where methods differ visibly (a stable sort: ties keep file order)
    ranked = sorted(textures, key=lambda t: -t[0])
    return {image for _, image in ranked[:2]}


def save_png(path: Path, img: np.ndarray) -> None:
    """Keep an SR image of the run; a full disk ends the run (one line, every journaled row kept)."""
    atomic_write_png(path, img, strict=True)


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
    method: Any, sample: Sample, protocol: Protocol, name: str, log: Log, timeout: float | None = None
) -> tuple[Any, tuple[int, ...], float]:
    """`infer` within the per-cell time limit (`timeout` seconds, None: none; raises CellTimeout).

    Out of memory on a method that can tile (a `tile` attribute, None when untiled): retried once with
    `tile=OOM_TILE` (the same weights file), after the failed attempt's memory is freed. Raises what the
    method raised otherwise."""
    with time_limit(timeout):
        oom = _infer_or_oom(method, sample, protocol)
        if not isinstance(oom, str):
            return oom
        log(
            f"note: {name} ran out of memory on {sample.dataset}/{sample.image} x{sample.scale}; "
            f"retrying with tile={OOM_TILE}"
        )
        _free_memory(method)
        try:
            weights = method.path if isinstance(method, UserWeightsMethod) else None  # the same file, tiled
            tiled = build_method(
                name, scale=sample.scale, device=method.device, weights=weights, tile=OOM_TILE
            )
        except Exception:  # noqa: BLE001 - cannot tile after all: report the memory error
            raise MemoryError(oom) from None
        return infer(tiled, sample, protocol)


def _infer_or_oom(
    method: Any, sample: Sample, protocol: Protocol
) -> tuple[Any, tuple[int, ...], float] | str:
    """`infer`'s result, or the message of an out-of-memory error a tiled retry may cure.

    Only the message leaves this frame: the exception's traceback would keep the failed attempt's frames,
    and with them its tensors, alive while the retry allocates."""
    try:
        return infer(method, sample, protocol)
    except (Exception, MemoryError) as exc:
        if not (is_oom(exc) and hasattr(method, "tile") and method.tile is None):
            raise
        return f"{type(exc).__name__}: {exc}"


def _free_memory(method: Any) -> None:
    gc.collect()  # frames of the failed attempt caught in reference cycles
    torch = sys.modules.get("torch")
    if torch is not None and str(getattr(method, "device", "cpu")).startswith("cuda"):
        torch.cuda.empty_cache()


def failure_row(base: dict[str, Any], error: str) -> dict[str, Any]:
    return {**base, "psnr": math.nan, "ssim": math.nan, "status": "failed", "error": error}


def failed(base: dict[str, Any], exc: BaseException, log: Log) -> dict[str, Any]:
    if is_oom(exc):
        msg = "out of memory; run with a tiled method (tile=...) or smaller images"
    else:
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    log(f"failed: {base['method']} on {base['dataset']}/{base['image']} x{base['scale']}: {msg}")
    return failure_row(base, msg)


def hung_message(row: dict[str, Any]) -> str | None:
    """For a cell that timed out, the error of its method's later cells in the run (else None).

    One time-out per method: a hung method would otherwise cost the whole limit on every image."""
    if row.get("status") != "failed" or not str(row.get("error", "")).startswith("CellTimeout:"):
        return None
    return (
        f"not run: {row['method']} timed out on {row['dataset']}/{row['image']} x{row['scale']} "
        f"earlier in this run; --resume retries it"
    )


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
    timeout: float | None = None,
) -> dict[str, Any]:
    try:
        raw, expected, seconds = upscale_or_tile(method, sample, protocol, base["method"], log, timeout)
    except (Exception, MemoryError, SystemExit, KeyboardInterrupt) as exc:  # any method bug fails its cell
        if not from_method(exc):
            raise  # the user's Ctrl-C or SIGTERM: the run stops
        return failed(base, exc, log)
    return finish(raw, expected, seconds, sample, protocol, base, to_save, store, log)
