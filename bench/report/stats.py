"""Uncertainty of dataset means: bootstrap confidence intervals and a paired test between methods."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "ALPHA",
    "SEED",
    "bootstrap_ci",
    "paired_permutation_p",
    "min_attainable_p",
    "dataset_cis",
    "column_leads",
]

ALPHA = 0.05
SEED = 20240101  # fixed: the same run always gets the same intervals and p-values
_EXACT_UP_TO = 16  # enumerate all 2^n sign patterns up to this many images


def _rng_kwargs(func: Callable[..., Any]) -> dict[str, Any]:
    # scipy >= 1.15 calls it `rng`; older releases `random_state`. Both take a Generator.
    name = "rng" if "rng" in inspect.signature(func).parameters else "random_state"
    return {name: np.random.default_rng(SEED)}


def bootstrap_ci(
    values: np.ndarray | list[float], *, confidence: float = 0.95, n_resamples: int = 9999
) -> tuple[float, float]:
    """95% (by default) bootstrap CI of the mean of `values` (1-D float), resampling images.

    BCa interval (better coverage than percentile at small n), falling back to the percentile
    interval where BCa is undefined. (nan, nan) for fewer than 2 values or non-finite values
    (a PSNR of inf has no interval); (v, v) when all values are equal.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2 or not np.all(np.isfinite(x)):
        return (math.nan, math.nan)
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DegenerateDataWarning at tiny n: handled by the fallback
            res = stats.bootstrap(
                (x,),
                np.mean,
                confidence_level=confidence,
                n_resamples=n_resamples,
                method=method,
                **_rng_kwargs(stats.bootstrap),
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return (lo, hi)
    return (math.nan, math.nan)


def min_attainable_p(n: int) -> float:
    """Smallest two-sided p the exact sign-flip test can give with n pairs: 2 / 2^n."""
    return min(1.0, 2.0 / 2.0**n) if n > 0 else 1.0


def paired_permutation_p(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    """Two-sided p-value that the mean of `a - b` (same images, paired) is zero.

    Sign-flip permutation test (Fisher-Pitman): under the null each image's difference is as
    likely positive as negative, so all 2^n sign patterns are equally likely. Exact (all patterns)
    for n <= 16, Monte Carlo with a fixed seed above. It tests the mean difference, the quantity
    the table reports, and assumes neither normality nor a symmetric-rank model (Wilcoxon).
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    if d.size < 2 or np.all(d == 0):
        return 1.0  # one image (or none) cannot show a significant mean difference: 2 / 2^1 = 1
    n_resamples = 2**d.size if d.size <= _EXACT_UP_TO else 99_999
    res = stats.permutation_test(
        (x[keep], y[keep]),
        lambda u, v, axis: np.mean(u - v, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        **_rng_kwargs(stats.permutation_test),
    )
    return float(min(1.0, res.pvalue))


def dataset_cis(quality: pd.DataFrame) -> pd.DataFrame:
    """Per (method, dataset, scale): mean PSNR/SSIM over scored images and their 95% bootstrap CIs.

    `quality`: per-image rows with status ok. Columns out: method, dataset, scale, n, psnr,
    psnr_lo, psnr_hi, ssim, ssim_lo, ssim_hi.
    """
    rows = []
    for (method, dataset, scale), group in quality.groupby(["method", "dataset", "scale"], sort=False):
        psnr, ssim = group["psnr"].to_numpy(float), group["ssim"].to_numpy(float)
        p_lo, p_hi = bootstrap_ci(psnr)
        s_lo, s_hi = bootstrap_ci(ssim)
        rows.append(
            {
                "method": method,
                "dataset": dataset,
                "scale": int(scale),
                "n": len(group),
                "psnr": float(np.mean(psnr)) if len(psnr) else math.nan,
                "psnr_lo": p_lo,
                "psnr_hi": p_hi,
                "ssim": float(np.mean(ssim)) if len(ssim) else math.nan,
                "ssim_lo": s_lo,
                "ssim_hi": s_hi,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "method",
            "dataset",
            "scale",
            "n",
            "psnr",
            "psnr_lo",
            "psnr_hi",
            "ssim",
            "ssim_lo",
            "ssim_hi",
        ],
    )


def column_leads(summary: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    """For each (dataset, scale): the PSNR leader, the runner-up, and whether the lead is significant.

    `summary`: summary.csv rows (the leader is the highest mean PSNR there); `quality`: per-image
    rows with status ok, paired on `image`. Columns out: dataset, scale, leader, runner_up,
    lead_db, n, wins, p_value, min_p, significant.
    """
    rows = []
    for (dataset, scale), col in summary.groupby(["dataset", "scale"], sort=False):
        col = col.dropna(subset=["psnr"])
        if len(col) < 2:
            continue
        ranked = col.sort_values("psnr", ascending=False, kind="stable")
        leader, runner = ranked["method"].iloc[0], ranked["method"].iloc[1]
        here = quality[(quality["dataset"] == dataset) & (quality["scale"] == scale)]
        a = here[here["method"] == leader].set_index("image")["psnr"]
        b = here[here["method"] == runner].set_index("image")["psnr"]
        both = a.index.intersection(b.index)
        a, b = a.loc[both].to_numpy(float), b.loc[both].to_numpy(float)
        finite = np.isfinite(a) & np.isfinite(b)
        p = paired_permutation_p(a, b)
        n = int(finite.sum())
        rows.append(
            {
                "dataset": dataset,
                "scale": int(scale),
                "leader": leader,
                "runner_up": runner,
                "lead_db": float(ranked["psnr"].iloc[0] - ranked["psnr"].iloc[1]),
                "n": n,
                "wins": int(np.sum(a[finite] > b[finite])),
                "p_value": p,
                "min_p": min_attainable_p(n),
                "significant": bool(p < ALPHA),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "scale",
            "leader",
            "runner_up",
            "lead_db",
            "n",
            "wins",
            "p_value",
            "min_p",
            "significant",
        ],
    )
