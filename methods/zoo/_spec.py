"""What the zoo needs to know about one published architecture: its `ZooModel` record.

Each architecture file (`methods/zoo/<arch>.py`) holds a plain `nn.Module` whose state-dict keys are
those of the authors' official checkpoint, and one or more `ZooModel` records named `MODELS`. The
adapter (`methods.zoo.adapter`) turns a record plus a verified checkpoint into a `Method`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["ZooModel", "flat_state", "nested_state"]


def flat_state(raw: Any, *, strip: str = "") -> dict[str, torch.Tensor]:
    """A checkpoint that is a flat key -> tensor mapping; `strip` removes a key prefix (IMDN's `module.`)."""
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ValueError("checkpoint is not a flat mapping of tensors")
    out = {}
    for key, value in raw.items():
        if strip:
            if not key.startswith(strip):
                raise ValueError(f"key {key!r} lacks the prefix {strip!r}")
            key = key[len(strip) :]
        out[key] = value
    return out


def nested_state(raw: Any, entry: str) -> dict[str, torch.Tensor]:
    """A BasicSR checkpoint `{entry: state_dict, ...}` (`params` or `params_ema`)."""
    if not isinstance(raw, Mapping) or entry not in raw:
        found = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
        raise ValueError(f"checkpoint has no {entry!r} entry (found {found})")
    return flat_state(raw[entry])


@dataclass(frozen=True)
class ZooModel:
    """One published model: how to build it, read its checkpoint, and feed it.

    - `name`: the method name (`pan`, `rlfn-s`, `smfanet-df2k`, ...).
    - `build(scale)`: the `nn.Module` for one scale, with the official key names. Its `forward` maps
      Nx3xhxw RGB (or Nx1xhxw Y for `channels="y"`) scaled to `input_range` to the SR output at the
      same range. Multi-scale files (CARN-M) build the whole network and select the branch by `scale`.
    - `to_state(raw, scale)`: the loaded checkpoint object -> the state dict to load strictly.
    - `input_range`: 1.0 for [0, 1] input, 255.0 for [0, 255].
    - `channels`: "rgb", or "y" for a network on the BT.601 Y plane (CbCr by bicubic, as SRCNN).
    - `receptive_radius`: LR pixels an output pixel depends on; the tile overlap when tiling is exact.
    - `tile_exact`: False when the network uses whole-image statistics (pooling, variance, ESA/CCA):
      tiling then changes the output, and the adapter never tiles silently.
    - `min_size`: the smallest LR side the network accepts (SMFANet: 8).
    - `weights_scale`: scale -> the checkpoint scale to load (LapSRN x2 may come from the x4 file).
    """

    name: str
    build: Callable[[int], nn.Module]
    to_state: Callable[[Any, int], dict[str, torch.Tensor]]
    input_range: float
    receptive_radius: int
    tile_exact: bool = True
    channels: str = "rgb"
    min_size: int = 1
    weights_scale: Callable[[int], int] | None = None
