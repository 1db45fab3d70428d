"""The evaluation core: one method on one sample -> one scored row; `evaluate()` is its in-memory face.

Everything that scores an SR output goes through `infer` + `score_output` (or `measure`, both at
once): the CLI runner (which adds scheduling, the journal and the files), the Python API and the
validation of training runs.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.api import Method, MethodInfo
from bench.data import Dataset, ImageProblem, Sample, open_dataset
from bench.errors import MethodError, UsageError
from bench.metrics import to_uint8
from bench.protocol import Protocol, get_protocol
from bench.registry import create_method, method_scales, resolve_device
from bench.store import QUALITY_COLUMNS, SUMMARY_COLUMNS

__all__ = [
    "evaluate",
    "summarise",
    "as_method",
    "infer",
    "score_output",
    "measure",
    "row_base",
    "big_enough",
    "Measurement",
    "ModuleMethod",
    "CallableMethod",
]


# ----------------------------------------------------------------------------------------- adapters


class CallableMethod:
    """A plain function HxWx3 uint8 RGB -> (H*s)x(W*s)x3 array behind the Method contract."""

    def __init__(self, fn: Callable[[np.ndarray], Any], *, scale: int, name: str | None = None) -> None:
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        self.scale = int(scale)
        self.device = "cpu"

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(lr))

    def info(self) -> MethodInfo:
        return MethodInfo(name=self.name, scale=self.scale, device=self.device, extra={"kind": "callable"})


class ModuleMethod:
    """A `torch.nn.Module` mapping Nx3xhxw RGB to Nx3x(h*s)x(w*s) behind the Method contract.

    The module sees float32 RGB scaled to [0, `input_range`] (1.0: [0, 1]; 255.0: [0, 255]) on `device`,
    under `torch.inference_mode`; its output, divided back, is clipped and rounded by the protocol.
    """

    def __init__(
        self,
        module: Any,
        *,
        scale: int,
        device: str = "cpu",
        input_range: float = 1.0,
        name: str | None = None,
    ) -> None:
        if not input_range > 0:
            raise UsageError(f"input_range must be positive (1.0 or 255.0), got {input_range}")
        self.name = name or type(module).__name__.lower()
        self.scale = int(scale)
        self.device = resolve_device(device)
        self.input_range = float(input_range)
        self.module = module.to(self.device).eval()

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)).permute(2, 0, 1)[None]
        x = x.to(self.device) * (self.input_range / 255.0)
        with torch.inference_mode():
            y = self.module(x)
        if not isinstance(y, torch.Tensor) or y.ndim != 4 or y.shape[1] != 3:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise MethodError(f"{self.name}: the module returned {got}, expected a 1x3xHxW tensor")
        out = y[0].permute(1, 2, 0).float().cpu().numpy().astype(np.float64) * (255.0 / self.input_range)
        return np.ascontiguousarray(out)

    def info(self) -> MethodInfo:
        params = sum(p.numel() for p in self.module.parameters())
        return MethodInfo(
            name=self.name,
            scale=self.scale,
            device=self.device,
            params=int(params),
            extra={"kind": "nn.Module", "input_range": self.input_range},
        )


def _is_torch_module(obj: object) -> bool:
    torch = sys.modules.get("torch")  # a module can only exist if torch was imported: never import it here
    return torch is not None and isinstance(obj, torch.nn.Module)


def as_method(
    obj: Any, *, scale: int, device: str = "cpu", input_range: float = 1.0, name: str | None = None
) -> Method:
    """A Method for `obj`: a registered name, a Method, a `torch.nn.Module` or a numpy callable.

    Raises UsageError for anything else (and for an unknown name).
    """
    if isinstance(obj, str):
        return create_method(obj, scale=scale, device=device)
    if _is_torch_module(obj):
        return ModuleMethod(obj, scale=scale, device=device, input_range=input_range, name=name)
    if isinstance(obj, Method):
        if int(obj.scale) != int(scale):
            raise UsageError(
                f"method {obj.name!r} is built for x{obj.scale}, not x{scale}; build one per scale"
            )
        return obj
    if callable(obj):
        return CallableMethod(obj, scale=scale, name=name)
    raise UsageError(
        f"cannot evaluate a {type(obj).__name__}; pass a method name, a Method, a torch.nn.Module "
        f"or a function HxWx3 uint8 -> (H*s)x(W*s)x3"
    )


# ----------------------------------------------------------------------------------------- one sample


@dataclass(frozen=True)
class Measurement:
    """One scored SR output: `sr` is the uint8 image that was scored (HxWx3, or HxW under legacy-y)."""

    sr: np.ndarray
    psnr: float
    ssim: float
    seconds: float


def check_output(raw: Any, expected: tuple[int, ...]) -> np.ndarray:
    """A method's output as an array, or MethodError when it breaks the contract (dtype, shape, NaN)."""
    arr = np.asarray(raw)
    if arr.dtype.kind not in "uif":
        raise MethodError(f"returned dtype {arr.dtype}, expected uint8 or float")
    if arr.shape != expected:
        raise MethodError(f"returned shape {arr.shape}, expected {expected}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise MethodError("returned NaN or inf values")
    return arr


def infer(method: Any, sample: Sample, protocol: Protocol) -> tuple[Any, tuple[int, ...], float]:
    """Degrade the sample and run the method on it: (raw output, the shape it must have, seconds)."""
    lr = protocol.degrade(sample)
    expected = protocol.output_shape(lr, sample.scale)
    t0 = time.perf_counter()
    raw = protocol.feed(method, lr, sample)
    return raw, expected, time.perf_counter() - t0


def score_output(
    raw: Any, expected: tuple[int, ...], sample: Sample, protocol: Protocol
) -> tuple[np.ndarray, float, float]:
    """Check the contract, round to uint8 (protocol step 3) and score: (sr, PSNR dB, SSIM)."""
    sr = to_uint8(check_output(raw, expected))
    p, q = protocol.score(sr, sample)
    return sr, p, q


def measure(method: Any, sample: Sample, protocol: Protocol) -> Measurement:
    """`infer` then `score_output`. Raises whatever the method raises, and MethodError on a bad output."""
    raw, expected, seconds = infer(method, sample, protocol)
    sr, p, q = score_output(raw, expected, sample, protocol)
    return Measurement(sr, p, q, seconds)


def row_base(method: str, sample: Sample, protocol: Protocol, weights_sha256: str | None) -> dict[str, Any]:
    """The identifying columns of a quality row (everything but the scores and status)."""
    return {
        "method": method, "dataset": sample.dataset, "scale": sample.scale, "image": sample.image,
        "channel": protocol.channel, "shave": protocol.shave_px(sample.scale),
        "degradation": protocol.degradation, "protocol": protocol.name,
        "weights_sha256": weights_sha256 or "", "image_sha256": sample.sha256, "error": "",
    }  # fmt: skip


def big_enough(sample: Sample, protocol: Protocol, ds: Dataset) -> bool:
    """True when the HR image leaves an SSIM window after shaving; otherwise records why in `ds.problems`."""
    need = protocol.min_hr_size(sample.scale)
    h, w = sample.hr.shape[:2]
    if min(h, w) >= need:
        return True
    ds.problems.append(
        ImageProblem(
            ds.name,
            sample.image,
            f"{w}x{h} is too small for x{sample.scale} under this protocol (needs at least {need}x{need}: "
            f"shave {protocol.shave_px(sample.scale)} + SSIM window); skipped",
        )
    )
    return False


def summarise(quality: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean of per-image PSNR/SSIM per (method, dataset, scale): not PSNR of pooled MSE, as papers do.

    Parameters
    ----------
    quality : DataFrame
        Per-image rows as `evaluate` returns them (columns method, dataset, scale, psnr, ssim, status, protocol).
    order : sequence of str, optional
        Method order of the result (default: first appearance).

    Returns
    -------
    DataFrame
        One row per cell: psnr, ssim (NaN when any image failed), n_images, n_failed, protocol, status.

    Raises
    ------
    KeyError
        When a column above is missing.

    Example
    -------
    >>> import pandas as pd, bench
    >>> rows = pd.DataFrame({"method": ["m", "m"], "dataset": ["d", "d"], "scale": [2, 2], "psnr": [30.0, 32.0],
    ...                      "ssim": [0.9, 0.8], "status": ["ok", "ok"], "protocol": ["paper", "paper"]})
    >>> bench.summarise(rows)[["psnr", "n_images"]].to_dict("records")
    [{'psnr': 31.0, 'n_images': 2}]
    """
    if quality.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    rows = []
    for (m, d, s), g in quality.groupby(["method", "dataset", "scale"], sort=False):
        ok = g[g["status"] == "ok"]
        n_failed = int((g["status"] != "ok").sum())
        clean = n_failed == 0 and len(ok) > 0  # a cell with a failed image has no comparable mean
        rows.append({
            "method": m, "dataset": d, "scale": int(s),
            "psnr": float(ok["psnr"].mean()) if clean else math.nan,
            "ssim": float(ok["ssim"].mean()) if clean else math.nan,
            "n_images": int(len(ok)), "n_failed": n_failed, "protocol": g["protocol"].iloc[0],
            "status": "ok" if n_failed == 0 else "failed",
        })  # fmt: skip
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    if order:
        rank = {m: i for i, m in enumerate(order)}
        out = out.sort_values("method", key=lambda c: c.map(rank), kind="stable").reset_index(drop=True)
    return out


# ----------------------------------------------------------------------------------------- evaluate()


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str | Path) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _method_name(obj: Any, taken: set[str]) -> str:
    if isinstance(obj, str):
        name = obj
    elif _is_torch_module(obj):
        name = type(obj).__name__.lower()
    else:
        name = str(getattr(obj, "name", None) or getattr(obj, "__name__", None) or type(obj).__name__)
    base, i = name, 2
    while name in taken:  # two different objects of one class are two rows sets
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


def _cell_rows(method: Any, name: str, ds: Dataset, scale: int, protocol: Protocol) -> list[dict[str, Any]]:
    info = method.info()
    rows = []
    for sample in ds.samples(scale):
        if not big_enough(sample, protocol, ds):
            continue
        m = measure(method, sample, protocol)
        rows.append({**row_base(name, sample, protocol, info.weights_sha256),
                     "psnr": m.psnr, "ssim": m.ssim, "status": "ok", "seconds": m.seconds})  # fmt: skip
    return rows


def evaluate(
    methods: Any,
    datasets: str | Path | Sequence[str | Path] = "set5",
    scales: int | Sequence[int] = (2, 3, 4),
    protocol: str | Protocol = "paper",
    *,
    device: str = "cpu",
    input_range: float = 1.0,
    out: str | Path | None = None,
    summary: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Score super-resolution methods on datasets under a paper protocol, in memory.

    Parameters
    ----------
    methods : name, Method, nn.Module, callable, or a list of them
        Registered names (``"bicubic"``, ``"espcn"``), Method objects (bound to one scale), any
        ``torch.nn.Module`` mapping Nx3xhxw RGB in [0, `input_range`] to Nx3x(h*s)x(w*s), or a function
        HxWx3 uint8 RGB -> (H*s)x(W*s)x3 array. A Method object is used at its own scale only.
    datasets : str, path or list
        Dataset names (``set5``, ``set14``, ``sample``, ...; case-insensitive) or folders of HR images.
    scales : int or list of int
        Upscaling factors.
    protocol : str or Protocol
        ``paper`` (default), ``legacy-y``, ``rgb``, ``ntire``, or a Protocol from `get_protocol`.
    device : str
        ``cpu``, ``cuda`` or ``auto``: where named methods and modules run.
    input_range : float
        Range a ``torch.nn.Module`` expects: 1.0 for [0, 1] (default), 255.0 for [0, 255].
    out : path, optional
        When given, ``quality.csv`` and ``summary.csv`` are written into this folder; nothing else is.
    summary : bool
        Also return the per-cell summary (`summarise` of the rows).

    Returns
    -------
    DataFrame, or (DataFrame, DataFrame) with ``summary=True``
        One row per (method, dataset, scale, image): psnr, ssim, protocol columns, status, seconds.

    Raises
    ------
    UsageError
        Unknown method, dataset or protocol, or an object that is not a method.
    DataError
        A dataset that cannot be had (offline, corrupt files).
    MethodError
        A method that fails or returns an output of the wrong shape, dtype or with NaN.

    Example
    -------
    >>> import bench
    >>> df = bench.evaluate("bicubic", "sample", scales=[4])
    >>> sorted(df.columns[:4]), len(df)
    (['dataset', 'image', 'method', 'scale'], 4)
    >>> bool((df["psnr"] > 20).all())
    True
    """
    proto = get_protocol(protocol)
    scale_list = [int(s) for s in _as_list(scales)]
    objs, taken = _as_list(methods), set[str]()
    names = [_method_name(obj, taken) for obj in objs]
    rows: list[dict[str, Any]] = []
    for ds_name in _as_list(datasets):
        ds = open_dataset(str(ds_name))
        for scale in scale_list:
            for obj, name in zip(objs, names, strict=True):
                if isinstance(obj, Method) and not isinstance(obj, str) and int(obj.scale) != scale:
                    continue  # a built Method answers for its own scale only
                if isinstance(obj, str) and scale not in (method_scales(obj) or (scale,)):
                    continue  # e.g. a published model without official weights at this scale
                method = as_method(obj, scale=scale, device=device, input_range=input_range, name=name)
                rows.extend(_cell_rows(method, name, ds, scale, proto))
    quality = pd.DataFrame(rows, columns=[*QUALITY_COLUMNS, "seconds"])
    quality["psnr"] = pd.to_numeric(quality["psnr"])
    quality["ssim"] = pd.to_numeric(quality["ssim"])
    table = summarise(quality, names)
    if out is not None:
        from bench.store import RunStore

        store = RunStore(out)
        store.create()
        store.write_csv("quality.csv", quality)
        store.write_csv("summary.csv", table)
    return (quality, table) if summary else quality
