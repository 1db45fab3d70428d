"""LapSRN: the Laplacian pyramid network on the Y plane, read from the authors' MatConvNet checkpoints.

Lai, Huang, Ahuja, Yang, "Deep Laplacian Pyramid Networks for Fast and Accurate Super-Resolution",
CVPR 2017; weights from phoenix104104/LapSRN (`pretrained_models/LapSRN_x{2,4}.mat`, depth 10,
64 channels, trained on T91 + BSDS200 with the Charbonnier loss).

- Input: Nx1xhxw float Y in [0, 1], where Y is MATLAB `rgb2ycbcr` luma (studio range 16..235) / 255;
  output: the Nx1x(h*s)x(w*s) Y at the same range. Cb and Cr are bicubic-upscaled outside the network.
- One pyramid level per factor 2, coarsest first. Each level runs a feature path (10 x conv 3x3 +
  LReLU 0.2, a stride-2 transposed conv, LReLU, a 3x3 conv to one channel: the residual) beside an image
  path (a learned 4x4 stride-2 transposed conv of the previous level's image); the level's output is
  their sum. The features continue into the next level, the image into the next level's image path.
- The x4 file holds two levels, so it also yields a x2 image: `LapSRNNet.forward_levels` returns every
  level's output. The `lapsrn` method's x2 uses the separately trained `LapSRN_x2.mat`.
- Purely local (convolutions and transposed convolutions only), so tiling with a margin of
  `receptive_radius` LR pixels reproduces the whole-image output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import UsageError, WeightsError
from methods._thread_invariant import conv_transpose_subpixel
from methods.zoo._spec import ZooModel

__all__ = ["LapSRNLevel", "LapSRNNet", "MODELS", "LAPSRN_SCALES", "build", "to_state"]

LAPSRN_SCALES = (2, 4)
_LEVELS = {2: 1, 4: 2}
_DEPTH = 10
_CHANNELS = 64
_SLOPE = 0.2
# LR pixels an output pixel depends on, per scale. x2: the input conv and 10 convs reach 11 LR pixels; the
# upconv and the residual conv one more. x4: level 1's 10 convs, its upconv and residual conv reach 11 x2
# pixels, which level 2's upconv maps to 6 LR pixels, plus the 11 of the LR convs. The image path reaches
# less. Measured as the gradient support of one output pixel: 12 and 17.
_RECEPTIVE_RADIUS = {2: 12, 4: 17}


class LapSRNLevel(nn.Module):
    """One pyramid level (x2): features Nx64xhxw and image Nx1xhxw -> features and image at 2h x 2w."""

    def __init__(self, depth: int = _DEPTH, channels: int = _CHANNELS) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(depth))
        # MatConvNet crops [top 0, bottom 1, left 0, right 1] of the (2h+1)-sized result: see forward
        self.upconv = nn.ConvTranspose2d(channels, channels, 3, stride=2)
        self.residual = nn.Conv2d(channels, 1, 3, padding=1)
        # crop 1 on every side = torch padding 1: output exactly 2h x 2w
        self.img_up = nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1, bias=False)
        # Both transposed convolutions run as sub-pixel convolutions of the same weights (equal to float
        # rounding): oneDNN's transposed convolution gives thread-count-dependent bits (odd heights)

    def forward(self, feat: torch.Tensor, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv in self.convs:
            feat = F.leaky_relu(conv(feat), _SLOPE)
        h, w = feat.shape[-2:]
        # the asymmetric crop drops the last row and column; torch's padding would crop both sides
        feat = F.leaky_relu(conv_transpose_subpixel(feat, self.upconv)[..., : 2 * h, : 2 * w], _SLOPE)
        return feat, conv_transpose_subpixel(img, self.img_up) + self.residual(feat)


class LapSRNNet(nn.Module):
    """LapSRN with `levels` pyramid levels (scale 2 ** levels), Y in [0, 1] -> Y in [0, 1].

    Keys: `input_conv`, then `levels.<i>` coarsest first (the .mat numbers them finest first:
    `level1` is the last level). 407,441 params with one level, 814,242 with two.
    """

    def __init__(self, levels: int, depth: int = _DEPTH, channels: int = _CHANNELS) -> None:
        super().__init__()
        self.input_conv = nn.Conv2d(1, channels, 3, padding=1)
        self.levels = nn.ModuleList(LapSRNLevel(depth, channels) for _ in range(levels))

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Nx1xhxw Y in [0, 1] -> every level's Y output, coarsest first: [x2, x4, ...]."""
        feat = F.leaky_relu(self.input_conv(x), _SLOPE)
        img = x
        outputs = []
        for level in self.levels:
            feat, img = level(feat, img)
            outputs.append(img)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Nx1xhxw Y in [0, 1] -> Nx1x(h*s)x(w*s) Y in [0, 1] (not clipped), from the finest level."""
        return self.forward_levels(x)[-1]


def _levels(scale: int) -> int:
    """Pyramid levels for a published scale; UsageError for any other scale."""
    if scale not in _LEVELS:
        raise UsageError(
            f"LapSRN has checkpoints for scales {', '.join(map(str, LAPSRN_SCALES))}, not {scale}"
        )
    return _LEVELS[scale]


def build(scale: int) -> LapSRNNet:
    """The network for one published scale (2: one level, 4: two); UsageError for any other scale."""
    return LapSRNNet(_levels(scale))


_PARAM_NAME = re.compile(r"(?:input_conv|level(\d+)_(conv(\d+)|upconv|residual_conv|img_up))_([fb])")


def _torch_key(name: str, levels: int) -> str:
    """A MatConvNet parameter name -> the LapSRNNet state-dict key; WeightsError if it has no place."""
    match = _PARAM_NAME.fullmatch(name)
    if match is None:
        raise WeightsError(f"LapSRN checkpoint parameter {name!r} is not a LapSRN layer")
    level, layer, conv_index, kind = match.groups()
    suffix = "weight" if kind == "f" else "bias"
    if level is None:
        return f"input_conv.{suffix}"
    if not 1 <= int(level) <= levels:
        raise WeightsError(f"LapSRN checkpoint has pyramid level {level}; this scale has {levels} level(s)")
    prefix = f"levels.{levels - int(level)}"  # the .mat counts from the finest level
    if conv_index is not None:
        return f"{prefix}.convs.{int(conv_index) - 1}.{suffix}"
    return f"{prefix}.{'residual' if layer == 'residual_conv' else layer}.{suffix}"


def to_state(raw: Any, scale: int) -> dict[str, torch.Tensor]:
    """`scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)` of a LapSRN .mat -> state dict.

    Filters are H x W x Cin x Cout for convs and H x W x Cout x Cin for transposed convs (vl_nnconvt);
    `permute(3, 2, 0, 1)` gives torch's (Cout, Cin, H, W) and (Cin, Cout, H, W) respectively. loadmat
    squeezes the 1-channel dims, so each filter is first reshaped to the size its layer declares.
    Raises WeightsError when the object is not a LapSRN DagNN.
    """
    levels = _levels(scale)
    net = raw.get("net") if isinstance(raw, Mapping) else None
    if net is None or not hasattr(net, "params") or not hasattr(net, "layers"):
        raise WeightsError("not a LapSRN checkpoint: expected loadmat(...)['net'], a MatConvNet DagNN")
    sizes = {}
    for layer in np.atleast_1d(net.layers):
        filter_name = np.atleast_1d(layer.params)[0] if np.size(layer.params) else None
        if filter_name is not None:
            sizes[str(filter_name)] = tuple(int(n) for n in layer.block.size)
    state = {}
    for param in np.atleast_1d(net.params):
        value = np.asarray(param.value, dtype=np.float32)
        if param.name.endswith("_f"):
            if param.name not in sizes or value.size != np.prod(sizes[param.name]):
                raise WeightsError(
                    f"LapSRN checkpoint filter {param.name!r} of shape {value.shape} has no layer of that size"
                )
            value = value.reshape(sizes[param.name]).transpose(3, 2, 0, 1)
        else:
            value = value.reshape(-1)
        state[_torch_key(param.name, levels)] = torch.from_numpy(np.ascontiguousarray(value))
    return state


MODELS: tuple[ZooModel, ...] = (
    ZooModel(
        name="lapsrn",
        build=build,
        to_state=to_state,
        input_range=1.0,
        # one radius per model: the x4 one covers x2
        receptive_radius=max(_RECEPTIVE_RADIUS.values()),
        tile_exact=True,
        channels="y",
    ),
)
