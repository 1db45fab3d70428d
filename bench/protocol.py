"""Evaluation protocols as objects: each makes the LR input (degrade), feeds a method, and scores its output."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bench.api import SampleRef
from bench.data import Sample
from bench.errors import UsageError
from bench.imresize import imresize
from bench.metrics import gray_to_y, psnr, rgb_to_y, shave, ssim

__all__ = ["Protocol", "LegacyYProtocol", "FloatLRProtocol", "PROTOCOLS", "get_protocol", "SSIM_WINDOW"]

SSIM_WINDOW = 11


def _y_of(img: np.ndarray, gray: bool) -> np.ndarray:
    # single-channel ground truth is scored on its gray value, as the MATLAB evaluation does
    return gray_to_y(img) if gray else rgb_to_y(img)


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol; its fields are recorded in every result row.

    The paper protocol: the LR is MATLAB bicubic of the uint8 RGB HR (`Sample.lr`), the method sees
    that HxWx3 uint8 RGB image, its output is rounded to uint8, and PSNR/SSIM are computed on BT.601
    Y (`channel="y"`) or RGB after removing `shave` pixels from every side.
    """

    name: str
    channel: str = "y"  # "y" (BT.601 studio) or "rgb"
    shave: str = "scale"  # "scale", "scale+N" or an integer
    degradation: str = "bicubic"  # how the LR is made, recorded in every row
    description: str = ""
    # single-channel ground truth (Set14 bridge): "gray" scores its gray value, as the MATLAB scripts do;
    # "y" scores studio Y of its RGB replica, as the Python metrics of BasicSR and mmsr do
    gray_gt: str = "gray"

    def shave_px(self, scale: int) -> int:
        """Pixels removed from each side before scoring at `scale`. Raises UsageError on a bad spec."""
        s = self.shave.replace(" ", "")
        try:
            if s == "scale":
                return scale
            if s.startswith("scale+"):
                return scale + int(s[len("scale+") :])
            value = int(s)
        except ValueError:
            raise UsageError(f"bad shave {self.shave!r}; give an integer, 'scale' or 'scale+N'") from None
        if value < 0:
            raise UsageError(f"bad shave {self.shave!r}; it must be >= 0")
        return value

    def min_hr_size(self, scale: int) -> int:
        """Smallest HR side that leaves an SSIM window after shaving."""
        return 2 * self.shave_px(scale) + SSIM_WINDOW

    # -- the three steps --------------------------------------------------------------------------
    def degrade(self, sample: Sample) -> np.ndarray:
        """The LR input the method sees: HxWx3 uint8 RGB (read-only)."""
        return sample.lr

    def feed(self, method: Any, lr: np.ndarray, sample: Sample) -> Any:
        """Run `method` on the protocol's LR input; returns its raw output (not yet checked or rounded)."""
        if getattr(method, "needs_ref", False):
            return method.upscale_ref(lr, SampleRef(sample.dataset, sample.image, sample.scale))
        return method.upscale(lr)

    def output_shape(self, lr: np.ndarray, scale: int) -> tuple[int, ...]:
        """The shape a method's output must have for the input `lr`."""
        return (lr.shape[0] * scale, lr.shape[1] * scale) + lr.shape[2:]

    def score(self, sr: np.ndarray, sample: Sample) -> tuple[float, float]:
        """(PSNR dB, SSIM) of a uint8 SR output against the sample's HR under this protocol."""
        if self.channel == "y":
            gray = sample.gray and self.gray_gt == "gray"
            hr, out = _y_of(sample.hr, gray), _y_of(sr, gray)
        else:
            hr, out = sample.hr, sr
        border = self.shave_px(sample.scale)
        hr, out = shave(hr, border), shave(out, border)
        return psnr(out, hr), ssim(out, hr)

    def with_overrides(self, channel: str | None = None, shave_spec: str | None = None) -> Protocol:
        """This protocol with its channel or shave replaced; the name records what changed."""
        if channel not in (None, "y", "rgb"):
            raise UsageError(f"unknown channel {channel!r}; choose y or rgb")
        q = replace(self, channel=channel or self.channel, shave=shave_spec or self.shave)
        q.shave_px(2)  # validates the shave spec
        suffix = [f"{k}={getattr(q, k)}" for k in ("channel", "shave") if getattr(q, k) != getattr(self, k)]
        return replace(q, name=f"{self.name}[{','.join(suffix)}]") if suffix else self


@dataclass(frozen=True)
class LegacyYProtocol(Protocol):
    """The SRCNN/VDSR MATLAB test scripts: everything happens on the Y plane.

    HR Y is rounded to 8 bits (as `rgb2ycbcr` on uint8 gives it), the LR is `imresize` of that plane
    kept in double (HxW float64, 0..255), the method's Y output is rounded, and only Y is scored.
    Methods with `upscale_y` get the plane; others get it repeated to RGB and give back their Y.
    """

    channel: str = "y"
    degradation: str = "bicubic-y"

    @staticmethod
    def hr_y(sample: Sample) -> np.ndarray:
        """Y of the HR image rounded to 8 bits (gray files: the gray value)."""
        if sample.gray:
            return sample.hr[..., 0].astype(np.float64)
        return np.floor(rgb_to_y(sample.hr) + 0.5)

    def degrade(self, sample: Sample) -> np.ndarray:
        lr = imresize(self.hr_y(sample), 1.0 / sample.scale)
        lr.flags.writeable = False
        return lr

    def feed(self, method: Any, lr: np.ndarray, sample: Sample) -> Any:
        if getattr(method, "needs_ref", False):
            raw = np.asarray(method.upscale_ref(lr, SampleRef(sample.dataset, sample.image, sample.scale)))
            return gray_to_y(raw) if raw.ndim == 3 else raw
        if hasattr(method, "upscale_y"):
            return method.upscale_y(lr)
        rgb = np.repeat(lr[:, :, None], 3, axis=2)
        return gray_to_y(np.asarray(method.upscale(rgb), dtype=np.float64))

    def score(self, sr: np.ndarray, sample: Sample) -> tuple[float, float]:
        border = self.shave_px(sample.scale)
        out = sr.astype(np.float64) if sr.ndim == 2 else gray_to_y(sr)
        hr, out = shave(self.hr_y(sample), border), shave(out, border)
        return psnr(out, hr), ssim(out, hr)


@dataclass(frozen=True)
class FloatLRProtocol(Protocol):
    """The paper protocol with the LR never rounded: MATLAB bicubic of the HR image in double, fed to the
    method as HxWx3 float64 RGB in [0, 255] (LapSRN's `evaluate_LapSRN_dataset.m` made its LR so)."""

    degradation: str = "bicubic-float"

    def degrade(self, sample: Sample) -> np.ndarray:
        lr = imresize(sample.hr.astype(np.float64), 1.0 / sample.scale)
        lr.flags.writeable = False
        return lr


PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol(
        "paper",
        description="MATLAB bicubic LR from uint8 RGB HR; SR rounded to uint8; Y (BT.601 studio, float); "
        "shave = scale; PSNR and SSIM (Wang 2004) per image, mean over images",
    ),
    "legacy-y": LegacyYProtocol(
        "legacy-y",
        description="SRCNN/VDSR test scripts: Y of HR rounded to 8 bits, LR = imresize of that Y plane kept in "
        "double, SR rounded; Y only; shave = scale (reproduces the bicubic row papers copy)",
    ),
    "basicsr": Protocol(
        "basicsr",
        gray_gt="y",
        description="paper protocol as the Python metrics of BasicSR/mmsr compute it: a single-channel ground truth "
        "(Set14 bridge) is scored on studio Y of its RGB replica, not on its gray value",
    ),
    "float-lr": FloatLRProtocol(
        "float-lr",
        description="paper protocol with the LR kept in float (MATLAB bicubic of the double HR image, never "
        "rounded to uint8), as LapSRN's MATLAB evaluation made it",
    ),
    "rgb": Protocol("rgb", channel="rgb", description="paper protocol scored on RGB instead of Y"),
    "ntire": Protocol(
        "ntire", channel="rgb", shave="scale+6", description="DIV2K/NTIRE convention: RGB, border 6 + scale"
    ),
}


def get_protocol(
    name: str | Protocol = "paper", channel: str | None = None, shave_spec: str | None = None
) -> Protocol:
    """A named evaluation protocol, optionally with its channel or border overridden.

    Parameters
    ----------
    name : str or Protocol
        ``paper`` (default), ``legacy-y``, ``basicsr``, ``float-lr``, ``rgb`` or ``ntire``; a Protocol is returned as given.
    channel : str, optional
        ``y`` or ``rgb`` to override the protocol's channel.
    shave_spec : str, optional
        Border to remove: an integer, ``scale`` or ``scale+N``.

    Returns
    -------
    Protocol
        Its name records any override, e.g. ``paper[channel=rgb]``.

    Raises
    ------
    UsageError
        For an unknown name, channel or shave spec.

    Example
    -------
    >>> import bench
    >>> p = bench.get_protocol("paper")
    >>> p.channel, p.shave_px(4)
    ('y', 4)
    >>> bench.get_protocol("paper", channel="rgb").name
    'paper[channel=rgb]'
    """
    if isinstance(name, Protocol):
        return name.with_overrides(channel, shave_spec)
    if name not in PROTOCOLS:
        raise UsageError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name].with_overrides(channel, shave_spec)
