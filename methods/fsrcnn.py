"""FSRCNN (Dong et al. 2016; d=56, s=12, m=4) on the LR Y channel, and its Method adapter."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.train.config import TrainingDefaults
from methods._thread_invariant import conv_transpose_subpixel
from methods._torchsr import _bias, method_factory

__all__ = ["FSRCNNNet", "make", "build_net", "TRAINING"]


class FSRCNNNet(nn.Module):
    """FSRCNN(d, s, m): feature extraction 5x5 1->d, shrinking 1x1 d->s, m mapping 3x3 s->s,
    expanding 1x1 s->d (each followed by a per-channel PReLU), 9x9 deconvolution d->1 with stride = scale.

    Input Nx1xhxw float32 LR Y / 255 -> Nx1x(h*scale)x(w*scale). x3: 12,809 params.
    The deconvolution's padding p = (10 - scale) // 2 and output_padding 2p - 9 + scale give exactly
    h*scale outputs with the kernel centre as close as possible to the LR pixel's HR position.
    """

    def __init__(self, scale: int, d: int = 56, s: int = 12, m: int = 4) -> None:
        super().__init__()
        self.scale = int(scale)
        layers: list[nn.Module] = [nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d)]
        layers += [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        pad = (10 - self.scale) // 2
        self.deconv_padding = pad
        self.deconv = nn.ConvTranspose2d(
            d, 1, 9, stride=self.scale, padding=pad, output_padding=2 * pad - 9 + self.scale
        )
        # LR pixels of context: 5x5 (2) + m 3x3 (m) + the 9x9 deconvolution (<= 4 LR pixels)
        self.receptive_radius = 2 + m + 4
        nn.init.normal_(self.deconv.weight, std=0.001)  # as the paper initialises the deconvolution
        nn.init.zeros_(_bias(self.deconv))
        # The deconvolution runs as a sub-pixel convolution of the same weights (same outputs to float
        # rounding): oneDNN's transposed convolution sums in a thread-count-dependent order, so a
        # one-thread worker and a two-thread process would score different images. False runs
        # nn.ConvTranspose2d itself (the reference the tests compare with).
        self.subpixel_deconv = True

    @torch.no_grad()
    def init_bicubic(self) -> None:
        """Start as (9-tap truncated) MATLAB bicubic upsampling: channel 0 of every layer passes the
        non-negative input through (PReLU is the identity there) and the deconvolution's channel-0
        kernel is the bicubic interpolation kernel; the other channels keep their random init and
        reach the output through the deconvolution's tiny initial weights. Same architecture."""
        from methods._torchsr import cubic

        for layer in self.body:
            if isinstance(layer, nn.Conv2d):
                k = layer.kernel_size[0] // 2
                layer.weight[0].zero_()
                layer.weight[0, 0, k, k] = 1.0
                _bias(layer)[0] = 0.0
        s, p = self.scale, self.deconv_padding
        taps = np.zeros(9)
        for k in range(9):  # output o = i*s - p + k; o's own LR cell i' = i + d, sub-pixel a
            t = k - p
            a, d = t % s, t // s
            taps[k] = cubic(np.array([(a + 0.5) / s - 0.5 + d]))[0]
        for a in range(s):  # each sub-pixel phase sums to 1 after truncation to 9 taps
            idx = [k for k in range(9) if (k - p) % s == a]
            taps[idx] /= taps[idx].sum()
        self.deconv.weight[0, 0] = torch.from_numpy(np.outer(taps, taps)).float()
        _bias(self.deconv).zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        return conv_transpose_subpixel(x, self.deconv) if self.subpixel_deconv else self.deconv(x)


def build_net(scale: int) -> FSRCNNNet:
    return FSRCNNNet(scale)


make = method_factory("fsrcnn", build_net, input_upscaled=False, tile_unit="LR")


# `bench train fsrcnn`: the recipe its runs start from (each value can be overridden on the command line)
TRAINING = TrainingDefaults(
    build=build_net,
    input_upscaled=False,
    steps=30000,
    batch_size=64,
    patch_size=16,  # LR pixels
    lr=1e-3,
    bicubic_start=FSRCNNNet.init_bicubic,
    init_text={"random": "random (torch defaults; FSRCNN deconvolution N(0, 0.001))"},
)
