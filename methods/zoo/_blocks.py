"""Layers shared by the zoo's BSRN-family networks: BSConvU, large-kernel attention, per-pixel LayerNorm.

The attribute names are the ones the authors' checkpoints use (`pw`/`dw`, `pointwise`/`depthwise`/
`depthwise_dilated`, `weight`/`bias`), so the modules built here load those state dicts strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods._thread_invariant import gelu

__all__ = ["BSConvU", "LKA", "ChannelLayerNorm", "LKA_RADIUS"]

# LR pixels of context one LKA adds: the 5x5 depthwise (2) plus the 5x5 depthwise with dilation 3 (2 * 3).
LKA_RADIUS = 2 + 2 * 3


class BSConvU(nn.Module):
    """Blueprint-separable conv: pointwise 1x1 in->out (no bias), then depthwise kxk on out channels (bias).

    Maps NxCinxHxW to NxCoutxH'xW'; `stride` and `padding` apply to the depthwise conv only.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1
    ) -> None:
        super().__init__()
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.dw = nn.Conv2d(
            out_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=out_channels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(self.pw(x))


class LKA(nn.Module):
    """Large-kernel attention on C channels: x * dwdil5x5(dw5x5(pw1x1(x))), with no sigmoid on the map.

    The 5x5 depthwise pair (the second dilated by 3) reaches `LKA_RADIUS` pixels; 'same' zero padding.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(channels, channels, 1)
        self.depthwise = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.depthwise_dilated = nn.Conv2d(channels, channels, 5, padding=6, dilation=3, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.depthwise_dilated(self.depthwise(self.pointwise(x)))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the C channels of each pixel of an NxCxHxW tensor (eps 1e-5, affine).

    This is the authors' `pixel_norm` (an `nn.LayerNorm(C)` applied channels-last), not a norm over CxHxW,
    so it is local: it never mixes pixels.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def distilled_trunk(net: nn.Module, x: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """The BSRN/LKDN trunk (LKDN descends from BSRN): the input repeated 4x along channels, `fea_conv`,
    blocks `B1..Bn` in sequence, `c1` on all their outputs, GELU, `c2`, plus the stem output."""
    part = net.get_submodule  # typed access to the named layers
    f0 = part("fea_conv")(x.repeat(1, 4, 1, 1))
    outs = []
    h = f0
    for i in range(1, n_blocks + 1):
        h = part(f"B{i}")(h)
        outs.append(h)
    result: torch.Tensor = part("c2")(gelu(part("c1")(torch.cat(outs, dim=1)))) + f0
    return result
