"""A published model behind the Method contract: official weights loaded strictly, fed as its authors fed it."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.api import MethodInfo
from bench.errors import MethodError, UsageError, WeightsError
from bench.metrics import to_uint8
from bench.registry import resolve_device
from methods import _tiles
from methods._thread_invariant import counting_macs, pin_pointwise_convs
from methods._tiles import forward_band, forward_tiled, processing, release_freed_memory, row_blocks, spans
from methods._torchsr import YChannelMethod
from methods.zoo._spec import ZooModel
from methods.zoo.catalog import ARCH_MODULE, Checkpoint, checkpoint_for
from methods.zoo.weights import checkpoint_path, load_checkpoint

__all__ = ["ZooMethod", "zoo_model", "build_net", "make", "state_params", "macs_720p"]

_FLOP_SIDE = 24  # LR side of the input the flops are counted on (large enough for every model's pooling)


def zoo_model(name: str) -> ZooModel:
    """The `ZooModel` record of a zoo method name."""
    module = importlib.import_module(f"methods.zoo.{ARCH_MODULE[name]}")
    for model in module.MODELS:
        if model.name == name:
            return model
    raise UsageError(f"methods/zoo/{ARCH_MODULE[name]}.py defines no model {name!r}")


def state_params(net: nn.Module) -> int:
    """Numbers in the state dict (parameters and buffers such as fixed mean shifts): what the file holds."""
    return int(sum(t.numel() for t in net.state_dict().values()))


def build_net(model: ZooModel, scale: int, path: Path) -> nn.Module:
    """The network for `scale` with the checkpoint at `path` loaded strictly. Raises WeightsError."""
    raw = load_checkpoint(path)
    try:
        state = model.to_state(raw, scale)
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightsError(
            f"{path.name} is not a {model.name} checkpoint: {exc}; check SRBENCH_WEIGHTS_PATH"
        ) from exc
    net = model.build(scale)
    try:
        net.load_state_dict(state, strict=True)  # a missing or unexpected key is an error, never skipped
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise WeightsError(
            f"{path.name} does not fit {model.name} x{scale}: {' '.join(first[:3])[:400]}"
        ) from exc
    return net.eval()


def macs_720p(net: nn.Module, scale: int, channels: int, input_range: float) -> int:
    """Multiply-adds of one forward pass producing a 1280x720 output (FLOPs / 2, flop_counter).

    Convolution FLOPs are linear in the number of pixels: counted on a small input, scaled to 720p.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(net.parameters()).device
    x = torch.rand(1, channels, _FLOP_SIDE, _FLOP_SIDE, device=device) * input_range
    with torch.inference_mode(), FlopCounterMode(display=False) as counter, counting_macs():
        net(x)
    return int(round(counter.get_total_flops() / 2 / (_FLOP_SIDE * scale) ** 2 * 1280 * 720))


class ZooMethod:
    """An RGB zoo network: HxWx3 uint8 RGB -> (H*s)x(W*s)x3 float64 RGB in [0, 255] (the protocol rounds it).

    The image is scaled to the range the weights expect (`model.input_range`), run under inference
    mode in channels-last layout, and scaled back. `tile` (LR pixels) runs overlapping tiles: exact
    for purely local networks (overlap = receptive radius), approximate for networks with whole-image
    statistics, which `info().extra["processing"]` then says. An image above AUTO_TILE_PIXELS LR pixels
    runs band by band in tiles by itself (`processing` says so too) and comes back as uint8, rounded as
    the protocol rounds (`to_uint8`), so that memory stays bounded.
    """

    def __init__(
        self,
        model: ZooModel,
        ck: Checkpoint,
        net: nn.Module,
        *,
        scale: int,
        device: str,
        tile: int | None,
        path: Path,
    ) -> None:
        if tile is not None and int(tile) < 1:
            raise UsageError(f"tile must be a positive number of pixels, got {tile}")
        self.model, self.checkpoint = model, ck
        self.name, self.scale, self.device = model.name, int(scale), device
        self.tile = int(tile) if tile is not None else None
        self.path = path
        self.net = net.to(device=device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._info: MethodInfo | None = None

    def _check(self, lr: np.ndarray) -> np.ndarray:
        lr = np.asarray(lr)
        if lr.ndim != 3 or lr.shape[2] != 3:
            raise MethodError(f"{self.name}: expected an HxWx3 RGB image, got shape {lr.shape}")
        if min(lr.shape[:2]) < self.model.min_size:
            raise MethodError(
                f"{self.name} needs at least {self.model.min_size}x{self.model.min_size} LR pixels, got "
                f"{lr.shape[1]}x{lr.shape[0]}; use a larger image or a smaller scale"
            )
        return lr

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        if self.tile is None:
            return self.net(x)
        return forward_tiled(self.net, x, self.tile, self.model.receptive_radius, self.scale)

    @staticmethod
    def _in_bands(lr: np.ndarray) -> bool:
        """Whether an HxWx3 LR image is above AUTO_TILE_PIXELS LR pixels (it then runs band by band)."""
        return lr.shape[0] * lr.shape[1] > _tiles.AUTO_TILE_PIXELS

    def runs_in_tiles(self, lr: np.ndarray) -> bool:
        """Whether an HxWx3 LR image runs in tiles: `tile` set, or above the budget."""
        return self.tile is not None or self._in_bands(lr)

    def _upscale_in_bands(self, lr: np.ndarray) -> np.ndarray:
        """A large HxWx3 LR image -> (H*s)x(W*s)x3 uint8, a band of `tile` LR rows at a time: each tile
        sees the input `forward_tiled` gives it, so the numbers are those of the method with `tile` set."""
        out = np.empty((lr.shape[0] * self.scale, lr.shape[1] * self.scale, 3), dtype=np.uint8)
        with torch.inference_mode():
            self._bands(lr, out)
        release_freed_memory()
        return out

    def _bands(self, lr: np.ndarray, out: np.ndarray) -> None:
        s, radius, tile = self.scale, self.model.receptive_radius, self.tile or _tiles.AUTO_TILE
        gain = np.float32(self.model.input_range / 255.0)
        for top, bottom, t0, t1 in spans(lr.shape[0], tile, radius):
            x = torch.from_numpy(lr[None, t0:t1].astype(np.float32) * gain).permute(0, 3, 1, 2)
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
            y = forward_band(self.net, x, (top - t0, bottom - t0), tile, radius, s)
            band = y.float().permute(0, 2, 3, 1).cpu().numpy()[0]
            for a, b in row_blocks(band.shape[0], out.shape[1]):  # float64 rows, a few at a time
                out[top * s + a : top * s + b] = to_uint8(band[a:b].astype(np.float64) / float(gain))

    def upscale_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Equal-sized images run as one batch; see the class docstring for layout and range."""
        arrays = [self._check(lr) for lr in images]
        out: list[np.ndarray | None] = [None] * len(arrays)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(arrays):
            if self._in_bands(a):
                out[i] = self._upscale_in_bands(a)
            else:
                groups.setdefault(a.shape, []).append(i)
        gain = np.float32(self.model.input_range / 255.0)
        with torch.inference_mode():
            for idx in groups.values():
                batch = np.stack([arrays[i] for i in idx]).astype(np.float32) * gain
                x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
                y = self._forward(x).float().permute(0, 2, 3, 1).cpu().numpy()
                for j, i in enumerate(idx):
                    out[i] = y[j].astype(np.float64) / float(gain)
        return [o for o in out if o is not None]

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        return self.upscale_batch([lr])[0]

    def info(self) -> MethodInfo:
        if self._info is None:
            self._info = zoo_info(self, channels=3)
        return self._info


def zoo_info(method: Any, channels: int) -> MethodInfo:
    """The MethodInfo of a zoo method (RGB or Y-channel adapter with `model`, `checkpoint`, `net`, `tile`)."""
    model, ck = method.model, method.checkpoint
    return MethodInfo(
        name=model.name,
        scale=method.scale,
        device=method.device,
        params=state_params(method.net),
        macs_720p=macs_720p(
            method.net, method.scale, 1 if model.channels == "y" else channels, model.input_range
        ),
        weights=ck.url,
        weights_sha256=ck.sha256,
        channels=model.channels,
        extra={
            "group": "zoo",
            "training_data": ck.trained_on,
            "training_detail": ck.training_data,
            "license": ck.license,
            "input_range": model.input_range,
            "processing": processing(method.tile, model.receptive_radius, "LR", model.tile_exact),
            "paper": ck.paper,
            "file": str(method.path),
        },
    )


class ZooYMethod(YChannelMethod):
    """A Y-channel zoo network (LapSRN): Y by the network, CbCr by MATLAB bicubic, as its authors did."""

    def __init__(
        self,
        model: ZooModel,
        ck: Checkpoint,
        net: nn.Module,
        *,
        scale: int,
        device: str,
        tile: int | None,
        path: Path,
    ) -> None:
        super().__init__(
            model.name, net, scale=scale, device=device, receptive_radius=model.receptive_radius, tile=tile
        )
        self.model, self.checkpoint, self.path = model, ck, path
        self.weights, self.weights_sha256 = ck.url, ck.sha256

    def info(self) -> MethodInfo:
        if self._info is None:
            self._info = zoo_info(self, channels=1)
        return self._info


def make(
    name: str,
    *,
    scale: int,
    device: str = "cpu",
    tile: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    **kw: Any,
) -> ZooMethod | ZooYMethod:
    """Build zoo method `name` for `scale`: resolve, verify and strictly load its official checkpoint.

    `weights` replaces the official file by a local one of the same architecture (not hash-checked).
    Raises UsageError (unknown option, scale without weights) and WeightsError.
    """
    if kw:
        raise UsageError(f"{name}: unknown option(s) {', '.join(sorted(kw))}; known: tile, weights")
    model = zoo_model(name)
    ck = checkpoint_for(name, scale)
    path = Path(weights) if weights is not None else checkpoint_path(ck)
    if weights is not None and not path.is_file():
        raise WeightsError(f"weights file {path} not found; give the path of a {name} checkpoint")
    dev = resolve_device(device)
    net = build_net(model, scale, path)
    if dev == "cpu":
        pin_pointwise_convs(net)  # the same 1x1 conv kernel at every thread count: see its docstring
    cls = ZooYMethod if model.channels == "y" else ZooMethod
    return cls(model, ck, net, scale=scale, device=dev, tile=tile, path=path)
