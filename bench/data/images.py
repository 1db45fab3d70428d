"""Image files: hashing, header checks before a file is read, safe decoding to uint8 RGB, modcrop, and the
MATLAB-bicubic LR with its verified cache."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from bench.data.paths import cache_dir
from bench.errors import DataError, UsageError
from bench.imresize import imresize

__all__ = [
    "IMAGE_SUFFIXES",
    "HRImage",
    "Sample",
    "ImageProblem",
    "DecodedImage",
    "MAX_PIXELS",
    "max_pixels",
    "max_file_bytes",
    "is_image_file",
    "sha256_file",
    "pixels_sha256",
    "modcrop",
    "load_rgb",
    "read_image_file",
    "decode_image",
    "orientation_text",
    "make_lr",
    "atomic_write",
    "atomic_write_png",
]

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# the Pillow formats of those suffixes (camera JPEGs with previews open as MPO through JPEG); no other plugin
# runs on a file, whatever its name: some read a whole file when opened, EPS runs Ghostscript
_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM")
_FORMAT_NAMES = "PNG, JPEG, BMP, TIFF, WebP or PPM/PGM"

MAX_PIXELS = 100_000_000  # default of SRBENCH_MAX_PIXELS: 100 megapixels (8000x8000 is 64)
# A file's size against what its header's pixels can need. Raw 16-bit RGBA is 8 bytes a pixel; the
# worst encoders stay below twice that (TIFF LZW on noise ~1.4x raw, JPEG quality 100 on CMYK noise
# ~6.3 bytes). Plain (ASCII) PNM spends up to 6 characters a sample plus free whitespace.
_BYTES_PER_PIXEL = 16
_PLAIN_PNM_BYTES_PER_PIXEL = 64
_METADATA_BYTES = 32 << 20  # ICC profiles, XMP, thumbnails, camera previews: a few MiB in real files
_HEADER_BYTES = 64 << 20  # what Pillow may read to identify a file (JPEG APP segments pile up in memory)
_ORIENTATION = 0x0112  # the EXIF/TIFF Orientation tag
_ORIENTATIONS = {
    2: "mirror horizontally",
    3: "rotate 180",
    4: "mirror vertically",
    5: "mirror horizontally and rotate 270 CW",
    6: "rotate 90 CW",
    7: "mirror horizontally and rotate 90 CW",
    8: "rotate 270 CW",
}


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
class DecodedImage:
    """A decoded file: `rgb` HxWx3 uint8 RGB as stored (EXIF orientation not applied), `gray` True when the
    file had one channel, `orientation` the EXIF Orientation tag (1 when absent or unreadable)."""

    rgb: np.ndarray = field(repr=False)
    gray: bool
    orientation: int = 1


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


def max_pixels() -> int:
    """The most pixels an image may have to be decoded: SRBENCH_MAX_PIXELS, default MAX_PIXELS.

    Raises UsageError naming the variable when it is not a positive whole number.
    """
    raw = os.environ.get("SRBENCH_MAX_PIXELS", "").strip()
    if not raw:
        return MAX_PIXELS
    try:
        value = float(raw)  # 2e8 and 200_000_000 both read as 200 megapixels
    except ValueError:
        value = float("nan")
    if not (value >= 1 and value.is_integer()):  # nan and inf fail too
        raise UsageError(
            f"SRBENCH_MAX_PIXELS={raw!r} is not a positive whole number of pixels; set e.g. 200000000 "
            f"(200 megapixels) or unset it for the default {MAX_PIXELS}"
        )
    return int(value)


def max_file_bytes(width: int, height: int, frames: int = 1, plain_pnm: bool = False) -> int:
    """The largest file an image of `frames` x `width` x `height` pixels can legitimately be, in bytes.

    Frames (pages, animation) count up to `max_pixels()` in all: a header's frame count is not proof.
    """
    pixels = width * height
    if frames > 1:
        pixels = max(pixels, min(frames * pixels, max_pixels()))
    per_pixel = _PLAIN_PNM_BYTES_PER_PIXEL if plain_pnm else _BYTES_PER_PIXEL
    return pixels * per_pixel + _METADATA_BYTES


def orientation_text(orientation: int) -> str:
    """What a viewer does for an EXIF Orientation value: 'rotate 90 CW' for 6."""
    return _ORIENTATIONS.get(orientation, "not a valid orientation" if orientation != 1 else "as stored")


class _HeaderReader:
    """`f` for Pillow to identify a file from: a read that would pass `budget` bytes raises DataError (a
    header running on for megabytes is not an image we decode, and must not fill the memory); a
    `budget` of None reads freely."""

    def __init__(self, f: IO[bytes], name: str, budget: int | None) -> None:
        self._f, self._name, self.budget, self._count, self._over = f, name, budget, 0, False

    def read(self, n: int | None = -1) -> bytes:
        if self.budget is not None:
            want = (1 << 62) if n is None or n < 0 else n
            if self._over or self._count + want > self.budget:
                self._over = True  # sticky: a plugin swallowing the error reads no further
                raise DataError(
                    f"{self._name}: not a readable image (over {self.budget >> 20} MiB of header before "
                    f"the pixels); replace or remove the file"
                )
        data = self._f.read(-1 if n is None else n)
        self._count += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        pass  # the caller owns the file


def _webp_canvas(head: bytes) -> tuple[int, int] | None:
    """Width and height from a WebP file's first 30 bytes (RIFF header and first chunk), None if absent."""
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _check_pixels(name: str, width: int, height: int) -> None:
    limit = max_pixels()
    if width * height > limit:
        raise DataError(
            f"{name}: {width}x{height} is {width * height} pixels, more than the limit of {limit}; set "
            f"SRBENCH_MAX_PIXELS to a larger number of pixels to load it, or downscale the image"
        )


def _check_bytes(name: str, width: int, height: int, size: int, frames: int = 1, plain: bool = False) -> None:
    bound = max_file_bytes(width, height, frames, plain)
    if size > bound:
        many = f" in {frames} frames" if frames > 1 else ""
        raise DataError(
            f"{name}: the file is {size / 2**20:,.1f} MiB, but {width}x{height} pixels{many} need at most "
            f"{bound / 2**20:,.1f} MiB: trailing data or a damaged file; re-save the image or remove it"
        )


def _frames(im: Image.Image) -> int:
    try:
        return max(1, int(getattr(im, "n_frames", 1)))  # TIFF walks its page list: only asked when needed
    except (OSError, ValueError, EOFError, SyntaxError):
        return 1


@contextlib.contextmanager
def _checked_open(name: str, f: IO[bytes], size: int) -> Iterator[Image.Image]:
    """Open `f` (`size` bytes) lazily, reading the header only, and check it before any pixel is read.

    Raises DataError for what is not a readable image, has more pixels than `max_pixels()`, or is
    far larger than its pixels need (`max_file_bytes`); UsageError for a bad SRBENCH_MAX_PIXELS.
    """
    head = f.read(30)
    f.seek(0)
    reader = _HeaderReader(f, name, _HEADER_BYTES)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":  # Pillow reads a WebP whole when it opens it
        canvas = _webp_canvas(head)
        if canvas is None:
            raise DataError(f"{name}: not a readable image (no WebP canvas size); replace or remove the file")
        _check_pixels(name, *canvas)
        _check_bytes(name, *canvas, size)
        reader.budget = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit decides, below
        _follow_pixel_limit()
        im = Image.open(reader, formats=_FORMATS)  # type: ignore[arg-type]
    with im:
        width, height = im.size
        _check_pixels(name, width, height)
        plain = head[:2] in (b"P1", b"P2", b"P3")
        if size > max_file_bytes(width, height, 1, plain):  # else the frame count cannot matter
            _check_bytes(name, width, height, size, _frames(im), plain)
        reader.budget = None
        yield im


def _follow_pixel_limit() -> None:
    # Pillow refuses images over twice its own limit before we see their size: when the user raised
    # ours past that, Pillow's is raised to match (its documented knob, only ever raised)
    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and limit > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit


def read_image_file(path: Path | str) -> bytes:
    """The bytes of an image file, read whole only after its header passed the checks of `decode_image`.

    Raises DataError (not an image, too many pixels, far larger than its pixels need) and OSError
    (cannot be opened or read).
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        with _translated(path, size), _checked_open(path.name, f, size):
            pass
        f.seek(0)
        data = f.read(size + 1)
    if len(data) > size:
        raise DataError(f"{path.name}: the file grew while it was read; read it again when it is complete")
    return data


@contextlib.contextmanager
def _translated(path: Path, size: int) -> Iterator[None]:
    """Pillow's and the OS's errors while decoding `path` (`size` bytes) as one-line DataErrors."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"{path.name}: more than {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels, over the limit of "
            f"{max_pixels()}; set SRBENCH_MAX_PIXELS to a larger number of pixels to load it, or "
            f"downscale the image"
        ) from exc
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        detail = str(exc).split(" <")[0]  # Pillow names the file object: not useful to the user
        if isinstance(exc, Image.UnidentifiedImageError):
            detail = f"no {_FORMAT_NAMES} image Pillow can read"
        what = "empty file" if size == 0 else f"not a readable image ({detail})"
        raise DataError(f"{path.name}: {what}; replace or remove the file") from exc


def decode_image(path: Path | str, data: bytes | None = None) -> DecodedImage:
    """Decode an image file (or its bytes `data`) to HxWx3 uint8 RGB, as stored.

    The header is checked first (`read_image_file`). Gray and palette images become RGB, alpha is
    dropped, 16-bit is scaled to 8-bit, CMYK converted; the EXIF orientation is reported, not applied.
    Raises DataError naming the file on anything that is not a decodable image.
    """
    path = Path(path)
    if data is None:
        try:
            data = read_image_file(path)
        except FileNotFoundError as exc:
            raise DataError(f"{path}: file not found") from exc
        except OSError as exc:
            raise DataError(
                f"{path.name}: cannot read the file ({exc.strerror}); check it is readable"
            ) from exc
    orientation = 1
    with _translated(path, len(data)), _checked_open(path.name, io.BytesIO(data), len(data)) as im:
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
        with contextlib.suppress(Exception):  # a damaged EXIF block: the pixels are still good
            orientation = int(im.getexif().get(_ORIENTATION, 1))
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{path.name}: unsupported image layout {arr.shape}; expected HxW or HxWx3")
    return DecodedImage(np.ascontiguousarray(arr), gray, orientation)


def load_rgb(path: Path | str, data: bytes | None = None) -> tuple[np.ndarray, bool]:
    """Decode an image file to (HxWx3 uint8 RGB, was_single_channel); see `decode_image`.

    Raises DataError naming the file on anything that is not a decodable image.
    """
    image = decode_image(path, data)
    return image.rgb, image.gray


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
        atomic_write(path, lambda f: f.write(text.encode()))
    except OSError:
        pass  # the LR cache is an optimisation: a read-only or full cache only costs time


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write `path` by calling `write` on a temporary file beside it, then renaming it into place: readers
    see the old file or the new one, never half of one. Whatever `write` or the disk raises (OSError
    such as ENOSPC, or anything else) propagates, and the temporary file is removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; keep the mode of the file being replaced, else the usual 0644
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "wb") as f:
            fd = -1  # the file object owns it now
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_png(path: Path, img: np.ndarray, *, strict: bool = False) -> bool:
    """Write HxWx3 uint8 `img` as a PNG so readers never see half of it.

    Returns False when the file system refuses (read-only, full, no permission: an OSError), leaving
    nothing behind, or raises that OSError with `strict`; any other error is raised, leaving nothing behind.
    """
    try:
        atomic_write(path, lambda f: Image.fromarray(img).save(f, format="PNG", compress_level=1))
    except OSError:
        if strict:
            raise
        return False
    return True
