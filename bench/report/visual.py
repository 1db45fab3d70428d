"""Visual comparison: find the saved SR outputs, pick the crop where methods differ most, draw it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.errors import BenchError, DataError, UsageError
from bench.report.plots import Panel, plot_visual_comparison
from bench.report.rundata import Run, dataset_label
from bench.report.tables import fmt_psnr, fmt_ssim
from bench.store import sr_image_path

__all__ = [
    "CropSpec",
    "FigureRef",
    "HrLoader",
    "parse_crop",
    "default_hr_loader",
    "sr_image_path",
    "disagreement_map",
    "choose_crop",
    "check_crop",
    "visual_comparisons",
]

DEFAULT_CROP = 64  # HR pixels: big enough to show texture, small enough that pixels are visible
MAX_CANDIDATES = 20  # images examined per (dataset, scale) when choosing what to show

HrLoader = Callable[[str, str, int], np.ndarray]
"""(dataset, image, scale) -> modcropped HR image, HxWx3 uint8 RGB."""


@dataclass(frozen=True)
class FigureRef:
    """A figure written into the run folder: `path` a PNG, `title` and `caption` for the report."""

    path: Path
    title: str
    caption: str = ""


@dataclass(frozen=True)
class CropSpec:
    """A requested crop: image and scale, top-left `y`, `x` in HR pixels (None: choose) and `size`."""

    dataset: str
    image: str
    scale: int
    y: int | None = None
    x: int | None = None
    size: int = DEFAULT_CROP


_CROP_HELP = (
    "expected DATASET/IMAGE/xSCALE[@Y,X[,SIZE]] (e.g. 'set5/baby/x4' or 'set5/baby/x4@120,80,48'), "
    "or DATASET,IMAGE,SCALE[,Y,X[,SIZE]]"
)


def parse_crop(text: str) -> CropSpec:
    """Parse a `--crop` value; raises UsageError naming the expected forms.

    `DATASET/IMAGE/xS` (window chosen automatically) or `DATASET/IMAGE/xS@Y,X[,SIZE]` (top-left
    Y, X and SIZE in HR pixels); the same as one comma-separated list is accepted too.
    """
    if "/" in text:
        where, _, window = text.partition("@")
        parts = [p.strip() for p in where.split("/")]
        if len(parts) != 3:
            raise UsageError(f"--crop {text!r}: {_CROP_HELP}")
        parts += [p.strip() for p in window.split(",")] if window else []
    else:
        parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (3, 5, 6) or not all(parts):
        raise UsageError(f"--crop {text!r}: {_CROP_HELP}")
    try:
        numbers = [int(p.lower().lstrip("x")) if i == 0 else int(p) for i, p in enumerate(parts[2:])]
    except ValueError as exc:
        raise UsageError(f"--crop {text!r}: SCALE, Y, X and SIZE must be integers ({exc})") from None
    scale, *rest = numbers
    y, x = (rest[0], rest[1]) if len(rest) >= 2 else (None, None)
    size = rest[2] if len(rest) == 3 else DEFAULT_CROP
    if scale < 1 or size < 4 or (y is not None and (y < 0 or x is None or x < 0)):
        raise UsageError(f"--crop {text!r}: need SCALE >= 1, Y and X >= 0, SIZE >= 4")
    return CropSpec(parts[0], parts[1], scale, y, x, size)


def default_hr_loader(dataset: str, image: str, scale: int) -> np.ndarray:
    """HR image from the data layer (`bench.data`), modcropped: HxWx3 uint8 RGB. Raises DataError."""
    return _hr_from(dataset, dataset, image, scale)


def run_hr_loader(run: Run) -> HrLoader:
    """The HR loader of a run: each dataset is read where the run found it (config.json records the
    folder), never from whatever folder of that name the working directory holds."""
    resolved = run.config.get("datasets_resolved", {})

    def load(dataset: str, image: str, scale: int) -> np.ndarray:
        entry = resolved.get(dataset) if isinstance(resolved, dict) else None
        if isinstance(entry, dict) and entry.get("origin") == "folder" and entry.get("root"):
            return _hr_from(str(entry["root"]), dataset, image, scale)
        return _hr_from(dataset, dataset, image, scale)

    return load


def _hr_from(source: str, dataset: str, image: str, scale: int) -> np.ndarray:
    from bench import data  # lazy: the report itself never needs the data layer unless it draws crops

    for sample in data.open_dataset(source).images():
        if image in (sample.name, Path(sample.name).stem):
            return np.asarray(data.modcrop(sample.rgb, scale))
    raise DataError(f"image {image!r} is not in dataset {dataset!r} ({source}): cannot draw its crop")


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _luma(img: np.ndarray) -> np.ndarray:
    rgb = img.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def disagreement_map(srs: list[np.ndarray], hr: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel disagreement (HxW float64): std of luma across methods' HxWx3 outputs.

    With a single method there is nothing to disagree with, so its absolute error against `hr`.
    """
    if len(srs) >= 2:
        return np.std(np.stack([_luma(s) for s in srs]), axis=0)
    if len(srs) == 1 and hr is not None:
        return np.abs(_luma(srs[0]) - _luma(hr))
    raise UsageError("disagreement_map needs two SR images, or one and the HR image")


def choose_crop(disagreement: np.ndarray, size: int, margin: int = 0) -> tuple[int, int, float]:
    """Top-left (y, x) of the `size`x`size` window with the largest mean disagreement, and that mean.

    `margin` pixels at each border are excluded (the shaved border is not scored either).
    """
    h, w = disagreement.shape
    margin = max(0, min(margin, (h - size) // 2, (w - size) // 2))
    d = disagreement[margin : h - margin, margin : w - margin]
    size = min(size, d.shape[0], d.shape[1])
    s = np.zeros((d.shape[0] + 1, d.shape[1] + 1))
    s[1:, 1:] = np.cumsum(np.cumsum(d, axis=0), axis=1)  # summed-area table: every window sum in O(1)
    sums = s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y) + margin, int(x) + margin, float(sums[y, x]) / (size * size)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _saved_methods(run: Run, dataset: str, scale: int, image: str) -> list[str]:
    return [m for m in run.method_order if sr_image_path(run.path, m, dataset, scale, image).is_file()]


def _draw(
    run: Run,
    colors: dict[str, str],
    fig_dir: Path,
    dataset: str,
    scale: int,
    image: str,
    hr: np.ndarray,
    srs: dict[str, np.ndarray],
    box: tuple[int, int, int],
    chosen: str,
) -> FigureRef:
    y, x, size = box
    scores = run.ok_quality
    scores = scores[(scores["dataset"] == dataset) & (scores["scale"] == scale) & (scores["image"] == image)]
    by_method = scores.set_index("method")
    panels = [Panel("HR", hr[y : y + size, x : x + size], "PSNR (dB) / SSIM")]
    for method, sr in srs.items():
        caption = "not scored"
        if method in by_method.index:
            row = by_method.loc[method]
            caption = f"{fmt_psnr(float(row['psnr']))} dB / {fmt_ssim(float(row['ssim']))}"
        panels.append(Panel(method, sr[y : y + size, x : x + size], caption, colors.get(method, "#333333")))
    title = f"{dataset_label(dataset)} ×{scale}, {image}: {size}×{size} crop at (y={y}, x={x}), {chosen}"
    path = fig_dir / f"visual_{_safe(dataset)}_x{scale}_{_safe(Path(image).stem)}.png"
    plot_visual_comparison(hr, box, panels, path, title)
    caption = (
        f"{dataset_label(dataset)} ×{scale}, image {image}: the same {size}×{size} HR-pixel crop ({chosen}) "
        "from HR and each method, shown with nearest-neighbour zoom; under each, that method's "
        "whole-image PSNR / SSIM from quality.csv."
    )
    return FigureRef(path, f"Visual comparison: {dataset_label(dataset)} ×{scale}, {image}", caption)


def _load(
    run: Run, dataset: str, scale: int, image: str, hr_loader: HrLoader
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    hr = np.asarray(hr_loader(dataset, image, scale))
    if hr.ndim == 2:
        hr = np.repeat(hr[..., None], 3, axis=2)
    srs = {}
    for method in _saved_methods(run, dataset, scale, image):
        sr = _read_rgb(sr_image_path(run.path, method, dataset, scale, image))
        if sr.shape != hr.shape:
            raise DataError(
                f"{method}'s saved output for {dataset}/{image} x{scale} is {sr.shape[1]}x{sr.shape[0]}, "
                f"the HR image {hr.shape[1]}x{hr.shape[0]}: the run folder and the dataset do not match"
            )
        srs[method] = sr
    return hr, srs


def check_crop(run: Run, crop: CropSpec) -> None:
    """Raise UsageError unless the run saved SR images for the requested crop's image."""
    if not _saved_methods(run, crop.dataset, crop.scale, crop.image):
        saved = sorted(
            {
                f"{p.parent.parent.name}/{p.stem}/{p.parent.name}"
                for p in (run.path / "images").glob("*/*/x*/*.png")
            }
        )
        hint = f"saved: {', '.join(saved[:8])}{' ...' if len(saved) > 8 else ''}" if saved else "none saved"
        raise UsageError(
            f"--crop: no saved SR images for {crop.dataset}/{crop.image} x{crop.scale} under "
            f"{run.path / 'images'} ({hint}); pick one of those, or re-run with --save-images all"
        )


def _requested_crop(
    run: Run, colors: dict[str, str], fig_dir: Path, crop: CropSpec, loader: HrLoader
) -> FigureRef:
    """The figure `--crop` asked for: that image, at the given window or the one chosen automatically."""
    check_crop(run, crop)
    try:
        hr, srs = _load(run, crop.dataset, crop.scale, crop.image, loader)
    except BenchError:
        raise
    except Exception as exc:  # the loader is user-supplied: report any failure as one line
        raise DataError(f"cannot load HR {crop.dataset}/{crop.image} for --crop: {exc}") from exc
    size = min(crop.size, hr.shape[0], hr.shape[1])
    if crop.y is None or crop.x is None:
        y, x, _ = choose_crop(disagreement_map(list(srs.values()), hr), size, margin=crop.scale)
        chosen = "chosen where the methods differ most"
    else:
        if crop.y + size > hr.shape[0] or crop.x + size > hr.shape[1]:
            raise UsageError(
                f"--crop window y={crop.y}, x={crop.x}, size={size} does not fit the "
                f"{hr.shape[1]}x{hr.shape[0]} HR image"
            )
        y, x, chosen = crop.y, crop.x, "as requested"
    return _draw(run, colors, fig_dir, crop.dataset, crop.scale, crop.image, hr, srs, (y, x, size), chosen)


def visual_comparisons(
    run: Run,
    colors: dict[str, str],
    fig_dir: Path,
    *,
    crop: CropSpec | None = None,
    hr_loader: HrLoader | None = None,
    max_figures: int = 6,
) -> tuple[list[FigureRef], list[str]]:
    """Draw visual comparison figures into `fig_dir`; returns (figures, notes on what was skipped).

    Without `crop`: one figure per (dataset, scale) that has saved SR images (up to `max_figures`),
    showing the image and window where the methods' outputs differ most. With `crop`: that image,
    at the given window (or the chosen one when `crop.y` is None).
    """
    loader = hr_loader or run_hr_loader(run)
    figures: list[FigureRef] = []
    notes: list[str] = []
    if crop is not None:
        return [_requested_crop(run, colors, fig_dir, crop, loader)], notes

    if not (run.path / "images").is_dir():
        notes.append(
            "No SR images saved in this run (images/), so no visual comparison; re-run with --save-images."
        )
        return figures, notes
    for dataset, scale in run.columns:
        if len(figures) >= max_figures:
            break
        images = list(
            dict.fromkeys(
                run.quality[(run.quality["dataset"] == dataset) & (run.quality["scale"] == scale)]["image"]
            )
        )
        saved = [(im, _saved_methods(run, dataset, scale, im)) for im in images]
        saved = [(im, ms) for im, ms in saved if ms]
        if not saved:
            continue
        most = max(len(ms) for _, ms in saved)
        best: tuple[float, str, np.ndarray, dict[str, np.ndarray], tuple[int, int, int]] | None = None
        for image, _ in [s for s in saved if len(s[1]) == most][:MAX_CANDIDATES]:
            try:
                hr, srs = _load(run, dataset, scale, image, loader)
            except Exception as exc:  # one unreadable image must not cost the whole report
                notes.append(f"Visual comparison skipped for {dataset}/{image} x{scale}: {exc}")
                continue
            size = min(DEFAULT_CROP, hr.shape[0] // 2 or hr.shape[0], hr.shape[1] // 2 or hr.shape[1])
            y, x, score = choose_crop(disagreement_map(list(srs.values()), hr), size, margin=scale)
            if best is None or score > best[0]:
                best = (score, image, hr, srs, (y, x, size))
        if best is not None:
            _, image, hr, srs, box = best
            figures.append(
                _draw(
                    run,
                    colors,
                    fig_dir,
                    dataset,
                    scale,
                    image,
                    hr,
                    srs,
                    box,
                    "chosen where the methods differ most",
                )
            )
    if not figures and not notes:
        notes.append(
            "No SR images saved in this run (images/), so no visual comparison; re-run with --save-images."
        )
    return figures, notes
