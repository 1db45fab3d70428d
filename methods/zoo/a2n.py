"""A2N (attention in attention network) with its authors' checkpoint names, on PAN's skeleton.

Paper: Chen, Gu, Zhang, "Attention in Attention Network for Image Super-Resolution", arXiv 2104.09497;
repository haoyuc/A2N (EDSR framework).
Facts: input RGB [0, 255] (the EDSR default rgb_range; [0, 1] input falls below bicubic) with no mean
shift; trained on DIV2K; nf=40, unf=24, 16 attention-in-attention blocks (AAB); the output adds the
bilinear-upsampled input. x2 and x3 have 1,036,443 parameters (the upsampler does not depend on scale).
Each AAB weighs its two branches by the global average of its features, so tiling is not exact.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods._thread_invariant import sigmoid
from methods.zoo._spec import ZooModel, flat_state
from methods.zoo.pan import PANSkeleton, upa_radius

__all__ = ["AAB", "A2NNet", "AttentionBranch", "MODELS"]

_SLOPE = 0.2  # LeakyReLU slope, as in PAN


class AttentionBranch(nn.Module):
    """k4(k3(x) * sigmoid(k2(LReLU(k1(x))))); k1, k3, k4 3x3 without bias, k2 1x1 with bias."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.k1 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)
        self.k2 = nn.Conv2d(nf, nf, 1)
        self.k3 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)
        self.k4 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = sigmoid(self.k2(F.leaky_relu(self.k1(x), _SLOPE)))
        return self.k4(self.k3(x) * mask)


class AAB(nn.Module):
    """Attention in attention block: an attention branch and a plain 3x3 branch, mixed per image by
    softmax weights from the attention dropout module (ADM) on the global average of the features.
    NxCxhxw -> NxCxhxw."""

    def __init__(self, nf: int, reduction: int = 4, branches: int = 2, temperature: float = 30.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.conv_first = nn.Conv2d(nf, nf, 1, bias=False)
        # keys ADM.0 and ADM.2: Linear, ReLU, Linear
        self.ADM = nn.Sequential(
            nn.Linear(nf, nf // reduction, bias=False),
            nn.ReLU(),
            nn.Linear(nf // reduction, branches, bias=False),
        )
        self.attention = AttentionBranch(nf)
        self.non_attention = nn.Conv2d(nf, nf, 3, padding=1, bias=False)
        self.conv_last = nn.Conv2d(nf, nf, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = F.leaky_relu(self.conv_first(x), _SLOPE)
        # whole-image mean: the one non-local step of A2N
        weights = torch.softmax(self.ADM(fea.mean(dim=(2, 3))) / self.temperature, dim=1)
        w_att = weights[:, 0, None, None, None]
        w_plain = weights[:, 1, None, None, None]
        mixed = self.attention(fea) * w_att + self.non_attention(fea) * w_plain
        return x + self.conv_last(F.leaky_relu(mixed, _SLOPE))


class A2NNet(PANSkeleton):
    """A2N: PANSkeleton with 16 AABs (`AAB_trunk.{0..15}`). RGB [0, 255] in and out."""

    def __init__(self, scale: int, nf: int = 40, unf: int = 24, nb: int = 16) -> None:
        super().__init__(scale, nf, unf)
        self.AAB_trunk = nn.Sequential(*(AAB(nf) for _ in range(nb)))

    def trunk(self, fea: torch.Tensor) -> torch.Tensor:
        return self.AAB_trunk(fea)


def _a2n_state(raw: Any, scale: int) -> dict[str, torch.Tensor]:
    return flat_state(raw)


# the local part: conv_first 1 + 16 AABs x 2 (k3 then k4) + trunk_conv 1 + the upsampler (x2: 2, x3: 1);
# the ADM's global mean reaches the whole image on top of it
A2N_RADIUS = 1 + 16 * 2 + 1 + max(upa_radius(s) for s in (2, 3))

MODELS: tuple[ZooModel, ...] = (
    ZooModel(
        name="a2n",
        build=A2NNet,
        to_state=_a2n_state,
        input_range=255.0,
        receptive_radius=A2N_RADIUS,
        tile_exact=False,
    ),
)
