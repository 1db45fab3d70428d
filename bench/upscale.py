"""A user's own weights and own images: learned methods with a weights file, and upscaling files or folders."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.api import Method, MethodInfo
from bench.core import check_output
from bench.data import IMAGE_SUFFIXES, atomic_write_png, is_image_file, load_rgb, sha256_file
from bench.data.dataset import image_names  # the one rule for naming files that share a stem
from bench.errors import BenchError, DataError, UsageError, did_you_mean
from bench.metrics import to_uint8
from bench.registry import create_method, method_groups

__all__ = [
    "WEIGHTS_MARK",
    "weights_label",
    "weights_methods",
    "build_method",
    "UserWeightsMethod",
    "UpscaleRequest",
    "UpscaleResult",
    "plan_outputs",
    "upscale_images",
]

WEIGHTS_MARK = "@"  # `srcnn@mine`: srcnn running mine.safetensors, never read as the shipped srcnn

PathLike = str | os.PathLike[str]


# ------------------------------------------------------------------------------------------ weights


def weights_label(method: str, weights: PathLike) -> str:
    """The name a method runs under with a user's weights file: `<method>@<file stem>`.

    Idempotent, so a label saved in a run's config.json labels the same way on `--resume`.

    Example
    -------
    >>> weights_label("srcnn", "runs/mine.safetensors"), weights_label("srcnn@mine", "mine.safetensors")
    ('srcnn@mine', 'srcnn@mine')
    """
    return f"{method.partition(WEIGHTS_MARK)[0]}{WEIGHTS_MARK}{Path(weights).stem}"


def _learned_methods() -> list[str]:
    groups = method_groups()
    return [*groups.get("trained", []), *groups.get("zoo", [])]


def _check_weights_target(method: str, weights: Path) -> None:
    """UsageError unless `method` is a built-in learned method and `weights` an existing file."""
    learned = _learned_methods()
    if method not in learned:
        raise UsageError(
            f"--weights applies to a built-in learned method, not {method!r}; {did_you_mean(method, learned)}"
            f"choose one of {', '.join(learned)}"
        )
    if not weights.is_file():
        raise UsageError(f"--weights {weights}: no such file; give the path of a {method} weights file")


def weights_methods(methods: list[str], scales: list[int], weights: PathLike) -> list[str]:
    """The run's one method, labelled for `weights` (see `weights_label`), after checking the file fits.

    A weights file is for one method and one scale: anything else is a UsageError. The method is
    built once on the CPU so a file that does not fit (tensor names, shapes) is a WeightsError before
    any work is done.
    """
    if len(methods) != 1:
        raise UsageError(
            f"--weights takes exactly one method, got {len(methods)} ({', '.join(methods) or 'none'}); "
            f"e.g. --methods srcnn --scales 2 --weights FILE"
        )
    if len(scales) != 1:
        raise UsageError(
            f"--weights takes exactly one scale (a weights file is trained for one), got "
            f"{', '.join(map(str, scales))}; add e.g. --scales {scales[0] if scales else 2}"
        )
    build_method(methods[0], scale=scales[0], device="cpu", weights=weights)
    return [weights_label(methods[0], weights)]


class UserWeightsMethod:
    """A built-in learned method running a user's weights file, named `<method>@<file stem>`.

    `info()` is the wrapped method's with the name, the file and the file's sha256 replaced, so rows
    and tables never attribute its numbers to the shipped weights. Everything else (`upscale`, `tile`,
    `upscale_y`, ...) is the wrapped method's. Raises UsageError (not a learned method, no file) and
    WeightsError (the file does not fit the network).
    """

    def __init__(self, method: str, weights: PathLike, *, scale: int, device: str = "cpu", **kw: Any) -> None:
        self.base, self.path = method.partition(WEIGHTS_MARK)[0], Path(weights)
        _check_weights_target(self.base, self.path)
        self.sha256 = sha256_file(self.path)
        # the project's own networks verify a file against their manifest unless told its sha256: a
        # user's file has no entry, and these bytes are what the rows will record
        pinned = {"sha256": self.sha256} if self.base in method_groups().get("trained", []) else {}
        self.method: Any = create_method(
            self.base, scale=scale, device=device, weights=self.path, **pinned, **kw
        )
        self.name = weights_label(self.base, self.path)
        self.scale: int = self.method.scale
        self.device: str = self.method.device
        self._info: MethodInfo | None = None

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        return np.asarray(self.method.upscale(lr))

    def info(self) -> MethodInfo:
        if self._info is None:
            inner = self.method.info()
            self._info = replace(inner, name=self.name, weights=str(self.path), weights_sha256=self.sha256)
        return self._info

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "method":  # not yet built: no delegation
            raise AttributeError(attr)
        return getattr(self.method, attr)


def build_method(
    name: str, *, scale: int, device: str = "cpu", weights: PathLike | None = None, **kw: Any
) -> Method:
    """`create_method(name, ...)`; with `weights`, a `UserWeightsMethod` (name may be its label).

    Raises what `create_method` and `UserWeightsMethod` raise.
    """
    if weights is None:
        return create_method(name, scale=scale, device=device, **kw)
    return UserWeightsMethod(name, weights, scale=scale, device=device, **kw)


# ------------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class UpscaleRequest:
    """What `bench upscale` was asked: `source` an image file or a folder of images, `dest` a .png file
    or a folder. `tile` (the method's tile unit) forces tiling; None leaves it to the method
    (learned methods tile by themselves above their pixel budget, `methods._tiles.AUTO_TILE_PIXELS`)."""

    source: Path
    dest: Path
    method: str
    scale: int
    device: str = "auto"
    tile: int | None = None
    weights: str | None = None


@dataclass
class UpscaleResult:
    """What was done: the method's name (a label with --weights), files written, one line per failure."""

    method: str
    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    tiled: int = 0  # images that ran in tiles

    @property
    def total(self) -> int:
        return len(self.written) + len(self.failed)


def _folder_inputs(source: Path) -> list[Path]:
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if is_image_file(p)]
    if not images:
        raise UsageError(
            f"folder {source} holds no images ({', '.join(IMAGE_SUFFIXES)}); give a folder of images"
        )
    return images


def _file_output(source: Path, dest: Path) -> Path:
    if dest.is_dir():
        return dest / f"{source.stem}.png"
    if dest.suffix.lower() == ".png":
        return dest
    if dest.exists():
        raise UsageError(
            f"OUT {dest} exists and is neither a folder nor a .png file; give a .png file or a folder"
        )
    return dest / f"{source.stem}.png"  # a folder to create


def plan_outputs(source: Path, dest: Path) -> list[tuple[Path, Path]]:
    """(input, output PNG) pairs: a file to a .png file or into a folder; a folder's images (by suffix,
    not recursive, hidden files left out) into a folder as `<stem>.png` (`<name>.png` where stems clash).

    Raises UsageError for a missing input, a folder without images, and any output that would replace
    an input file or land in the input folder itself.
    """
    if not source.exists():
        raise UsageError(f"{source}: no such file or folder; give an image file or a folder of images")
    if source.is_dir():
        if dest.exists() and not dest.is_dir():
            raise UsageError(f"OUT {dest} is a file; when IN is a folder, OUT must be a folder")
        if dest.resolve() == source.resolve():
            raise UsageError(
                f"OUT {dest} is the input folder: results would mix with (and could replace) the inputs; "
                f"give another folder, e.g. {dest / 'sr'}"
            )
        inputs = _folder_inputs(source)
        pairs = [(p, dest / f"{n}.png") for p, n in zip(inputs, image_names(inputs), strict=True)]
    else:
        pairs = [(source, _file_output(source, dest))]
    for src, out in pairs:
        if out.resolve() == src.resolve() or (out.exists() and out.samefile(src)):
            raise UsageError(f"OUT {out} is the input file itself; give another file or folder")
    return pairs


class _Methods:
    """The method built once, and its tiled twin for large images (built on first need).

    Methods that tile have a `tile` attribute (None when untiled); others always run whole.
    """

    def __init__(self, req: UpscaleRequest) -> None:
        self.req = req
        self.whole = build_method(req.method, scale=req.scale, device=req.device, weights=req.weights)
        if getattr(self.whole, "needs_ref", False):
            raise UsageError(
                f"{req.method} looks up stored outputs; upscale needs a method that computes them"
            )
        self.tiled: Any = None

    @property
    def name(self) -> str:
        return str(getattr(self.whole, "name", self.req.method))

    def for_image(self, lr: np.ndarray) -> tuple[Any, bool]:
        """(method, runs in tiles) for an HxWx3 LR image."""
        tile = self.req.tile
        if tile is None or not hasattr(self.whole, "tile"):  # the method's own rule (`runs_in_tiles`)
            return self.whole, bool(getattr(self.whole, "runs_in_tiles", lambda lr: False)(lr))
        if self.tiled is None or self.tiled.tile != tile:
            self.tiled = build_method(
                self.req.method,
                scale=self.req.scale,
                device=self.whole.device,
                weights=self.req.weights,
                tile=tile,
            )
        return self.tiled, True


def _upscale_file(methods: _Methods, src: Path, out: Path) -> bool:
    """Upscale one file to a PNG; whether it ran in tiles. Raises DataError (unreadable, unwritable)
    and whatever the method raises."""
    lr, _ = load_rgb(src)
    method, tiled = methods.for_image(lr)
    h, w = lr.shape[:2]
    s = methods.req.scale
    sr = to_uint8(check_output(method.upscale(lr), (h * s, w * s, 3)))
    if not atomic_write_png(out, sr):
        raise DataError(f"{src.name}: cannot write {out}; check that its folder is writable and has space")
    return tiled


def _failure(src: Path, exc: BaseException) -> str:
    """One line for an input that could not be upscaled (load_rgb's DataError already names the file)."""
    msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, DataError) and msg.startswith(src.name):
        return msg
    kind = "" if isinstance(exc, BenchError) else f"{type(exc).__name__}: "
    return f"{src.name}: {kind}{msg}"


def upscale_images(req: UpscaleRequest, *, progress: bool = False) -> UpscaleResult:
    """Super-resolve a file or a folder of images with one method; outputs are HxWx3 uint8 RGB PNGs
    (clipped and rounded, as the benchmark scores them; gray inputs become RGB, alpha is dropped).

    Inputs that cannot be read or upscaled are listed in `failed` (one line each) and skipped; the
    others are written. Existing outputs are replaced, inputs never. `progress` draws a bar on stderr
    for a folder. Raises UsageError for a bad request and what building the method raises, before
    any image is written.
    """
    from tqdm import tqdm

    pairs = plan_outputs(req.source, req.dest)
    methods = _Methods(req)
    result = UpscaleResult(method=methods.name)
    bar = tqdm(pairs, desc="upscale", unit="img", file=sys.stderr, leave=False,
               disable=not progress or not req.source.is_dir())  # fmt: skip
    for src, out in bar:
        try:
            result.tiled += _upscale_file(methods, src, out)
        except (Exception, MemoryError) as exc:  # noqa: BLE001 - one image's failure is its own
            result.failed.append(_failure(src, exc))
        else:
            result.written.append(out)
    return result
