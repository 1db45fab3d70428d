"""Evaluation protocols: how LR is made and how SR is scored (paper default, legacy-y, RGB variants)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.data import Sample
from bench.errors import UsageError
from bench.imresize import imresize
from bench.metrics import gray_to_y, psnr, rgb_to_y, shave, ssim, to_uint8

__all__ = ["Protocol", "PROTOCOLS", "get_protocol", "prepare", "score", "run_method", "legacy_y_hr", "SSIM_WINDOW"]

SSIM_WINDOW = 11


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol; its fields are recorded in every result row."""

    name: str
    channel: str = "y"  # "y" (BT.601 studio) or "rgb"
    shave: str = "scale"  # "scale", "scale+N" or an integer
    degradation: str = "bicubic"  # MATLAB BI on uint8 RGB; "bicubic-y" = legacy float Y pipeline
    description: str = ""

    def shave_px(self, scale: int) -> int:
        s = self.shave.replace(" ", "")
        if s == "scale":
            return scale
        if s.startswith("scale+"):
            return scale + int(s[len("scale+") :])
        return int(s)

    def min_hr_size(self, scale: int) -> int:
        """Smallest HR side that leaves an SSIM window after shaving."""
        return 2 * self.shave_px(scale) + SSIM_WINDOW


PROTOCOLS = {
    "paper": Protocol(
        "paper",
        description="MATLAB bicubic LR from uint8 RGB HR; SR rounded to uint8; Y (BT.601 studio, float); "
        "shave = scale; PSNR and SSIM (Wang 2004) per image, mean over images",
    ),
    "legacy-y": Protocol(
        "legacy-y",
        degradation="bicubic-y",
        description="SRCNN/VDSR test scripts: Y of HR rounded to 8 bits, LR = imresize of that Y plane kept in "
        "double, SR rounded; Y only; shave = scale (reproduces the bicubic row papers copy)",
    ),
    "rgb": Protocol("rgb", channel="rgb", description="paper protocol scored on RGB instead of Y"),
    "ntire": Protocol(
        "ntire", channel="rgb", shave="scale+6", description="DIV2K/NTIRE convention: RGB, border 6 + scale"
    ),
}


def get_protocol(name: str, channel: str | None = None, shave_spec: str | None = None) -> Protocol:
    """A named protocol, optionally with its channel or shave overridden (the name records it)."""
    if name not in PROTOCOLS:
        raise UsageError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    p = PROTOCOLS[name]
    if channel is None and shave_spec is None:
        return p
    if channel not in (None, "y", "rgb"):
        raise UsageError(f"unknown channel {channel!r}; choose y or rgb")
    q = Protocol(
        name=p.name,
        channel=channel or p.channel,
        shave=shave_spec or p.shave,
        degradation=p.degradation,
        description=p.description,
    )
    q.shave_px(2)  # validates the shave spec
    suffix = []
    if q.channel != p.channel:
        suffix.append(f"channel={q.channel}")
    if q.shave != p.shave:
        suffix.append(f"shave={q.shave}")
    return Protocol(f"{p.name}[{','.join(suffix)}]" if suffix else p.name, q.channel, q.shave, q.degradation, q.description)


def _y_of(img: np.ndarray, gray: bool) -> np.ndarray:
    # single-channel ground truth is scored on its gray value, as the MATLAB evaluation does
    return gray_to_y(img) if gray else rgb_to_y(img)


def legacy_y_hr(sample: Sample) -> np.ndarray:
    """Y of the HR image as `rgb2ycbcr` on uint8 gives it: rounded to 8 bits (gray files: the gray value)."""
    if sample.gray:
        return sample.hr[..., 0].astype(np.float64)
    return np.floor(rgb_to_y(sample.hr) + 0.5)


def prepare(sample: Sample, protocol: Protocol) -> np.ndarray:
    """The LR input the method sees: uint8 RGB, or (legacy-y) the float Y plane, HxW."""
    if protocol.degradation == "bicubic":
        return sample.lr
    if protocol.degradation == "bicubic-y":
        return imresize(legacy_y_hr(sample), 1.0 / sample.scale)
    raise UsageError(f"unknown degradation {protocol.degradation!r}")


def score(sr: np.ndarray, sample: Sample, protocol: Protocol) -> tuple[float, float]:
    """(PSNR dB, SSIM) of an SR output (already uint8) against the sample's HR under `protocol`."""
    border = protocol.shave_px(sample.scale)
    if protocol.degradation == "bicubic-y":
        hr = legacy_y_hr(sample)
        out = sr.astype(np.float64) if sr.ndim == 2 else gray_to_y(sr)
    elif protocol.channel == "y":
        hr = _y_of(sample.hr, sample.gray)
        out = _y_of(sr, sample.gray)
    else:
        hr, out = sample.hr, sr
    hr, out = shave(hr, border), shave(out, border)
    return psnr(out, hr), ssim(out, hr)


def run_method(method: object, lr: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Apply a method to a prepared LR input; returns the uint8 output (RGB, or Y for legacy-y)."""
    if lr.ndim == 2:
        if hasattr(method, "upscale_y"):
            return to_uint8(method.upscale_y(lr))
        rgb = np.repeat(lr[:, :, None], 3, axis=2)
        return to_uint8(gray_to_y(np.asarray(method.upscale(rgb), dtype=np.float64)))  # type: ignore[attr-defined]
    return to_uint8(method.upscale(lr))  # type: ignore[attr-defined]
