"""Shared torch plumbing for the Y-channel networks: YCbCr, weights loading/verification, the Y-channel adapter."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import torch
from torch import nn

from bench.api import MethodInfo
from bench.data import sha256_file
from bench.errors import MethodError, UsageError, WeightsError
from bench.imresize import KERNELS, imresize
from bench.metrics import to_uint8
from methods import _tiles
from methods._thread_invariant import counting_macs
from methods._tiles import (
    auto_tile,
    forward_band,
    forward_tiled,
    processing,
    release_freed_memory,
    row_blocks,
    spans,
)

__all__ = [
    "WEIGHTS_DIR",
    "MANIFEST",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "weights_path",
    "user_weights_dir",
    "manifest_for",
    "read_manifest",
    "record_sha256",
    "load_weights",
    "count_params",
    "macs_720p",
    "YChannelMethod",
    "method_factory",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# machine-readable file -> sha256 record that loading verifies (the model cards repeat it for people)
MANIFEST = WEIGHTS_DIR / "manifest.json"

# MATLAB rgb2ycbcr on im2double input, rescaled to 0..255: ycc = offset + M @ rgb, rgb in 0..255
_YCC_M = (
    np.array(
        [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
    )
    / 255.0
)
_YCC_OFFSET = np.array([16.0, 128.0, 128.0])
# MATLAB ycbcr2rgb applies the exact inverse of the same matrix
_YCC_M_INV = np.linalg.inv(_YCC_M)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 RGB (uint8 or float, 0..255) -> HxWx3 float64 BT.601 studio YCbCr (0..255 scale), unrounded."""
    return np.asarray(rgb, dtype=np.float64) @ _YCC_M.T + _YCC_OFFSET


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """HxWx3 float YCbCr (0..255 scale) -> HxWx3 float64 RGB (0..255 scale, not clipped)."""
    return (np.asarray(ycc, dtype=np.float64) - _YCC_OFFSET) @ _YCC_M_INV.T


def user_weights_dir() -> Path:
    """The weights folder in the user's data folder (platformdirs), where `bench train --install` writes
    outside a source checkout: an installed package (site-packages) is never written to."""
    return Path(platformdirs.user_data_dir("srbench", appauthor=False)) / "weights"


def weights_path(method: str, scale: int) -> Path:
    """The weights file of `method` x`scale`: the package's own (methods/weights) when present, else
    the one installed into `user_weights_dir()`; the package's path (for the error) when neither is."""
    name = f"{method}_x{scale}.safetensors"
    own, user = WEIGHTS_DIR / name, user_weights_dir() / name
    return user if not own.is_file() and user.is_file() else own


def manifest_for(path: Path) -> Path:
    """The manifest that records the sha256 of weights file `path`: the user folder's for a file
    there, else the package's MANIFEST."""
    user = user_weights_dir()
    return user / MANIFEST.name if path.resolve().parent == user.resolve() else MANIFEST


def train_command(method: str, scale: int) -> str:
    return f"python -m bench train {method} --scale {scale} --install"


def read_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    """The weights manifest: {"files": {"<method>_x<scale>.safetensors": {"sha256": ...}}}."""
    if not path.exists():
        return {"files": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(
            f"cannot read weights manifest {path}: {exc}; restore it from version control"
        ) from exc
    data.setdefault("files", {})
    return data


def record_sha256(file_name: str, sha256: str, path: Path = MANIFEST, **extra: Any) -> None:
    """Record (or replace) one file's sha256 in the manifest; written atomically, under a lock."""
    import fcntl
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    # the lock lives outside the weights folder so nothing but weights, cards and the manifest lands there
    lock_path = (
        Path(tempfile.gettempdir())
        / f"srbench-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}.lock"
    )
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_manifest(path)
        data["files"][file_name] = {"sha256": sha256, **extra}
        data["files"] = dict(sorted(data["files"].items()))
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        os.replace(tmp, path)


def load_weights(
    net: nn.Module,
    path: str | os.PathLike[str],
    *,
    method: str,
    scale: int,
    expected_sha256: str | None = None,
) -> str:
    """Load a safetensors file into `net` (no pickle) after checking its sha256; returns the sha256.

    The expected sha256 is `expected_sha256` or, failing that, the manifest entry for the file's
    name. Raises WeightsError when the file is missing, unrecorded, tampered with, or does not fit.
    """
    from safetensors.torch import load_file

    path = Path(path)
    fix = f"train them with '{train_command(method, scale)}'"
    if not path.is_file():
        raise WeightsError(f"weights {path} missing; {fix}")
    actual = sha256_file(path)
    if expected_sha256 is None:
        manifest = manifest_for(path)
        entry = read_manifest(manifest).get("files", {}).get(path.name)
        if entry is None:
            raise WeightsError(
                f"weights {path.name} have no sha256 in {manifest}; pass the expected sha256 or {fix}"
            )
        expected_sha256 = str(entry["sha256"])
    if actual != expected_sha256:
        raise WeightsError(
            f"sha256 of {path} is {actual[:12]}..., expected {expected_sha256[:12]}...: "
            f"the file is corrupt or was replaced; restore it from version control or {fix}"
        )
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a malformed header
        raise WeightsError(f"cannot read weights {path}: {exc}; {fix}") from exc
    own = net.state_dict()
    if set(tensors) != set(own):
        raise WeightsError(
            f"weights {path} hold tensors {sorted(tensors)}, expected {sorted(own)} for {method} x{scale}; {fix}"
        )
    for key, value in tensors.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(
                f"weights {path}: tensor {key!r} has shape {tuple(value.shape)}, expected "
                f"{tuple(own[key].shape)} for {method} x{scale}; {fix}"
            )
    net.load_state_dict(tensors)
    return actual


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def macs_720p(net: nn.Module, scale: int, input_upscaled: bool) -> int:
    """Multiply-adds of one forward pass producing a 1280x720 output (FLOPs / 2, flop_counter).

    Conv FLOPs are linear in the number of pixels, so they are counted on a small input and scaled
    to 1280x720 exactly (1280/3 is not an integer, so x3 has no exact 720p input size).
    """
    from torch.utils.flop_counter import FlopCounterMode

    side = 12 * scale if input_upscaled else 12
    x = torch.zeros(1, 1, side, side, device=next(net.parameters()).device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter, counting_macs():
        net(x)
    out_pixels = (12 * scale) ** 2
    return int(round(counter.get_total_flops() / 2 / out_pixels * 1280 * 720))


class YChannelMethod:
    """Method adapter for a network that super-resolves the Y plane; Cb/Cr are upscaled by MATLAB bicubic.

    The network maps Nx1xhxw float32 Y/255 to Nx1x(h*s)x(w*s) (or, when `input_upscaled`, takes the
    bicubic-upscaled Y at the output size). `upscale(lr)`: HxWx3 RGB, uint8 or float64 in [0, 255]
    -> (H*s)x(W*s)x3 float64 RGB clipped to [0, 255]. Raises MethodError on a malformed input.

    An image whose network input exceeds AUTO_TILE_PIXELS runs band by band (`tile` rows of network
    input, each in tiles of `tile` columns): colour conversion, CbCr bicubic and rounding included, so
    memory stays bounded; its output is then uint8, rounded as the protocol rounds (`to_uint8`), and
    equals the rounded output of the same method built with `tile` set.
    """

    def __init__(
        self,
        name: str,
        net: nn.Module,
        *,
        scale: int,
        device: str = "cpu",
        input_upscaled: bool = False,
        receptive_radius: int,
        weights: str | None = None,
        weights_sha256: str | None = None,
        tile: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if tile is not None and int(tile) < 1:
            raise UsageError(f"tile must be a positive number of pixels, got {tile}")
        self.name = name
        self.scale = int(scale)
        self.device = device
        self.input_upscaled = input_upscaled
        self.receptive_radius = int(receptive_radius)
        self.tile = int(tile) if tile is not None else None
        self.weights = weights
        self.weights_sha256 = weights_sha256
        self._extra = dict(extra or {})
        self.net = net.to(device=device).to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
        self._info: MethodInfo | None = None

    # -- Y plane ------------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        tile = auto_tile(self.tile, x.shape[2] * x.shape[3])
        if tile is None:
            return self.net(x)
        return forward_tiled(self.net, x, tile, self.receptive_radius, self._factor)

    @property
    def _factor(self) -> int:
        """Output pixels per network input pixel along a side."""
        return 1 if self.input_upscaled else self.scale

    def _in_bands(self, lr: np.ndarray) -> bool:
        """Whether an HxWx3 LR image's network input is above the budget (it then runs band by band)."""
        return lr.shape[0] * lr.shape[1] * (self.scale // self._factor) ** 2 > _tiles.AUTO_TILE_PIXELS

    def runs_in_tiles(self, lr: np.ndarray) -> bool:
        """Whether an HxWx3 LR image runs in tiles: `tile` set, or its network input above the budget."""
        return self.tile is not None or self._in_bands(lr)

    def _net_input(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2:
            raise MethodError(f"{self.name}: upscale_y expects an HxW Y plane, got shape {y.shape}")
        if self.input_upscaled:
            y = imresize(y, self.scale)  # MATLAB bicubic on float: no rounding, as SRCNN's scripts do
        return y

    def upscale_y_batch(self, planes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """HxW float64 Y planes in [0, 255] -> (H*s)x(W*s) float64 Y planes (not clipped).

        Planes of equal shape run as one batch.
        """
        inputs = [self._net_input(y) for y in planes]
        results: list[np.ndarray | None] = [None] * len(inputs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(inputs):
            groups.setdefault(x.shape, []).append(i)
        with torch.inference_mode():
            for idx in groups.values():
                batch = np.stack([inputs[i] for i in idx]).astype(np.float32)[:, None] / np.float32(255.0)
                out = self._forward(torch.from_numpy(batch).to(self.device))
                out_np = out.float().cpu().numpy()[:, 0].astype(np.float64) * 255.0
                for j, i in enumerate(idx):
                    results[i] = out_np[j]
        return [r for r in results if r is not None]

    def upscale_y(self, y: np.ndarray) -> np.ndarray:
        return self.upscale_y_batch([y])[0]

    # -- RGB ----------------------------------------------------------------------------------
    def _check_lr(self, lr: np.ndarray) -> np.ndarray:
        lr = np.asarray(lr)
        if lr.ndim != 3 or lr.shape[2] != 3:
            raise MethodError(f"{self.name}: expected an HxWx3 RGB image, got shape {lr.shape}")
        return lr

    def upscale_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        images = [self._check_lr(lr) for lr in images]
        large = [self._in_bands(lr) for lr in images]
        yccs = [rgb_to_ycbcr(lr) for lr, big in zip(images, large, strict=True) if not big]
        whole = iter(zip(yccs, self.upscale_y_batch([ycc[:, :, 0] for ycc in yccs]), strict=True))
        out = []
        for lr, big in zip(images, large, strict=True):
            if big:
                out.append(self._upscale_in_bands(lr))
                continue
            ycc, y = next(whole)
            cbcr = imresize(np.ascontiguousarray(ycc[:, :, 1:]), self.scale)  # float: unrounded bicubic
            rgb = ycbcr_to_rgb(np.concatenate([y[:, :, None], cbcr], axis=2))
            out.append(np.clip(rgb, 0.0, 255.0))
        return out

    def _upscale_in_bands(self, lr: np.ndarray) -> np.ndarray:
        """A large HxWx3 LR image -> (H*s)x(W*s)x3 uint8, a band of `tile` network-input rows at a time.

        Every step is per row (YCbCr, bicubic via `imresize(rows=...)`) or per tile as `forward_tiled`
        cuts them, so the numbers are those of the whole-image pipeline with `tile` set."""
        out = np.empty((lr.shape[0] * self.scale, lr.shape[1] * self.scale, 3), dtype=np.uint8)
        with torch.inference_mode():
            self._bands(rgb_to_ycbcr(lr), out)
        release_freed_memory()
        return out

    def _bands(self, ycc: np.ndarray, out: np.ndarray) -> None:
        s, f, radius = self.scale, self._factor, self.receptive_radius
        tile = self.tile or _tiles.AUTO_TILE
        y_lr = ycc[:, :, 0]
        for top, bottom, t0, t1 in spans(ycc.shape[0] * s // f, tile, radius):
            y_in = y_lr[t0:t1] if f == s else imresize(y_lr, s, rows=(t0, t1))
            x = torch.from_numpy(y_in.astype(np.float32)[None, None] / np.float32(255.0)).to(self.device)
            x = x.contiguous(memory_format=torch.channels_last)
            y = forward_band(self.net, x, (top - t0, bottom - t0), tile, radius, f)
            self._colour_rows(y.float().cpu().numpy()[0, 0], ycc, top * f, out)

    def _colour_rows(self, y: np.ndarray, ycc: np.ndarray, row0: int, out: np.ndarray) -> None:
        """Rows row0.. of `out` (uint8 RGB) from the network's float32 Y rows `y` and the LR YCbCr `ycc`,
        a few rows at a time: the float64 colour planes of a band would take ~200 bytes a pixel."""
        for a, b in row_blocks(y.shape[0], out.shape[1]):
            cbcr = imresize(ycc[:, :, 1:], self.scale, rows=(row0 + a, row0 + b))  # float: unrounded bicubic
            y_hr = y[a:b].astype(np.float64) * 255.0
            rgb = ycbcr_to_rgb(np.concatenate([y_hr[:, :, None], cbcr], axis=2))
            out[row0 + a : row0 + b] = to_uint8(np.clip(rgb, 0.0, 255.0))

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        return self.upscale_batch([lr])[0]

    def info(self) -> MethodInfo:
        if self._info is None:
            self._info = MethodInfo(
                name=self.name,
                scale=self.scale,
                device=self.device,
                params=count_params(self.net),
                macs_720p=macs_720p(self.net, self.scale, self.input_upscaled),
                weights=self.weights,
                weights_sha256=self.weights_sha256,
                channels="y",
                deterministic=True,
                extra={
                    "tile": self.tile,
                    "processing": processing(
                        self.tile, self.receptive_radius, "HR" if self._factor == 1 else "LR", True
                    ),
                    **self._extra,
                },
            )
        return self._info


def build_method(
    name: str,
    net: nn.Module,
    *,
    scale: int,
    device: str,
    weights: str | os.PathLike[str] | None,
    tile: int | None,
    input_upscaled: bool,
    receptive_radius: int,
    sha256: str | None = None,
    extra: dict[str, Any] | None = None,
) -> YChannelMethod:
    """Resolve the device, load and verify weights (default: the shipped file), wrap in YChannelMethod."""
    from bench.registry import resolve_device

    device = resolve_device(device)
    path = Path(weights) if weights is not None else weights_path(name, scale)
    sha = load_weights(net, path, method=name, scale=scale, expected_sha256=sha256)
    if not all(bool(torch.isfinite(p.detach()).all()) for p in net.parameters()):
        raise WeightsError(f"weights {path} contain NaN or inf; {train_command(name, scale)}")
    return YChannelMethod(
        name,
        net,
        scale=scale,
        device=device,
        input_upscaled=input_upscaled,
        receptive_radius=receptive_radius,
        weights=str(path),
        weights_sha256=sha,
        tile=tile,
        extra=extra,
    )


def method_factory(
    name: str, build_net: Callable[[int], nn.Module], *, input_upscaled: bool, tile_unit: str
) -> Callable[..., YChannelMethod]:
    """The registry factory `make(*, scale, device, weights, tile, sha256)` of one Y-channel network."""

    def make(
        *,
        scale: int,
        device: str = "cpu",
        weights: str | os.PathLike[str] | None = None,
        tile: int | None = None,
        sha256: str | None = None,
        **kw: Any,
    ) -> YChannelMethod:
        if kw:
            raise UsageError(
                f"{name}: unknown option(s) {', '.join(sorted(kw))}; known: weights, tile, sha256"
            )
        net = build_net(scale)
        return build_method(
            name,
            net,
            scale=scale,
            device=device,
            weights=weights,
            tile=tile,
            input_upscaled=input_upscaled,
            receptive_radius=int(net.receptive_radius),  # type: ignore[arg-type]
            sha256=sha256,
            # the shipped weights: trained here on the 291 images, fine-tuned on T91 (their model cards say how)
            extra={"group": "trained", "training_data": "291 (T91 + BSD200), then T91"},
        )

    make.__doc__ = f"The `{name}` method for x`scale`; `tile` in {tile_unit} pixels. Raises WeightsError."
    return make


# MATLAB's bicubic kernel (a = -0.5): the one bench.imresize resamples with
cubic = KERNELS["bicubic"][0]


def bicubic_phase_taps(scale: int, taps: int) -> np.ndarray:
    """(scale, taps) weights: HR sub-pixel `a` of an LR pixel as a `taps`-wide (odd) LR filter centred on it.

    MATLAB imresize maps HR index o = i*scale + a (0-based) to LR coordinate i + (a + 0.5)/scale - 0.5.
    Rows are normalised to sum to 1 (as imresize does after truncating the kernel).
    """
    half = taps // 2
    k = np.arange(-half, half + 1)
    rows = []
    for a in range(scale):
        delta = (a + 0.5) / scale - 0.5
        w = cubic(delta - k)
        rows.append(w / w.sum())
    return np.array(rows)


def _bias(module: nn.Module) -> torch.Tensor:
    """A conv layer's bias tensor (the networks here always have one)."""
    bias = getattr(module, "bias", None)
    if not isinstance(bias, torch.Tensor):
        raise MethodError(f"{type(module).__name__} has no bias")
    return bias
