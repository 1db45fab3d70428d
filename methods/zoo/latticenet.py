"""LatticeNet: the network with the official checkpoint's key names, and its zoo record.

Luo et al., LatticeNet: Towards Lightweight Image Super-resolution with Lattice Block, ECCV 2020;
weights from ymff0592/super-resolution (`premodel/LatticeNet_x{2,3,4}.pt`, a flat state dict).
Input RGB [0,255] (EDSR framework, rgb_range 255); trained on DIV2K. The mean-shift 1x1 convs are
learned (not the textbook DIV2K mean) and are loaded from the file. No image-space residual: the
feature residual adds the shallow features to the backward-fused block outputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from methods.zoo._spec import ZooModel, flat_state

__all__ = ["MODELS", "ContrastChannel", "LatticeBlock", "LatticeNetNet"]

_FEATS = 64
_BLOCK_FEATS = 48  # nDiff = 16: the residual branch narrows 64 -> 48
_REDUCTION = 16
_SLOPE = 0.05


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def _mlp(channels: int) -> nn.Sequential:
    hidden = channels // _REDUCTION
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1), nn.Sigmoid()
    )


class ContrastChannel(nn.Module):
    """Channel attention from whole-image mean and std: Nx64xhxw -> Nx64x1x1 weights in (0, 1).

    The average of a sigmoid-MLP on the per-channel mean and one on the per-channel standard deviation.
    """

    def __init__(self, channels: int = _FEATS) -> None:
        super().__init__()
        self.conv_mean = _mlp(channels)
        self.conv_std = _mlp(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        # unbiased (N-1), as the authors' torch.std; the biased form differs on small inputs
        std = x.std(dim=(2, 3), keepdim=True)
        return (self.conv_mean(mean) + self.conv_std(std)) / 2


def _residual_branch() -> nn.Sequential:
    """Three 3x3 convs 64 -> 48 -> 48 -> 64, each followed by LReLU(0.05)."""
    return nn.Sequential(
        _conv3(_FEATS, _BLOCK_FEATS),
        nn.LeakyReLU(_SLOPE, inplace=True),
        _conv3(_BLOCK_FEATS, _BLOCK_FEATS),
        nn.LeakyReLU(_SLOPE, inplace=True),
        _conv3(_BLOCK_FEATS, _FEATS),
        nn.LeakyReLU(_SLOPE, inplace=True),
    )


class LatticeBlock(nn.Module):
    """Two butterfly stages of residual branches combined by contrast-channel weights; Nx64xhxw -> same."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_block0 = _residual_branch()
        self.fea_ca1 = ContrastChannel()
        self.x_ca1 = ContrastChannel()
        self.conv_block1 = _residual_branch()
        self.fea_ca2 = ContrastChannel()
        self.x_ca2 = ContrastChannel()
        self.compress = nn.Conv2d(2 * _FEATS, _FEATS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_block0(x)
        p1 = x + self.fea_ca1(s) * s
        q1 = s + self.x_ca1(x) * x
        lat = self.conv_block1(p1)
        p3 = lat + self.fea_ca2(q1) * q1
        q3 = q1 + self.x_ca2(lat) * lat
        return self.compress(torch.cat((p3, q3), dim=1))


def _fuse(cin: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, _FEATS // 2, 1), nn.ReLU(inplace=True))


class LatticeNetNet(nn.Module):
    """LatticeNet for one scale: Nx3xhxw RGB [0,255] -> Nx3x(h*s)x(w*s) RGB [0,255], not clipped.

    Shallow features (two 3x3 convs, no activation between), four lattice blocks, backward feature
    fusion from the last block to the first, plus the shallow features, then conv, conv to 3*s^2 and
    PixelShuffle(s), framed by the learned sub_mean / add_mean 1x1 convs.
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = int(scale)
        self.sub_mean = nn.Conv2d(3, 3, 1)
        self.conv1 = _conv3(3, _FEATS)
        self.conv2 = _conv3(_FEATS, _FEATS)
        self.body_unit1 = LatticeBlock()
        self.body_unit2 = LatticeBlock()
        self.body_unit3 = LatticeBlock()
        self.body_unit4 = LatticeBlock()
        self.T_tdm1 = _fuse(_FEATS)
        self.L_tdm1 = _fuse(_FEATS)
        self.T_tdm2 = _fuse(_FEATS)
        self.L_tdm2 = _fuse(_FEATS)
        self.T_tdm3 = _fuse(_FEATS)
        self.L_tdm3 = _fuse(_FEATS)
        self.tail = nn.Sequential(
            _conv3(_FEATS, _FEATS), _conv3(_FEATS, 3 * self.scale**2), nn.PixelShuffle(self.scale)
        )
        self.add_mean = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.conv2(self.conv1(self.sub_mean(x)))
        res1 = self.body_unit1(shallow)
        res2 = self.body_unit2(res1)
        res3 = self.body_unit3(res2)
        res4 = self.body_unit4(res3)
        fused = torch.cat((self.T_tdm1(res4), self.L_tdm1(res3)), dim=1)
        fused = torch.cat((self.T_tdm2(fused), self.L_tdm2(res2)), dim=1)
        fused = torch.cat((self.T_tdm3(fused), self.L_tdm3(res1)), dim=1)
        return self.add_mean(self.tail(fused + shallow))


def _to_state(raw: Any, scale: int) -> dict[str, torch.Tensor]:
    return flat_state(raw)


MODELS: tuple[ZooModel, ...] = (
    ZooModel(
        name="latticenet",
        build=LatticeNetNet,
        to_state=_to_state,
        input_range=255.0,
        # 3x3 convs: conv1, conv2, 6 per lattice block (two 3-conv branches in series), 2 in the tail
        receptive_radius=1 + 1 + 4 * 6 + 2,
        # the contrast-channel attention uses whole-image mean and std
        tile_exact=False,
        # the unbiased std of a single pixel is NaN
        min_size=2,
    ),
)
