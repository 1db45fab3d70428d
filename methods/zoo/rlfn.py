"""RLFN and RLFN-S: the network with the official checkpoint's key names, and their zoo records.

Kong et al., Residual Local Feature Network for Efficient Super-Resolution, CVPR 2022 workshops
(bytedance/RLFN, model_zoo/rlfn{,_s}_x{2,4}.pth; Apache-2.0). One class: RLFN has 52 channels,
RLFN-S 48. Only x2 and x4 weights exist.

- Input: RGB in [0, 255], no mean shift (with [0, 1] input the weights score below bicubic).
- Training data: DIV2K per the paper (not confirmed from a stored text; the repository has no
  training code).
- Residual: a feature-space skip from the first conv over the six blocks; no image-space residual.
- ESA pools and resizes over the whole feature map, so tiling changes the output.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods._thread_invariant import sigmoid, upsample_bilinear
from methods.zoo._spec import ZooModel, flat_state

__all__ = ["MODELS", "RLFNNet"]

ESA_CHANNELS = 16
NEG_SLOPE = 0.05
N_BLOCKS = 6


class ESA(nn.Module):
    """RLFN's reduced enhanced spatial attention: NxCxhxw -> the same, gated by a sigmoid mask.

    Unlike RFDN/BSRN's ESA it has no conv_max and no conv3_, and no ReLU inside.
    """

    def __init__(self, channels: int, esa_channels: int = ESA_CHANNELS) -> None:
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.conv1(x)
        pooled = F.max_pool2d(self.conv2(c1), kernel_size=7, stride=3)
        c3 = upsample_bilinear(self.conv3(pooled), x.shape[-2:])  # align_corners=False
        return x * sigmoid(self.conv4(c3 + self.conv_f(c1)))


class RLFB(nn.Module):
    """Residual local feature block: three 3x3 conv + LReLU(0.05) with a skip, then 1x1 c5 and ESA."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.c1_r = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2_r = nn.Conv2d(channels, channels, 3, padding=1)
        self.c3_r = nn.Conv2d(channels, channels, 3, padding=1)
        self.c5 = nn.Conv2d(channels, channels, 1)
        self.esa = ESA(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.c1_r(x), NEG_SLOPE)
        out = F.leaky_relu(self.c2_r(out), NEG_SLOPE)
        out = F.leaky_relu(self.c3_r(out), NEG_SLOPE)
        return self.esa(self.c5(out + x))


class RLFNNet(nn.Module):
    """RLFN: conv_1, six RLFBs (`block_1..6`), conv_2 plus the conv_1 skip, conv 3x3 -> 3s^2, PS(s).

    Nx3xhxw RGB in [0, 255] -> Nx3x(h*s)x(w*s) in [0, 255] (not clipped). h, w >= 15 (ESA's pooling).
    """

    def __init__(self, scale: int, channels: int) -> None:
        super().__init__()
        self.scale = int(scale)
        self.conv_1 = nn.Conv2d(3, channels, 3, padding=1)
        for i in range(1, N_BLOCKS + 1):
            self.add_module(f"block_{i}", RLFB(channels))
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = nn.Sequential(
            nn.Conv2d(channels, 3 * self.scale**2, 3, padding=1), nn.PixelShuffle(self.scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_1(x)
        out = feat
        for i in range(1, N_BLOCKS + 1):
            out = getattr(self, f"block_{i}")(out)
        return self.upsampler(self.conv_2(out) + feat)


def _to_state(raw: Any, scale: int) -> dict[str, torch.Tensor]:
    return flat_state(raw)


# The local conv chain only (conv_1, 3 per block, conv_2, upsampler): ESA reaches across the whole image.
_RADIUS = 1 + 3 * N_BLOCKS + 1 + 1
# conv2 (3x3, stride 2, no padding) must leave at least 7 pixels for the 7x7 max-pool.
_MIN_SIZE = 15

MODELS: tuple[ZooModel, ...] = tuple(
    ZooModel(
        name=name,
        build=partial(RLFNNet, channels=channels),
        to_state=_to_state,
        input_range=255.0,
        receptive_radius=_RADIUS,
        tile_exact=False,
        min_size=_MIN_SIZE,
    )
    for name, channels in (("rlfn", 52), ("rlfn-s", 48))
)
