"""CARN-M: the multi-scale network with the official checkpoint's key names, and its zoo record.

Ahn et al., Fast, Accurate, and Lightweight Super-Resolution with Cascading Residual Network, ECCV 2018
(nmhkahn/CARN-pytorch, checkpoint/carn_m.pth; MIT). One file for x2, x3 and x4: the network always holds
the shared body and all three upsampler branches, and runs the branch of the scale it was built for.

- Input: RGB in [0, 1]. The DIV2K mean (0.4488, 0.4371, 0.4040) is subtracted and added back by 1x1
  convs stored in the checkpoint (identity weights), loaded like every other tensor.
- Training data: DIV2K only, with the DIV2K MATLAB bicubic LR (author, issue #30).
- Residual: none in image space; cascading 1x1 fusions over the concatenated features.
- Purely local (no pooling or global statistics), so tiling with `receptive_radius` overlap is exact.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import UsageError
from methods.zoo._spec import ZooModel, flat_state

__all__ = ["MODELS", "CARNMNet"]

NF = 64
GROUPS = 4
SCALES = (2, 3, 4)


class MeanShift(nn.Module):
    """A 1x1 conv 3->3 (`shifter`); the checkpoint holds identity weights and -/+ the DIV2K mean."""

    def __init__(self) -> None:
        super().__init__()
        self.shifter = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class EResidualBlock(nn.Module):
    """Efficient residual block: grouped 3x3, ReLU, grouped 3x3, ReLU, 1x1, plus the input, ReLU."""

    def __init__(self, channels: int = NF, groups: int = GROUPS) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=groups),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, groups=groups),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class Fuse(nn.Module):
    """The cascade's 1x1 conv k*64 -> 64 plus ReLU (`c{k}.body.0`)."""

    def __init__(self, in_channels: int, channels: int = NF) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, channels, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CascadingBlock(nn.Module):
    """Local cascade: one shared EResidualBlock `b1` applied three times, each output concatenated with
    everything before it and fused by `c1..c3`."""

    def __init__(self, channels: int = NF) -> None:
        super().__init__()
        self.b1 = EResidualBlock(channels)
        self.c1 = Fuse(2 * channels, channels)
        self.c2 = Fuse(3 * channels, channels)
        self.c3 = Fuse(4 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cat, out = x, x
        for fuse in (self.c1, self.c2, self.c3):
            cat = torch.cat([cat, self.b1(out)], dim=1)
            out = fuse(cat)
        return out


def _shuffle_unit(channels: int, factor: int) -> list[nn.Module]:
    """Grouped conv 3x3 to factor^2 * channels, ReLU, PixelShuffle(factor)."""
    return [
        nn.Conv2d(channels, factor**2 * channels, 3, padding=1, groups=GROUPS),
        nn.ReLU(),
        nn.PixelShuffle(factor),
    ]


class UpsampleBranch(nn.Module):
    """One scale's upsampler (`body`): x2 and x3 one shuffle unit, x4 two x2 units."""

    def __init__(self, scale: int, channels: int = NF) -> None:
        super().__init__()
        units = (
            [_shuffle_unit(channels, 2), _shuffle_unit(channels, 2)]
            if scale == 4
            else [_shuffle_unit(channels, scale)]
        )
        self.body = nn.Sequential(*(layer for unit in units for layer in unit))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MultiScaleUpsample(nn.Module):
    """The three branches `up2`, `up3`, `up4`, all kept so the single checkpoint loads strictly."""

    def __init__(self, channels: int = NF) -> None:
        super().__init__()
        self.up2 = UpsampleBranch(2, channels)
        self.up3 = UpsampleBranch(3, channels)
        self.up4 = UpsampleBranch(4, channels)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        branch: nn.Module = getattr(self, f"up{scale}")
        return branch(x)


class CARNMNet(nn.Module):
    """CARN-M (multi_scale, group=4): sub_mean, entry 3x3, three cascading blocks `b1..b3` fused by
    `c1..c3`, the upsampler branch of `scale`, exit 3x3, add_mean.

    Nx3xhxw RGB in [0, 1] -> Nx3x(h*s)x(w*s) in [0, 1] (not clipped). Raises UsageError for a scale
    other than 2, 3 or 4.
    """

    # entry 1 + three blocks x three EResidualBlocks x two 3x3 convs + the upsampler's LR conv 1; the
    # 3x3 convs after the first PixelShuffle (x4's second unit, exit) add 1 LR pixel together, at any scale
    receptive_radius = 1 + 3 * 3 * 2 + 1 + 1

    def __init__(self, scale: int, channels: int = NF) -> None:
        super().__init__()
        if scale not in SCALES:
            raise UsageError(f"carn-m has upsampler branches for scales {SCALES}, got scale {scale}")
        self.scale = int(scale)
        self.sub_mean = MeanShift()
        self.add_mean = MeanShift()
        self.entry = nn.Conv2d(3, channels, 3, padding=1)
        self.b1 = CascadingBlock(channels)
        self.b2 = CascadingBlock(channels)
        self.b3 = CascadingBlock(channels)
        self.c1 = Fuse(2 * channels, channels)
        self.c2 = Fuse(3 * channels, channels)
        self.c3 = Fuse(4 * channels, channels)
        self.upsample = MultiScaleUpsample(channels)
        self.exit = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cat = out = self.entry(self.sub_mean(x))
        for block, fuse in ((self.b1, self.c1), (self.b2, self.c2), (self.b3, self.c3)):
            cat = torch.cat([cat, block(out)], dim=1)
            out = fuse(cat)
        return self.add_mean(self.exit(self.upsample(out, self.scale)))


def _to_state(raw: Any, scale: int) -> dict[str, torch.Tensor]:
    # the whole multi-scale file at every scale: the unused branches load too
    return flat_state(raw)


MODELS: tuple[ZooModel, ...] = (
    ZooModel(
        name="carn-m",
        build=CARNMNet,
        to_state=_to_state,
        input_range=1.0,
        receptive_radius=CARNMNet.receptive_radius,
    ),
)
