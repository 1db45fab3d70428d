"""Image files: hashing, safe decoding to uint8 RGB, modcrop, and the MATLAB-bicubic LR with its verified cache."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.data.paths import cache_dir
from bench.errors import DataError
from bench.imresize import imresize

__all__ = [
    "IMAGE_SUFFIXES",
    "HRImage",
    "Sample",
    "ImageProblem",
    "is_image_file",
    "sha256_file",
    "pixels_sha256",
    "modcrop",
    "load_rgb",
    "make_lr",
    "atomic_write_png",
]

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class HRImage:
    """One ground-truth image: `rgb` is HxWx3 uint8 RGB; `gray` is True when the file had one channel."""

    dataset: str
    name: str
    rgb: np.ndarray = field(repr=False)
    gray: bool
    sha256: str
    path: Path | None = None


@dataclass(frozen=True)
class Sample:
    """HR modcropped to the scale and its MATLAB-bicubic LR, both HxWx3 uint8 RGB."""

    dataset: str
    image: str
    scale: int
    hr: np.ndarray = field(repr=False)
    lr: np.ndarray = field(repr=False)
    gray: bool
    sha256: str


@dataclass(frozen=True)
class ImageProblem:
    """An image of a folder dataset that cannot be used, and why (the run reports and skips it)."""

    dataset: str
    image: str
    reason: str


def is_image_file(path: Path) -> bool:
    """True for a file whose suffix is one of IMAGE_SUFFIXES (any case)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks.

    Example
    -------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.bin"; _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pixels_sha256(img: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and bytes: identifies decoded pixels whatever the file encoding."""
    h = hashlib.sha256(f"{img.shape}{img.dtype}".encode())
    h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop bottom/right so height and width are multiples of `scale`."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def load_rgb(path: Path | str, data: bytes | None = None) -> tuple[np.ndarray, bool]:
    """Decode an image file to (HxWx3 uint8 RGB, was_single_channel).

    Gray and palette images become RGB, alpha is dropped, 16-bit is scaled to 8-bit, CMYK converted.
    Raises DataError naming the file on anything that is not a decodable image.
    """
    path = Path(path)
    try:
        src: Any = io.BytesIO(data) if data is not None else path
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                im.load()
                mode = im.mode
                gray = mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
                if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                    arr = np.asarray(im, dtype=np.float64)
                    peak = 65535.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
                    arr = np.clip(np.floor(arr * (255.0 / peak) + 0.5), 0, 255).astype(np.uint8)
                elif mode == "P" and "transparency" in im.info:
                    arr = np.asarray(im.convert("RGBA"))[..., :3]
                else:
                    arr = np.asarray(im.convert("L" if gray else "RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(
            f"{path.name}: image too large to decode safely ({exc}); resize it below Pillow's limit"
        ) from exc
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        size = len(data) if data is not None else (path.stat().st_size if path.exists() else 0)
        detail = str(exc).split(" <")[0]  # Pillow names the in-memory buffer: not useful to the user
        what = "empty file" if size == 0 else f"not a readable image ({detail})"
        raise DataError(f"{path.name}: {what}; replace or remove the file") from exc
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{path.name}: unsupported image layout {arr.shape}; expected HxW or HxWx3")
    return np.ascontiguousarray(arr), gray


_LR_CACHE_VERSION = "imresize-matlab-1"


def make_lr(hr: np.ndarray, scale: int, sha256: str | None = None) -> np.ndarray:
    """LR = MATLAB imresize(hr, 1/scale, 'bicubic') of a modcropped HxWx3 uint8 HR, cached on disk by hash.

    A cached LR is verified like a source file: the sha256 of its pixels is recorded beside it when it
    is written and checked when it is read; a mismatch (a replaced or damaged file) is recomputed.
    """
    path = None
    if sha256:
        path = cache_dir() / "lr" / f"{sha256}_x{scale}_{_LR_CACHE_VERSION}.png"
        cached = _read_cached_lr(path, (hr.shape[0] // scale, hr.shape[1] // scale, 3))
        if cached is not None:
            return cached
    lr = imresize(hr, 1.0 / scale)
    if path is not None and atomic_write_png(path, lr):
        _write_quietly(path.with_suffix(".sha256"), pixels_sha256(lr))
    return lr


def _read_cached_lr(path: Path, shape: tuple[int, int, int]) -> np.ndarray | None:
    try:
        recorded = path.with_suffix(".sha256").read_text().strip()
        lr, _ = load_rgb(path)
    except (OSError, DataError):
        return None  # absent, unreadable or damaged: recomputed
    if lr.shape != shape or pixels_sha256(lr) != recorded:
        return None
    return lr


def _write_quietly(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError:
        pass  # the LR cache is an optimisation: a read-only or full cache only costs time


def atomic_write_png(path: Path, img: np.ndarray) -> bool:
    """Write a PNG so readers never see half of it; False (and nothing left behind) when the disk refuses."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(img).save(f, format="PNG", compress_level=1)
        os.replace(tmp, path)
        return True
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        return False
