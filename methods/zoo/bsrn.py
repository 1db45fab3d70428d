"""BSRN, the Blueprint Separable Residual Network, with its official x2/x3/x4 checkpoints.

Li et al., Blueprint Separable Residual Network for Efficient Image Super-Resolution, CVPR 2022 workshops
(repo xiaom233/BSRN). Input and output RGB in [0, 1], no mean shift. Trained on DF2K (1M iterations,
L1, Adam with cosine decay). No image-space residual: the features go straight to a pixel-shuffle
upsampler. Checkpoints are BasicSR `{'params': state_dict}`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods._thread_invariant import gelu, sigmoid, upsample_bilinear
from methods.zoo._blocks import BSConvU, distilled_trunk
from methods.zoo._spec import ZooModel, nested_state

__all__ = ["BSRNNet", "ESDB", "ESA", "CCA", "MODELS"]

NUM_FEAT = 64
NUM_BLOCKS = 8
# Local context per ESDB: the chain c1_r -> c2_r -> c3_r -> c4 of 3x3 BSConvUs (ESA and CCA are global).
_ESDB_RADIUS = 4
# fea_conv, the 8 ESDBs, c2 and the upsampler conv: the 3x3 chain only. No overlap makes tiling exact
# (CCA's mean/std is global, and ESA's resize grid depends on the tile size; ESA alone reaches about
# 40 pixels per block), so this is the overlap for tiling asked for despite `tile_exact=False`.
RECEPTIVE_RADIUS = 1 + NUM_BLOCKS * _ESDB_RADIUS + 1 + 1
# ESA: a 3x3 stride-2 unpadded conv, then a 7x7 max-pool, needs (h - 3) // 2 + 1 >= 7.
MIN_SIZE = 15


class ESA(nn.Module):
    """Enhanced spatial attention (f = 16): a sigmoid gate from a strided, max-pooled, resized branch.

    NxCxHxW -> NxCxHxW. Uses the whole image (max-pool, resize to the input size): not tile-exact.
    """

    def __init__(self, channels: int, f: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_max = BSConvU(f, f)
        self.conv2 = BSConvU(f, f, stride=2, padding=0)
        self.conv3 = BSConvU(f, f)
        self.conv3_ = BSConvU(f, f)
        self.conv4 = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        v = F.max_pool2d(self.conv2(c1_), kernel_size=7, stride=3)
        v = gelu(self.conv_max(v))
        v = gelu(self.conv3(v))
        v = self.conv3_(v)
        v = upsample_bilinear(v, x.shape[2:])  # align_corners=False
        return x * sigmoid(self.conv4(v + self.conv_f(c1_)))


class CCA(nn.Module):
    """Contrast-aware channel attention: gate = sigmoid(1x1 -> ReLU -> 1x1 of (std + mean) over HxW).

    NxCxHxW -> NxCxHxW. The std is the population std (divides by H*W). Whole-image statistics.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return x * sigmoid(self.conv_du(std + mean))


class ESDB(nn.Module):
    """Efficient separable distillation block: three distill/refine steps, fuse, ESA, CCA, + input.

    NxCxHxW -> NxCxHxW; the refinement steps keep an identity shortcut before their GELU.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        dc = channels // 2
        self.c1_d = nn.Conv2d(channels, dc, 1)
        self.c1_r = BSConvU(channels, channels)
        self.c2_d = nn.Conv2d(channels, dc, 1)
        self.c2_r = BSConvU(channels, channels)
        self.c3_d = nn.Conv2d(channels, dc, 1)
        self.c3_r = BSConvU(channels, channels)
        self.c4 = BSConvU(channels, dc)
        self.c5 = nn.Conv2d(4 * dc, channels, 1)
        self.esa = ESA(channels)
        self.cca = CCA(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = gelu(self.c1_d(x))
        r1 = gelu(self.c1_r(x) + x)
        d2 = gelu(self.c2_d(r1))
        r2 = gelu(self.c2_r(r1) + r1)
        d3 = gelu(self.c3_d(r2))
        r3 = gelu(self.c3_r(r2) + r2)
        r4 = gelu(self.c4(r3))
        out = self.c5(torch.cat([d1, d2, d3, r4], dim=1))
        return self.cca(self.esa(out)) + x


class PixelShuffleDirect(nn.Module):
    """Conv 3x3 C -> 3*s*s, then pixel shuffle s: NxCxhxw -> Nx3x(h*s)x(w*s)."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.upsampleOneStep = nn.Sequential(
            nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampleOneStep(x)


class BSRNNet(nn.Module):
    """BSRN (64 channels, 8 ESDBs): Nx3xhxw RGB in [0, 1] -> Nx3x(h*s)x(w*s) RGB in [0, 1], unclipped.

    Needs h, w >= 15 (the ESA's strided conv and 7x7 max-pool).
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        # The stem sees the RGB input repeated 4 times along channels (3 -> 12), as the authors built it.
        self.fea_conv = BSConvU(3 * 4, NUM_FEAT)
        for i in range(1, NUM_BLOCKS + 1):
            self.add_module(f"B{i}", ESDB(NUM_FEAT))
        self.c1 = nn.Conv2d(NUM_FEAT * NUM_BLOCKS, NUM_FEAT, 1)
        self.c2 = BSConvU(NUM_FEAT, NUM_FEAT)
        self.upsampler = PixelShuffleDirect(NUM_FEAT, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampler(distilled_trunk(self, x, NUM_BLOCKS))


def _to_state(raw: Any, scale: int) -> dict[str, torch.Tensor]:
    return nested_state(raw, "params")


MODELS: tuple[ZooModel, ...] = (
    ZooModel(
        name="bsrn",
        build=BSRNNet,
        to_state=_to_state,
        input_range=1.0,
        receptive_radius=RECEPTIVE_RADIUS,
        tile_exact=False,
        min_size=MIN_SIZE,
    ),
)
