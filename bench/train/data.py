"""Training data: dataset images -> (network input, target) Y pairs per scale -> random aligned patch batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench.data import modcrop, open_dataset
from bench.errors import DataError
from bench.imresize import imresize
from bench.metrics import rgb_to_y
from bench.train.config import Plan

__all__ = ["training_images", "pairs_for_scale", "PatchSampler", "make_sampler"]

# (network input, target, dataset index): 1xhxw and 1xHxW float32 torch tensors of Y / 255
Pair = tuple[Any, Any, int]


def training_images(datasets: Sequence[str], scale_aug: Sequence[float]) -> list[tuple[np.ndarray, int]]:
    """(HxWx3 uint8 RGB HR, index of its dataset) for every image of `datasets`, plus a MATLAB-bicubic
    downscaled copy per factor in `scale_aug` (the scaling augmentation of Dong et al. 2016).

    Raises DataError when a dataset cannot be had or they hold no images.
    """
    images = []
    for group, name in enumerate(datasets):
        for im in open_dataset(name).images():
            images.append((im.rgb, group))
            h, w = im.rgb.shape[:2]
            for f in scale_aug:
                size = (max(1, round(h * f)), max(1, round(w * f)))
                images.append((imresize(im.rgb, output_shape=size), group))
    if not images:
        raise DataError(f"training datasets {', '.join(datasets)} hold no images")
    return images


def pairs_for_scale(
    images: Sequence[tuple[np.ndarray, int]], scale: int, input_upscaled: bool, min_side: int
) -> list[Pair]:
    """(network input, target, group) per (HxWx3 uint8 HR, group) image: Y planes as 1xHxW float32
    tensors in [0, 1]; images too small for `min_side` LR pixels are left out.

    LR is MATLAB bicubic of the modcropped uint8 RGB HR, exactly as evaluation makes it; the
    network input is its Y (float, unrounded), bicubic-upscaled again for input-upscaled networks.
    """
    import torch

    pairs = []
    for rgb, group in images:
        hr = np.ascontiguousarray(modcrop(rgb, scale))
        if min(hr.shape[:2]) // scale < min_side:
            continue
        lr = imresize(hr, 1.0 / scale)
        y_lr = rgb_to_y(lr)
        inp = imresize(y_lr, scale) if input_upscaled else y_lr
        tgt = rgb_to_y(hr)
        pairs.append(
            (
                torch.from_numpy((inp / 255.0).astype(np.float32))[None],
                torch.from_numpy((tgt / 255.0).astype(np.float32))[None],
                group,
            )
        )
    return pairs


class PatchSampler:
    """Random aligned (input, target) patches with a random flip/rot90 each, drawn area-proportionally."""

    def __init__(
        self,
        banks: dict[int, list[Pair]],
        patch: int,
        input_upscaled: bool,
        seed: int,
        balance: bool = False,
    ):
        self.banks = banks
        self.scales = sorted(banks)
        self.patch = patch
        self.input_upscaled = input_upscaled
        self.seed = int(seed)
        self.cdf = {}
        for s, pairs in banks.items():
            area = np.array([p[0].shape[-2] * p[0].shape[-1] for p in pairs], dtype=np.float64)
            if balance:  # every dataset gets the same share of patches, area-proportional within it
                group = np.array([p[2] for p in pairs])
                for g in np.unique(group):
                    area[group == g] /= area[group == g].sum()
            self.cdf[s] = np.cumsum(area / area.sum())

    def batch(self, n: int, step: int) -> tuple[Any, Any]:
        """Batch number `step` (Nx1xpxp inputs, their targets): a pure function of (seed, step), so a
        resumed run sees the same batches."""
        import torch

        rng = np.random.default_rng((self.seed, step))
        p = self.patch
        xs, ys = [], []
        for _ in range(n):
            s = self.scales[int(rng.integers(len(self.scales)))]
            inp, tgt, _ = self.banks[s][
                min(int(np.searchsorted(self.cdf[s], rng.random(), side="right")), len(self.cdf[s]) - 1)
            ]
            f = 1 if self.input_upscaled else s
            # input-upscaled patches start on the LR grid too, so every scale sees the sub-pixel phases of test time
            grid = s if self.input_upscaled else 1
            h, w = inp.shape[-2:]
            top = int(rng.integers((h - p) // grid + 1)) * grid
            left = int(rng.integers((w - p) // grid + 1)) * grid
            x = inp[:, top : top + p, left : left + p]
            y = tgt[:, top * f : (top + p) * f, left * f : (left + p) * f]
            k = int(rng.integers(8))
            if k & 4:
                x, y = x.flip(-1), y.flip(-1)
            if k & 3:
                x, y = torch.rot90(x, k & 3, (-2, -1)), torch.rot90(y, k & 3, (-2, -1))
            xs.append(x)
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)


def make_sampler(plan: Plan, state: Mapping[str, Any]) -> PatchSampler:
    """The patch sampler of a run: its datasets, scales and patch size from `plan`; the data options
    (`scale_aug`, `balance`) from `state`, so a resumed run draws from the data it began with.

    Raises DataError when no training image is large enough for the patches at some scale.
    """
    upscaled = plan.defaults.input_upscaled
    images = training_images(plan.config.datasets, state["scale_aug"])
    banks = {}
    for s in plan.scales:
        min_lr_side = (
            -(-plan.patch_size // s) if upscaled else plan.patch_size
        )  # upscaled patches are HR-sized
        banks[s] = pairs_for_scale(images, s, upscaled, min_lr_side)
        if not banks[s]:
            raise DataError(f"no training image is large enough for {plan.patch_size}-pixel patches at x{s}")
    return PatchSampler(banks, plan.patch_size, upscaled, plan.config.seed, balance=state["balance"])
