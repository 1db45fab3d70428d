"""The Method contract every super-resolution method implements, and its MethodInfo record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Method", "MethodInfo", "SampleRef"]


@dataclass(frozen=True)
class MethodInfo:
    """What a method is and what it costs; one row of `methods.csv`.

    `macs_720p`: multiply-accumulates to produce one 1280x720 output (None where undefined).
    `weights_sha256` is what the method verified when it loaded `weights`.
    """

    name: str
    scale: int
    device: str
    params: int = 0
    macs_720p: int | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    channels: str = "rgb"  # "rgb": works on RGB; "y": super-resolves Y, CbCr by bicubic
    deterministic: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        extra = row.pop("extra")
        row.update({f"extra_{k}": v for k, v in extra.items()})
        return row


@dataclass(frozen=True)
class SampleRef:
    """Which image is being super-resolved: given to methods that score stored outputs (`dir:`)."""

    dataset: str
    image: str
    scale: int


@runtime_checkable
class Method(Protocol):
    """A super-resolution method bound to one scale and one device.

    `upscale(lr)`: `lr` is an HxWx3 RGB array, uint8 (the default protocol) or float64 with values
    in [0, 255] (the `legacy-y` protocol feeds float LR); returns an (H*s)x(W*s)x3 array, uint8 or
    float in [0, 255]. The runner clips and rounds the output to uint8 before any metric.
    Optional extras a method may offer (the runner checks with `hasattr`):
    - `upscale_batch(list_of_lr) -> list_of_sr` for batched inference;
    - `upscale_y(y) -> y_sr` for HxW float64 Y planes in [0, 255] (Y-channel networks);
    - `needs_ref = True` and `upscale_ref(lr, ref: SampleRef)` for methods that look images up.
    """

    name: str
    scale: int
    device: str

    def upscale(self, lr: np.ndarray) -> np.ndarray: ...

    def info(self) -> MethodInfo: ...
