"""IMDN: the network with the official checkpoint's key names, and its zoo record.

Hui et al., Lightweight Image Super-Resolution with Information Multi-distillation Network, ACM MM 2019
(Zheng222/IMDN, checkpoints/IMDN_x{2,3,4}.pth; no licence). Keys carry nn.DataParallel's `module.`
prefix, stripped on load.

- Input: RGB in [0, 1] (rgb_range=1), no mean shift.
- Training data: DIV2K, 800 images.
- Residual: a feature-space skip from fea_conv over the six blocks; no image-space residual.
- CCA takes each channel's mean and standard deviation over the whole image, so tiling changes the output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.zoo._spec import ZooModel, flat_state

__all__ = ["MODELS", "IMDNNet"]

NF = 64
DISTILLED = 16  # distillation rate 0.25 of 64 channels
N_BLOCKS = 6
CCA_REDUCTION = 16
NEG_SLOPE = 0.05


class CCA(nn.Module):
    """Contrast-aware channel attention: NxCxhxw -> the same, scaled per channel.

    The statistic is the per-channel population std plus mean over h x w.
    """

    def __init__(self, channels: int, reduction: int = CCA_REDUCTION) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return x * self.conv_du(std + mean)


class IMDB(nn.Module):
    """Information multi-distillation block: three distilling 3x3 convs, c4, CCA, 1x1 c5, plus the input."""

    def __init__(self, channels: int = NF, distilled: int = DISTILLED) -> None:
        super().__init__()
        self.distilled = distilled
        self.remaining = channels - distilled
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(self.remaining, channels, 3, padding=1)
        self.c3 = nn.Conv2d(self.remaining, channels, 3, padding=1)
        self.c4 = nn.Conv2d(self.remaining, distilled, 3, padding=1)
        self.cca = CCA(distilled * 4)
        self.c5 = nn.Conv2d(distilled * 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = [self.distilled, self.remaining]
        d1, r1 = torch.split(F.leaky_relu(self.c1(x), NEG_SLOPE), split, dim=1)
        d2, r2 = torch.split(F.leaky_relu(self.c2(r1), NEG_SLOPE), split, dim=1)
        d3, r3 = torch.split(F.leaky_relu(self.c3(r2), NEG_SLOPE), split, dim=1)
        out = torch.cat([d1, d2, d3, self.c4(r3)], dim=1)
        return self.c5(self.cca(out)) + x


class IMDNNet(nn.Module):
    """IMDN: fea_conv, six IMDBs (`IMDB1..6`), 1x1 fusion `c` with LReLU, LR_conv plus the fea_conv skip,
    conv 3x3 -> 3s^2, PS(s).

    Nx3xhxw RGB in [0, 1] -> Nx3x(h*s)x(w*s) in [0, 1] (not clipped).
    """

    def __init__(self, scale: int, nf: int = NF) -> None:
        super().__init__()
        self.scale = int(scale)
        self.fea_conv = nn.Conv2d(3, nf, 3, padding=1)
        for i in range(1, N_BLOCKS + 1):
            self.add_module(f"IMDB{i}", IMDB(nf))
        self.c = nn.Sequential(nn.Conv2d(nf * N_BLOCKS, nf, 1), nn.LeakyReLU(NEG_SLOPE))
        self.LR_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.upsampler = nn.Sequential(
            nn.Conv2d(nf, 3 * self.scale**2, 3, padding=1), nn.PixelShuffle(self.scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.fea_conv(x)
        outs = []
        out = feat
        for i in range(1, N_BLOCKS + 1):
            out = getattr(self, f"IMDB{i}")(out)
            outs.append(out)
        fused = self.c(torch.cat(outs, dim=1))
        return self.upsampler(self.LR_conv(fused) + feat)


def _to_state(raw: Any, scale: int) -> dict[str, torch.Tensor]:
    # saved from nn.DataParallel: every key starts with `module.`
    return flat_state(raw, strip="module.")


MODELS: tuple[ZooModel, ...] = (
    ZooModel(
        name="imdn",
        build=IMDNNet,
        to_state=_to_state,
        input_range=1.0,
        # the local conv chain only (fea_conv, 4 per block, LR_conv, upsampler): CCA sees the whole image
        receptive_radius=1 + 4 * N_BLOCKS + 1 + 1,
        tile_exact=False,
    ),
)
