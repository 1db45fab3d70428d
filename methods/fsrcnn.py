"""FSRCNN (Dong et al. 2016; d=56, s=12, m=4) on the LR Y channel, and its Method adapter."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.train.config import TrainingDefaults
from methods._torchsr import _bias, method_factory

__all__ = ["FSRCNNNet", "make", "build_net", "TRAINING"]


class FSRCNNNet(nn.Module):
    """FSRCNN(d, s, m): feature extraction 5x5 1->d, shrinking 1x1 d->s, m mapping 3x3 s->s,
    expanding 1x1 s->d (each followed by a per-channel PReLU), 9x9 deconvolution d->1 with stride = scale.

    Input Nx1xhxw float32 LR Y / 255 -> Nx1x(h*scale)x(w*scale). x3: 12,809 params.
    The deconvolution's padding p = (10 - scale) // 2 and output_padding 2p - 9 + scale give exactly
    h*scale outputs with the kernel centre as close as possible to the LR pixel's HR position.
    """

    _phase_index: torch.Tensor  # buffer: see _subpixel_index

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
        # Run the deconvolution as a sub-pixel convolution (same weights, same outputs to float
        # rounding; training steps 1.03-1.3x faster on CPU). TRAINING below turns it on for training.
        self.subpixel_deconv = False
        index, self._subpixel_pad = self._subpixel_index()
        # not in the state dict (shipped weights are unchanged), but moves with the module to its device
        self.register_buffer("_phase_index", index, persistent=False)

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

    def _subpixel_index(self) -> tuple[torch.Tensor, tuple[int, int]]:
        """(s x L index into the zero-extended 9-tap kernel, (left pad, right pad)) of the equivalent
        convolution: output q*s + a = sum_u w[a + p - s*u] * input[q + u] over the taps in range."""
        s, p, k = self.scale, self.deconv_padding, self.deconv.kernel_size[0]
        offsets = [u for a in range(s) for u in range(-k, k + 1) if 0 <= a + p - s * u < k]
        lo, hi = min(offsets), max(offsets)
        index = torch.full((s, hi - lo + 1), k, dtype=torch.long)  # k points at the zero tap
        for a in range(s):
            for t, u in enumerate(range(lo, hi + 1)):
                if 0 <= a + p - s * u < k:
                    index[a, t] = a + p - s * u
        return index, (-lo, hi)

    def _deconv_as_subpixel(self, x: torch.Tensor) -> torch.Tensor:
        index, (left, right) = self._phase_index, self._subpixel_pad
        s, n = self.scale, index.shape[1]
        w = F.pad(self.deconv.weight[:, 0], (0, 1, 0, 1))  # d x 10 x 10, last row/column zero
        w = w[:, index[:, :, None, None], index[None, None, :, :]]  # d x s x n x s x n
        w = w.permute(1, 3, 0, 2, 4).reshape(s * s, -1, n, n)  # phase (a, b) -> channel a*s + b
        y = F.conv2d(F.pad(x, (left, right, left, right)), w, _bias(self.deconv).expand(s * s))
        return F.pixel_shuffle(y, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        return self._deconv_as_subpixel(x) if self.subpixel_deconv else self.deconv(x)


def build_net(scale: int) -> FSRCNNNet:
    return FSRCNNNet(scale)


make = method_factory("fsrcnn", build_net, input_upscaled=False, tile_unit="LR")


def _train_subpixel(net: FSRCNNNet) -> None:
    net.subpixel_deconv = True  # the same weights and outputs, faster steps


# `bench train fsrcnn`: the recipe its runs start from (each value can be overridden on the command line)
TRAINING = TrainingDefaults(
    build=build_net,
    input_upscaled=False,
    steps=30000,
    batch_size=64,
    patch_size=16,  # LR pixels
    lr=1e-3,
    bicubic_start=FSRCNNNet.init_bicubic,
    for_training=_train_subpixel,
    init_text={"random": "random (torch defaults; FSRCNN deconvolution N(0, 0.001))"},
)
