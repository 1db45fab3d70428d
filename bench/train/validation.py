"""Scoring a network while and after it trains, through the evaluation core (`bench.core`), as `bench run` scores."""

from __future__ import annotations

import warnings
from typing import Any, cast

import pandas as pd

from bench.core import evaluate as evaluate_core
from bench.data import open_dataset
from bench.errors import DataError
from bench.train.config import TrainingDefaults

__all__ = ["evaluate", "validation_dataset", "method_for"]

# the default validation set, and the stand-in that is always available (it ships with scikit-image)
_DEFAULT_VALIDATION = "set5"
_FALLBACK = "sample"


def evaluate(method: Any, dataset: str, scale: int) -> tuple[float, float, list[tuple[str, float, float]]]:
    """Mean PSNR/SSIM of `method` on `dataset` at `scale` under the paper protocol, and per-image
    (name, PSNR dB, SSIM) values.

    The evaluation core (`bench.core`) scores it, exactly as `bench run` would. Raises DataError
    when the dataset gives no image large enough for the scale.
    """
    # summary=False: the core returns the per-image frame alone
    df = cast(pd.DataFrame, evaluate_core(method, dataset, scales=[scale]))
    if df.empty:
        raise DataError(f"dataset {dataset} gave no images large enough for x{scale}")
    rows = [(str(r.image), float(r.psnr), float(r.ssim)) for r in df.itertuples()]
    return float(df["psnr"].mean()), float(df["ssim"].mean()), rows


def validation_dataset(name: str) -> str:
    """`name`, or `sample` (always available, with a warning) when the default Set5 cannot be had.

    Raises DataError when another requested dataset cannot be had.
    """
    try:
        open_dataset(name, download=False)
        return name
    except DataError:
        if name != _DEFAULT_VALIDATION:
            raise
    warnings.warn("Set5 is not available locally: validating on 'sample' instead", stacklevel=3)
    return _FALLBACK


def method_for(name: str, defaults: TrainingDefaults, net: Any, scale: int, device: str) -> Any:
    """`net` (a Y-channel network being trained) behind the Method contract, for scoring."""
    from methods._torchsr import YChannelMethod

    return YChannelMethod(
        name,
        net,
        scale=scale,
        device=device,
        input_upscaled=defaults.input_upscaled,
        receptive_radius=int(getattr(net, "receptive_radius", 8)),
    )
