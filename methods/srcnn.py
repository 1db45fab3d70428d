"""SRCNN 9-5-5 (Dong et al. 2014/2016) on the bicubic-upscaled Y channel, and its Method adapter."""

from __future__ import annotations

import torch
from torch import nn

from bench.train.config import TrainingDefaults
from methods._torchsr import _bias, method_factory

__all__ = ["SRCNNNet", "SRCNN_SCALES", "make", "build_net", "TRAINING"]

SRCNN_SCALES = (2, 3, 4)


class SRCNNNet(nn.Module):
    """SRCNN 9-5-5: conv 9x9 1->64, ReLU, conv 5x5 64->32, ReLU, conv 5x5 32->1; 'same' zero padding.

    Input: Nx1xHxW float32, the bicubic-upscaled Y plane / 255; output: the same size. 57,281 params.
    Scale-agnostic: the scale only decides the bicubic upscaling in front of it.
    """

    receptive_radius = 4 + 2 + 2  # pixels of context each output pixel needs (same grid as the input)

    def __init__(self, n1: int = 64, n2: int = 32, f1: int = 9, f2: int = 5, f3: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, n1, f1, padding=f1 // 2)
        self.conv2 = nn.Conv2d(n1, n2, f2, padding=f2 // 2)
        self.conv3 = nn.Conv2d(n2, 1, f3, padding=f3 // 2)
        self.relu = nn.ReLU(inplace=True)

    @torch.no_grad()
    def init_identity(self) -> None:
        """Make channel 0 of each layer pass the (non-negative) input through unchanged, so the
        untrained net outputs its bicubic input; the other filters keep their random init and the
        last layer starts at zero for them (residual-style start, same architecture)."""
        for conv in (self.conv1, self.conv2, self.conv3):
            k = conv.kernel_size[0] // 2
            conv.weight[0].zero_()
            conv.weight[0, 0, k, k] = 1.0
            _bias(conv)[0] = 0.0
        self.conv3.weight.zero_()
        self.conv3.weight[0, 0, 2, 2] = 1.0
        _bias(self.conv3).zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return self.conv3(x)


def build_net(scale: int) -> SRCNNNet:
    return SRCNNNet()


make = method_factory("srcnn", build_net, input_upscaled=True, tile_unit="HR")

# `bench train srcnn`: the recipe its runs start from (each value can be overridden on the command line)
TRAINING = TrainingDefaults(
    build=build_net,
    input_upscaled=True,  # scale-agnostic: one net may train on several scales at once
    steps=20000,
    batch_size=32,
    patch_size=36,  # HR pixels (its input is the bicubic-upscaled LR)
    lr=5e-4,
    bicubic_start=SRCNNNet.init_identity,
    init_text={
        "bicubic": "bicubic start: channel 0 of each layer set up to reproduce MATLAB bicubic interpolation "
        "(SRCNN: identity on its bicubic input), the other filters random (torch defaults)",
    },
)
