"""PAN (pixel attention network) with its authors' checkpoint names, and PAN's skeleton reused by A2N.

Paper: Zhao et al., "Efficient Image Super-Resolution Using Pixel Attention",
ECCV 2020 AIM workshop; repository zhaohengyuan1/PAN.
Facts: input RGB [0, 1] with no mean shift; trained on DF2K (DIV2K + Flickr2K, MATLAB bicubic LR,
1M iterations, L1 loss); nf=40, unf=24, 16 SCPA blocks; the output adds the bilinear-upsampled input.
x2 and x3 have 261,403 parameters, x4 272,419 (a second upsampling stage).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import UsageError
from methods._thread_invariant import sigmoid, upsample_bilinear
from methods.zoo._spec import ZooModel, flat_state

__all__ = ["MODELS", "PA", "PAConv", "PANNet", "PANSkeleton", "SCPA", "upa_radius"]

_SLOPE = 0.2  # LeakyReLU slope everywhere in PAN and A2N


class PA(nn.Module):
    """Pixel attention: x * sigmoid(conv1x1(x)), one weight per pixel and channel. Key: `conv`."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(nf, nf, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * sigmoid(self.conv(x))


class PAConv(nn.Module):
    """Pixel-attention convolution: k4(k3(x) * sigmoid(k2(x))); k2 1x1 with bias, k3/k4 3x3 without."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.k2 = nn.Conv2d(nf, nf, 1)
        self.k3 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)
        self.k4 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k4(self.k3(x) * sigmoid(self.k2(x)))


class SCPA(nn.Module):
    """Self-calibrated block with pixel attention: a plain 3x3 branch and a PAConv branch on half the
    channels each, fused by a 1x1 conv, plus the block input. NxCxhxw -> NxCxhxw."""

    def __init__(self, nf: int, reduction: int = 2) -> None:
        super().__init__()
        half = nf // reduction
        self.conv1_a = nn.Conv2d(nf, half, 1, bias=False)
        self.conv1_b = nn.Conv2d(nf, half, 1, bias=False)
        # a Sequential only because the checkpoint names this conv `k1.0`
        self.k1 = nn.Sequential(nn.Conv2d(half, half, 3, padding=1, bias=False))
        self.PAConv = PAConv(half)
        self.conv3 = nn.Conv2d(nf, nf, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.leaky_relu(self.conv1_a(x), _SLOPE)
        a = F.leaky_relu(self.k1(a), _SLOPE)
        b = F.leaky_relu(self.conv1_b(x), _SLOPE)
        b = F.leaky_relu(self.PAConv(b), _SLOPE)
        return x + self.conv3(torch.cat([a, b], dim=1))


def _upa_stage(
    fea: torch.Tensor, factor: int, upconv: nn.Module, att: nn.Module, hrconv: nn.Module
) -> torch.Tensor:
    """One U-PA upsampling stage: nearest x factor, conv, pixel attention, LReLU, conv, LReLU."""
    fea = upconv(F.interpolate(fea, scale_factor=factor, mode="nearest"))
    fea = F.leaky_relu(att(fea), _SLOPE)
    return F.leaky_relu(hrconv(fea), _SLOPE)


class PANSkeleton(nn.Module):
    """The frame PAN and A2N share; a subclass supplies the trunk of blocks (`trunk`).

    conv_first 3x3 3->nf, trunk plus trunk_conv 3x3 added to the head's output, U-PA upsampler
    (upconv1/att1/HRconv1; x4 runs two x2 stages, the second upconv2/att2/HRconv2), conv_last 3x3 unf->3,
    plus the bilinear (align_corners=False) upsampled input. Nx3xhxw -> Nx3x(h*s)x(w*s), same range.
    """

    def __init__(self, scale: int, nf: int = 40, unf: int = 24) -> None:
        if scale not in (2, 3, 4):
            raise UsageError(
                f"PAN's U-PA upsampler (also A2N's) exists for scales 2, 3 and 4, got scale {scale}"
            )
        super().__init__()
        self.scale = scale
        self.conv_first = nn.Conv2d(3, nf, 3, padding=1)
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.upconv1 = nn.Conv2d(nf, unf, 3, padding=1)
        self.att1 = PA(unf)
        self.HRconv1 = nn.Conv2d(unf, unf, 3, padding=1)
        if scale == 4:
            self.upconv2 = nn.Conv2d(unf, unf, 3, padding=1)
            self.att2 = PA(unf)
            self.HRconv2 = nn.Conv2d(unf, unf, 3, padding=1)
        self.conv_last = nn.Conv2d(unf, 3, 3, padding=1)

    def trunk(self, fea: torch.Tensor) -> torch.Tensor:
        """The blocks between conv_first and trunk_conv: Nxnfxhxw -> Nxnfxhxw."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.trunk(fea))
        if self.scale == 4:
            fea = _upa_stage(fea, 2, self.upconv1, self.att1, self.HRconv1)
            fea = _upa_stage(fea, 2, self.upconv2, self.att2, self.HRconv2)
        else:
            fea = _upa_stage(fea, self.scale, self.upconv1, self.att1, self.HRconv1)
        h, w = x.shape[-2:]
        base = upsample_bilinear(x, (h * self.scale, w * self.scale))  # align_corners=False
        return self.conv_last(fea) + base


class PANNet(PANSkeleton):
    """PAN: PANSkeleton with 16 SCPA blocks (`SCPA_trunk.{0..15}`). RGB [0, 1] in and out."""

    def __init__(self, scale: int, nf: int = 40, unf: int = 24, nb: int = 16) -> None:
        super().__init__(scale, nf, unf)
        self.SCPA_trunk = nn.Sequential(*(SCPA(nf) for _ in range(nb)))

    def trunk(self, fea: torch.Tensor) -> torch.Tensor:
        return self.SCPA_trunk(fea)


def upa_radius(scale: int) -> int:
    """LR pixels the U-PA upsampler, conv_last and the bilinear residual add to the receptive radius.

    Two 3x3 convs per stage (upconv, HRconv) and conv_last act at the upsampled resolution; a radius of
    r pixels there reaches ceil(r / factor) pixels before a nearest upsampling. The bilinear residual
    reaches 1 LR pixel, less than this.
    """
    factors = (2, 2) if scale == 4 else (scale,)
    radius = 1  # conv_last
    for factor in reversed(factors):
        radius = -(-(radius + 2) // factor)  # upconv and HRconv, then back through the nearest upsampling
    return radius


def _pan_state(raw: Any, scale: int) -> dict[str, torch.Tensor]:
    return flat_state(raw)


# conv_first 1 + 16 SCPA blocks x 2 (PAConv's k3 then k4) + trunk_conv 1, then the upsampler (x2/x4: 2,
# x3: 1); one radius serves every scale, so the largest
PAN_RADIUS = 1 + 16 * 2 + 1 + max(upa_radius(s) for s in (2, 3, 4))

MODELS: tuple[ZooModel, ...] = (
    ZooModel(
        name="pan",
        build=PANNet,
        to_state=_pan_state,
        input_range=1.0,
        receptive_radius=PAN_RADIUS,
    ),
)
