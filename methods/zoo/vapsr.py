"""VapSR, the vast-receptive-field pixel attention network, with its official x2/x3/x4 checkpoints.

Zhou et al., Efficient Image Super-Resolution Using Vast-Receptive-Field Attention, ECCV 2022 workshops
(repo zhoumumu/VapSR). Input and output RGB in [0, 1], no mean shift. Trained on DF2K (1M iterations,
Adam at lr 1e-3, L1, EMA 0.999). No image-space residual. Checkpoints are BasicSR
`{'params', 'params_ema'}`; the EMA weights are the ones the authors test.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from methods._thread_invariant import gelu
from methods.zoo._blocks import LKA, LKA_RADIUS, ChannelLayerNorm
from methods.zoo._spec import ZooModel, nested_state

__all__ = ["VapSRNet", "VAB", "MODELS", "num_blocks"]

NUM_FEAT = 48
ATTN_WIDTH = 64
_UPSAMPLE_FEAT = 56  # the x2/x3 upsampler's hidden width


def num_blocks(scale: int) -> int:
    """The number of VABs in the official checkpoint for `scale`: 21 for x4, 20 otherwise."""
    return 21 if scale == 4 else 20


# conv_first, the VABs, conv_body and two 3x3 upsampler convs (x4's second runs on the 2x grid, which
# still reaches one LR pixel). One record serves all scales, so this is x4's 1 + 21 * 8 + 1 + 2 = 172;
# x2/x3 need only 164.
RECEPTIVE_RADIUS = 1 + num_blocks(4) * LKA_RADIUS + 1 + 2


class VAB(nn.Module):
    """Vast-receptive-field attention block: norm(proj_2(LKA(GELU(proj_1(x)))) + x), post-norm.

    NxCxHxW -> NxCxHxW; the per-pixel LayerNorm comes after the residual addition.
    """

    def __init__(self, channels: int, attn_width: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(channels, attn_width, 1)
        self.atten_branch = LKA(attn_width)
        self.proj_2 = nn.Conv2d(attn_width, channels, 1)
        self.pixel_norm = ChannelLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.atten_branch(gelu(self.proj_1(x)))
        return self.pixel_norm(self.proj_2(t) + x)


def _upsampler(scale: int) -> nn.Sequential:
    if scale == 4:
        # Two stages of 2x: conv 48->64, PS(2) to 16 channels, LReLU, conv 16->12, PS(2).
        return nn.Sequential(
            nn.Conv2d(NUM_FEAT, 64, 3, padding=1),
            nn.PixelShuffle(2),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(16, 3 * 4, 3, padding=1),
            nn.PixelShuffle(2),
        )
    return nn.Sequential(
        nn.Conv2d(NUM_FEAT, _UPSAMPLE_FEAT, 3, padding=1),
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(_UPSAMPLE_FEAT, 3 * scale * scale, 3, padding=1),
        nn.PixelShuffle(scale),
    )


class VapSRNet(nn.Module):
    """VapSR (48 channels, 20 VABs; 21 for x4): Nx3xhxw RGB in [0, 1] -> Nx3x(h*s)x(w*s), unclipped."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(3, NUM_FEAT, 3, padding=1)
        self.body = nn.Sequential(*(VAB(NUM_FEAT, ATTN_WIDTH) for _ in range(num_blocks(scale))))
        self.conv_body = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, padding=1)
        self.upsampler = _upsampler(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.conv_first(x)
        return self.upsampler(self.conv_body(self.body(f0)) + f0)


def _to_state(raw: Any, scale: int) -> dict[str, torch.Tensor]:
    return nested_state(raw, "params_ema")


MODELS: tuple[ZooModel, ...] = (
    ZooModel(
        name="vapsr",
        build=VapSRNet,
        to_state=_to_state,
        input_range=1.0,
        receptive_radius=RECEPTIVE_RADIUS,
        tile_exact=True,
    ),
)
