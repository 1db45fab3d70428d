"""LKDN, the Large Kernel Distillation Network, with its official x2/x3/x4 checkpoints.

Xie et al., Large Kernel Distillation Network for Efficient Single Image Super-Resolution, CVPR 2023
workshops (repo stella-von/LKDN). Input and output RGB in [0, 1], no mean shift. Trained on DF2K (1M
iterations, Adan at lr 5e-3, L1, EMA 0.999). No image-space residual. Checkpoints are BasicSR
`{'params', 'params_ema'}`; the EMA weights are the ones the authors test (and `params` of x4 is
keyed differently).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from methods._thread_invariant import gelu
from methods.zoo._blocks import LKA, LKA_RADIUS, BSConvU, ChannelLayerNorm, distilled_trunk
from methods.zoo._spec import ZooModel, nested_state

__all__ = ["LKDNNet", "LKDB", "MODELS"]

NUM_FEAT = 56
NUM_BLOCKS = 8
# Per LKDB: the chain c1_r -> c2_r -> c3_r -> c4 of 3x3 BSConvUs, then the LKA's dilated 5x5 pair.
_LKDB_RADIUS = 4 + LKA_RADIUS
# fea_conv, the blocks, c2 and the upsampler conv: 1 + 8 * 12 + 1 + 1 = 99 LR pixels.
RECEPTIVE_RADIUS = 1 + NUM_BLOCKS * _LKDB_RADIUS + 1 + 1


class LKDB(nn.Module):
    """Large kernel distillation block: distill/refine x3, fuse, LKA, 1x1, per-pixel LayerNorm, + input.

    NxCxHxW -> NxCxHxW. Unlike BSRN's ESDB, the refinement steps have no identity shortcut, and the
    branch is normalised before the block input is added.
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
        self.atten = LKA(channels)
        self.c6 = nn.Conv2d(channels, channels, 1)
        self.pixel_norm = ChannelLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = gelu(self.c1_d(x))
        r1 = gelu(self.c1_r(x))
        d2 = gelu(self.c2_d(r1))
        r2 = gelu(self.c2_r(r1))
        d3 = gelu(self.c3_d(r2))
        r3 = gelu(self.c3_r(r2))
        r4 = gelu(self.c4(r3))
        out = self.atten(self.c5(torch.cat([d1, d2, d3, r4], dim=1)))
        return self.pixel_norm(self.c6(out)) + x


class LKDNNet(nn.Module):
    """LKDN (56 channels, 8 LKDBs): Nx3xhxw RGB in [0, 1] -> Nx3x(h*s)x(w*s) RGB in [0, 1], unclipped."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        # The stem sees the RGB input repeated 4 times along channels (3 -> 12), as in BSRN.
        self.fea_conv = BSConvU(3 * 4, NUM_FEAT)
        for i in range(1, NUM_BLOCKS + 1):
            self.add_module(f"B{i}", LKDB(NUM_FEAT))
        self.c1 = nn.Conv2d(NUM_FEAT * NUM_BLOCKS, NUM_FEAT, 1)
        self.c2 = BSConvU(NUM_FEAT, NUM_FEAT)
        self.upsampler = nn.Sequential(
            nn.Conv2d(NUM_FEAT, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampler(distilled_trunk(self, x, NUM_BLOCKS))


def _to_state(raw: Any, scale: int) -> dict[str, torch.Tensor]:
    return nested_state(raw, "params_ema")


MODELS: tuple[ZooModel, ...] = (
    ZooModel(
        name="lkdn",
        build=LKDNNet,
        to_state=_to_state,
        input_range=1.0,
        receptive_radius=RECEPTIVE_RADIUS,
        tile_exact=True,
    ),
)
