"""Classical interpolation methods (nearest, bilinear, bicubic, lanczos) via bench.imresize."""

from __future__ import annotations

import numpy as np

from bench.api import MethodInfo
from bench.errors import UsageError
from bench.imresize import KERNELS, imresize

# method name -> imresize kernel
KERNEL_OF = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic", "lanczos": "lanczos3"}


class Interpolation:
    """Upscales with MATLAB imresize (no antialiasing applies when enlarging).

    uint8 HxWx3 in -> uint8 out (each pass rounded as MATLAB does); float in -> float out.
    """

    thread_safe = True  # pure numpy: the runner may call it from several threads at once

    def __init__(self, name: str, scale: int, device: str = "cpu") -> None:
        if name not in KERNEL_OF:
            raise UsageError(f"unknown interpolation {name!r}; choose {', '.join(KERNEL_OF)}")
        if scale < 1:
            raise UsageError(f"scale must be a positive integer, got {scale}")
        self.name = name
        self.scale = int(scale)
        self.device = "cpu"  # numpy only, whatever was asked
        self.kernel = KERNEL_OF[name]

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        return imresize(lr, self.scale, kernel=self.kernel)

    def upscale_y(self, y: np.ndarray) -> np.ndarray:
        return imresize(y, self.scale, kernel=self.kernel)

    def info(self) -> MethodInfo:
        _, width, _ = KERNELS[self.kernel]
        # separable: taps per output pixel per channel = 2 passes x kernel width (enlarging: no stretch)
        taps = int(2 * width)
        return MethodInfo(
            name=self.name,
            scale=self.scale,
            device=self.device,
            params=0,
            macs_720p=1280 * 720 * 3 * taps,
            extra={"kernel": self.kernel, "taps_per_pixel": taps, "dtype": "float64"},
        )


def factory(name: str):  # type: ignore[no-untyped-def]
    def make(*, scale: int, device: str = "cpu", **_: object) -> Interpolation:
        return Interpolation(name, scale, device)

    return make
