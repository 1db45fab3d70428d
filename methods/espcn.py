"""ESPCN (Shi et al. 2016): sub-pixel convolution on the LR Y channel, and its Method adapter."""

from __future__ import annotations

import torch
from torch import nn

from bench.train.config import TrainingDefaults
from methods._torchsr import _bias, method_factory

__all__ = ["ESPCNNet", "make", "build_net", "TRAINING"]


class ESPCNNet(nn.Module):
    """ESPCN: conv 5x5 1->64, tanh, conv 3x3 64->32, tanh, conv 3x3 32->r^2, PixelShuffle(r).

    tanh as in the paper. Input Nx1xhxw float32 LR Y / 255 -> Nx1x(h*r)x(w*r). x3: 22,729 params.
    """

    receptive_radius = 2 + 1 + 1  # LR pixels

    def __init__(self, scale: int, n1: int = 64, n2: int = 32) -> None:
        super().__init__()
        self.scale = int(scale)
        self.conv1 = nn.Conv2d(1, n1, 5, padding=2)
        self.conv2 = nn.Conv2d(n1, n2, 3, padding=1)
        self.conv3 = nn.Conv2d(n2, self.scale**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(self.scale)

    @torch.no_grad()
    def init_bicubic(self, gain: float = 0.2) -> None:
        """Start as MATLAB bicubic upsampling: conv1's first r^2 filters are the bicubic phase filters
        (scaled into tanh's linear range), conv2 passes them on, conv3 undoes the scaling; the other
        filters keep their random init and feed conv3 through zero weights. Same architecture."""
        from methods._torchsr import bicubic_phase_taps

        r = self.scale
        taps = torch.from_numpy(bicubic_phase_taps(r, 5)).float()
        for a in range(r):
            for b in range(r):
                c = a * r + b  # PixelShuffle puts channel a*r + b at sub-pixel (row a, column b)
                self.conv1.weight[c, 0] = gain * torch.outer(taps[a], taps[b])
                _bias(self.conv1)[c] = -0.5 * gain  # centre Y in [0, 1] around 0 for tanh
        n = r * r
        self.conv2.weight[:n].zero_()
        _bias(self.conv2)[:n].zero_()
        self.conv3.weight.zero_()
        for c in range(n):
            self.conv2.weight[c, c, 1, 1] = 1.0
            self.conv3.weight[c, c, 1, 1] = 1.0 / gain
        _bias(self.conv3).fill_(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return self.shuffle(self.conv3(x))


def build_net(scale: int) -> ESPCNNet:
    return ESPCNNet(scale)


make = method_factory("espcn", build_net, input_upscaled=False, tile_unit="LR")

# `bench train espcn`: the recipe its runs start from (each value can be overridden on the command line)
TRAINING = TrainingDefaults(
    build=build_net,
    input_upscaled=False,
    steps=30000,
    batch_size=64,
    patch_size=17,  # LR pixels
    lr=1e-3,
    bicubic_start=ESPCNNet.init_bicubic,
)
