"""SMFANet: the network with the official checkpoints' key names, and its two zoo records.

Zheng, Sun, Dong, Pan, SMFANet: A Lightweight Self-Modulation Feature Aggregation Network for
Efficient Image Super-Resolution, ECCV 2024; weights from Zheng-MJ/SMFANet (`pretrain/`, BasicSR
`{'params': state_dict}`). Input RGB [0,1], no mean shift. Two files per scale: `smfanet` was
trained on DIV2K (`SMFANet_DIV2K_100w_x{s}SR.pth`), `smfanet-df2k` on DF2K. No image-space residual:
the feature residual adds the first conv's features to the output of the last block.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods._thread_invariant import gelu
from methods.zoo._spec import ZooModel, nested_state

__all__ = ["FMB", "MODELS", "PCFN", "SMFA", "SMFANetNet"]

_FEATS = 36
_BLOCKS = 8
_POOL = 8  # the modulation map has one cell per 8x8 input pixels
_FFN_EXPANSION = 2
_PARTIAL = 0.25


class _LocalDetail(nn.Module):
    """Depthwise 3x3 C -> 2C (multiplier 2), 1x1 2C -> 2C, GELU, 1x1 2C -> C."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = 2 * channels
        self.conv_0 = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1, groups=channels), nn.Conv2d(hidden, hidden, 1)
        )
        self.conv_1 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1(gelu(self.conv_0(x)))


class SMFA(nn.Module):
    """Self-modulation feature aggregation: NxCxhxw -> NxCxhxw, h and w >= 8.

    Half of a 1x1 expansion is modulated by a map built from its adaptive max-pool (h//8 x w//8) and
    its per-channel variance over the whole image; the other half goes through a local detail branch.
    """

    def __init__(self, channels: int = _FEATS) -> None:
        super().__init__()
        self.linear_0 = nn.Conv2d(channels, 2 * channels, 1)
        self.linear_1 = nn.Conv2d(channels, channels, 1)
        self.linear_2 = nn.Conv2d(channels, channels, 1)
        self.lde = _LocalDetail(channels)
        self.dw_conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.belt = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, w = z.shape[-2:]
        y, x = self.linear_0(z).chunk(2, dim=1)
        # adaptive, not a fixed 8x8 pool: for sizes that are not multiples of 8 the windows overlap
        x_s = self.dw_conv(F.adaptive_max_pool2d(x, (h // _POOL, w // _POOL)))
        x_v = torch.var(x, dim=(-2, -1), keepdim=True)  # unbiased (N-1), as the authors' torch.var
        m = gelu(self.linear_1(x_s * self.alpha + x_v * self.belt))
        x_l = x * F.interpolate(m, size=(h, w), mode="nearest")
        return self.linear_2(x_l + self.lde(y))


class PCFN(nn.Module):
    """Partial-convolution FFN: 1x1 C -> 2C, GELU, 3x3 + GELU on the first quarter, 1x1 2C -> C."""

    def __init__(self, channels: int = _FEATS) -> None:
        super().__init__()
        hidden = _FFN_EXPANSION * channels
        self.partial = int(hidden * _PARTIAL)
        self.conv_0 = nn.Conv2d(channels, hidden, 1)
        self.conv_1 = nn.Conv2d(self.partial, self.partial, 3, padding=1)
        self.conv_2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = gelu(self.conv_0(x))
        head, rest = x.split([self.partial, x.shape[1] - self.partial], dim=1)
        return self.conv_2(torch.cat((gelu(self.conv_1(head)), rest), dim=1))


class FMB(nn.Module):
    """Feature modulation block: two residual units, each on the L2-normalised (over channels) input."""

    def __init__(self, channels: int = _FEATS) -> None:
        super().__init__()
        self.smfa = SMFA(channels)
        self.pcfn = PCFN(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.smfa(F.normalize(x, dim=1))
        return x + self.pcfn(F.normalize(x, dim=1))


class SMFANetNet(nn.Module):
    """SMFANet for one scale: Nx3xhxw RGB [0,1] -> Nx3x(h*s)x(w*s) RGB [0,1], not clipped; h, w >= 8.

    Conv 3x3 3 -> 36, eight FMBs plus the first conv's features, conv 3x3 36 -> 3*s^2, PixelShuffle(s).
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = int(scale)
        self.to_feat = nn.Conv2d(3, _FEATS, 3, padding=1)
        self.feats = nn.Sequential(*(FMB(_FEATS) for _ in range(_BLOCKS)))
        self.to_img = nn.Sequential(
            nn.Conv2d(_FEATS, 3 * self.scale**2, 3, padding=1), nn.PixelShuffle(self.scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.to_feat(x)
        return self.to_img(self.feats(f0) + f0)


def _to_state(raw: Any, scale: int) -> dict[str, torch.Tensor]:
    # BasicSR file with a `params` entry only (no `params_ema`), loaded so by the authors' test configs
    return nested_state(raw, "params")


# 3x3 convs at full resolution: to_feat, per FMB the depthwise conv of the detail branch and PCFN's
# conv_1, to_img. The modulation path reaches further (3x3 over 8x8 cells) and the variance sees the
# whole image, which is why tiling is not exact.
_RADIUS = 1 + _BLOCKS * 2 + 1

MODELS: tuple[ZooModel, ...] = tuple(
    ZooModel(
        name=name,
        build=SMFANetNet,
        to_state=_to_state,
        input_range=1.0,
        receptive_radius=_RADIUS,
        tile_exact=False,
        min_size=_POOL,  # the adaptive pool needs at least one 8x8 cell per side
    )
    for name in ("smfanet", "smfanet-df2k")
)
