"""Builds small synthetic run folders (CSVs, env/config JSON, saved SR PNGs) for the report tests."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

METHODS = ("bicubic", "srcnn", "fsrcnn")
NOISE = {"bicubic": 14.0, "srcnn": 7.0, "fsrcnn": 6.5}  # per-method error level of the fake SR output
DATASETS = {"set5": 5, "set14": 6}
SCALES = (2, 4)
SIZE = 40
MACS_720P = {"bicubic": float("nan"), "srcnn": 7.49e9, "fsrcnn": 4.63e9}


def synthetic_hr(dataset: str, image: str, scale: int) -> np.ndarray:
    """A deterministic textured HR image (SIZExSIZEx3 uint8 RGB), modcropped to `scale`."""
    seed = sum(map(ord, f"{dataset}/{image}"))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    base = 128 + 60 * np.sin(xx / (3 + seed % 5)) * np.cos(yy / 4) + rng.normal(0, 10, (SIZE, SIZE))
    rgb = np.stack([base, base * 0.8 + 30, 255 - base], axis=-1)
    hr = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    return hr[: SIZE - SIZE % scale, : SIZE - SIZE % scale]


def fake_sr(hr: np.ndarray, method: str, dataset: str, image: str, scale: int) -> np.ndarray:
    """HR plus method-dependent noise; fsrcnn also gets a strong artefact in one known window."""
    seed = sum(map(ord, f"{method}/{dataset}/{image}/{scale}"))
    rng = np.random.default_rng(seed)
    sr = hr.astype(np.float64) + rng.normal(0, NOISE[method] * scale / 2, hr.shape)
    if method == "fsrcnn":
        sr[22:30, 6:14] = 255 - sr[22:30, 6:14]  # the region where the methods differ most
    return np.clip(np.round(sr), 0, 255).astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _write_summary(run: Path, quality: pd.DataFrame, protocol: str) -> None:
    """summary.csv from quality.csv: mean PSNR/SSIM of the rows that scored, and the failures per cell."""
    ok = quality[quality["status"] == "ok"]
    summary = (
        ok.groupby(["method", "dataset", "scale"], sort=False)
        .agg(psnr=("psnr", "mean"), ssim=("ssim", "mean"), n_images=("psnr", "size"))
        .reset_index()
    )
    failed = quality[quality["status"] != "ok"].groupby(["method", "dataset", "scale"]).size()
    summary["n_failed"] = [
        int(failed.get((m, d, s), 0))
        for m, d, s in zip(summary["method"], summary["dataset"], summary["scale"], strict=True)
    ]
    summary["protocol"] = protocol
    summary.to_csv(run / "summary.csv", index=False)


def make_run(
    root: Path,
    *,
    with_latency: bool = True,
    with_methods: bool = True,
    with_images: bool = True,
    failure: bool = False,
    protocol: str = "paper",
) -> Path:
    """Write a run folder under `root` and return its path. Scores are PSNR of the saved PNGs (RGB)."""
    run = root / "run"
    run.mkdir(parents=True)
    rows = []
    for dataset, n in DATASETS.items():
        for scale in SCALES:
            for i in range(n):
                image = f"img{i}"
                hr = synthetic_hr(dataset, image, scale)
                for method in METHODS:
                    row = {
                        "method": method,
                        "dataset": dataset,
                        "scale": scale,
                        "image": image,
                        "channel": "y",
                        "shave": scale,
                        "degradation": "bicubic",
                        "protocol": protocol,
                    }
                    if failure and (method, dataset, scale, i) == ("fsrcnn", "set14", 4, 2):
                        rows.append(
                            row
                            | {
                                "psnr": math.nan,
                                "ssim": math.nan,
                                "status": "failed",
                                "error": "MethodError: out of memory on a 40x40 image",
                            }
                        )
                        continue
                    sr = fake_sr(hr, method, dataset, image, scale)
                    if with_images:
                        out = run / "images" / method / dataset / f"x{scale}" / f"{image}.png"
                        out.parent.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(sr).save(out)
                    psnr = _psnr(sr, hr)
                    rows.append(row | {"psnr": psnr, "ssim": 1 - 1 / psnr, "status": "ok", "error": ""})
    quality = pd.DataFrame(rows)
    quality.to_csv(run / "quality.csv", index=False)
    _write_summary(run, quality, protocol)
    if with_latency:
        lat = []
        for scale in SCALES:
            for j, method in enumerate(METHODS):
                for h in (64, 128):
                    median = (0.5 + 3 * j) * (h / 64) ** 2 / scale
                    lat.append(
                        {
                            "method": method,
                            "scale": scale,
                            "device": "cpu",
                            "device_name": "Fake CPU",
                            "input_h": h,
                            "input_w": h,
                            "output_h": h * scale,
                            "output_w": h * scale,
                            "rounds": 30,
                            "median_ms": median,
                            "iqr_ms": median / 20,
                            "min_ms": median * 0.9,
                            "mpix_per_s": (h * scale) ** 2 / 1e6 / (median / 1e3),
                            "gflops": 2 * MACS_720P[method] * (h * scale) ** 2 / (1280 * 720) / median / 1e6,
                            "peak_mem_mb": 12.5,
                            "threads": 2,
                            "dtype": "float32",
                            "batch": 1,
                        }
                    )
        pd.DataFrame(lat).to_csv(run / "latency.csv", index=False)
    if with_methods:
        info = [
            {
                "name": m,
                "scale": s,
                "device": "cpu",
                "params": [0, 8129, 12464][j],
                "macs_720p": MACS_720P[m],
                "weights": None,
                "weights_sha256": None,
                "channels": ["rgb", "y", "y"][j],
                "deterministic": True,
            }
            for s in SCALES
            for j, m in enumerate(METHODS)
        ]
        pd.DataFrame(info).to_csv(run / "methods.csv", index=False)
    (run / "env.json").write_text(
        json.dumps(
            {
                "date": "2026-11-24T03:00:00Z",
                "git_commit": "0123456789abcdef0123456789abcdef01234567",
                "python": "3.11.2",
                "torch": "2.13.0+cpu",
                "numpy": "2.4.6",
                "platform": "Linux-x86_64",
                "cpu": "Fake CPU @ 2.0GHz",
                "gpu": None,
                "torch_threads": 2,
                "matmul_gflops": 51.3,
            }
        )
    )
    (run / "config.json").write_text(
        json.dumps(
            {
                "command": "python -m bench run --methods bicubic,srcnn,fsrcnn --datasets set5,set14 --scales 2,4",
                "methods": list(METHODS),
                "datasets": list(DATASETS),
                "scales": list(SCALES),
                "passes": ["quality", "latency"],
                "protocol": protocol,
                "device": "cpu",
            }
        )
    )
    return run


@dataclass(frozen=True)
class ExtraMethod:
    """A method added to a synthetic run with chosen numbers.

    `psnr`: its mean PSNR in every (dataset, scale) column, unless `psnr_at[(dataset, scale)]` says
    otherwise; `params`/`macs_720p` per scale (None: not in methods.csv); `group` becomes
    methods.csv's `extra_group` (None: left to the registry); `ms_720p`: latency.csv median per
    1280x720 output (None: not measured).
    """

    name: str
    psnr: float
    params: int | None = None
    group: str | None = None
    training_data: str | None = None
    macs_720p: float | None = None
    ms_720p: float | None = None
    psnr_at: dict[tuple[str, int], float] = field(default_factory=dict)


def _extra_quality(method: ExtraMethod, protocol: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for dataset, n in DATASETS.items():
        for scale in SCALES:
            target = method.psnr_at.get((dataset, scale), method.psnr)
            offsets = np.linspace(-0.2, 0.2, n)  # symmetric: the mean is the target
            for i, offset in enumerate(offsets):
                psnr = target + float(offset)
                rows.append({"method": method.name, "dataset": dataset, "scale": scale, "image": f"img{i}",
                             "channel": "y", "shave": scale, "degradation": "bicubic", "protocol": protocol,
                             "psnr": psnr, "ssim": 1 - 1 / psnr, "status": "ok", "error": ""})  # fmt: skip
    return rows


def _extra_latency(method: ExtraMethod) -> list[dict[str, object]]:
    if method.ms_720p is None:
        return []
    rows: list[dict[str, object]] = []
    for scale in SCALES:
        h, w = math.ceil(720 / scale), math.ceil(1280 / scale)
        macs = method.macs_720p or math.nan
        rows.append({"method": method.name, "scale": scale, "device": "cpu", "device_name": "Fake CPU",
                     "input_h": h, "input_w": w, "output_h": h * scale, "output_w": w * scale, "batch": 1,
                     "rounds": 10, "median_ms": method.ms_720p, "iqr_ms": method.ms_720p / 20,
                     "mpix_per_s": 0.9216 / (method.ms_720p / 1e3),
                     "gflops": 2 * macs / (method.ms_720p / 1e3) / 1e9})  # fmt: skip
    return rows


def add_methods(run: Path, methods: list[ExtraMethod], *, order: list[str] | None = None) -> None:
    """Append `methods` to the run folder's quality, summary, methods and latency CSVs and config.json.

    `order`: the run's method order in config.json (default: the existing one, then the new methods).
    """
    quality = pd.read_csv(run / "quality.csv", dtype={"error": str})
    protocol = str(quality["protocol"].iloc[0])
    extra = [row for m in methods for row in _extra_quality(m, protocol)]
    quality = pd.concat([quality, pd.DataFrame(extra)], ignore_index=True)
    quality.to_csv(run / "quality.csv", index=False)
    _write_summary(run, quality, protocol)
    info = [
        {"name": m.name, "scale": s, "device": "cpu", "params": m.params, "macs_720p": m.macs_720p,
         "channels": "rgb", "deterministic": True, "extra_group": m.group, "extra_training_data": m.training_data}
        for m in methods if m.params is not None for s in SCALES
    ]  # fmt: skip
    if (run / "methods.csv").is_file():
        info_frame = pd.concat([pd.read_csv(run / "methods.csv"), pd.DataFrame(info)], ignore_index=True)
        info_frame.to_csv(run / "methods.csv", index=False)
    lat = [row for m in methods for row in _extra_latency(m)]
    if (run / "latency.csv").is_file() and lat:
        lat_frame = pd.concat([pd.read_csv(run / "latency.csv"), pd.DataFrame(lat)], ignore_index=True)
        lat_frame.to_csv(run / "latency.csv", index=False)
    config = json.loads((run / "config.json").read_text())
    config["methods"] = order or [*config["methods"], *(m.name for m in methods)]
    (run / "config.json").write_text(json.dumps(config))
