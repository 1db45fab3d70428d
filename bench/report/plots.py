"""The report's figures (matplotlib, Agg backend): quality vs latency, gain over bicubic, visual crops."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.artist
import matplotlib.colors
import matplotlib.lines
import matplotlib.patches
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.report.rundata import Run, dataset_label

__all__ = [
    "DPI",
    "Panel",
    "method_colors",
    "group_colors",
    "pareto_front",
    "plot_psnr_vs_latency",
    "plot_psnr_vs_params",
    "plot_gain_over_bicubic",
    "plot_visual_comparison",
]

DPI = 150
_DEVICE_MARKERS = ("o", "s", "^", "D", "v", "P")


def _figure(width: float, height: float) -> Figure:
    # A bare Figure renders with Agg on savefig and never touches pyplot's global state, so
    # writing a report changes nothing for a caller who uses matplotlib interactively.
    return Figure(figsize=(width, height), layout="constrained")


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, by position in the run's method order, the same in every figure."""
    cmap = "tab10" if len(methods) <= 10 else "tab20"  # tab10 would repeat colours past ten methods
    palette = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps[cmap].colors]  # type: ignore[attr-defined]
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def group_colors(labels: Sequence[str]) -> dict[str, str]:
    """One colour per method group, by position (classical grey, trained blue, published red, ...)."""
    palette = ("#7f7f7f", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
    return {g: palette[i % len(palette)] for i, g in enumerate(dict.fromkeys(labels))}


def pareto_front(times: Sequence[float], psnrs: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both speed (lower time) and PSNR, fastest first."""
    order = sorted(range(len(times)), key=lambda i: (times[i], -psnrs[i]))
    front, best = [], -math.inf
    for i in order:
        if psnrs[i] > best:
            front.append(i)
            best = psnrs[i]
    return front


def _grid(n_rows: int, n_cols: int, width: float = 3.6, height: float = 2.9) -> tuple[Figure, np.ndarray]:
    fig = _figure(width * n_cols + 0.6, height * n_rows + 0.5)
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def _log_ticks(ax, fmt: Callable[[float], str]) -> None:  # type: ignore[no-untyped-def]
    """Readable ticks on a log x axis: 1-2-5 steps labelled by `fmt`, at least three labels."""
    from matplotlib import ticker

    lo, hi = ax.get_xlim()
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = [m * 10.0**e for e in decades for m in (1, 2, 5) if lo <= m * 10.0**e <= hi]
    if len(ticks) < 3:  # less than a decade shown: evenly spaced in log, 2 significant digits
        ticks = sorted({float(f"{t:.2g}") for t in np.geomspace(lo, hi, 6)[1:-1]})
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: fmt(v)))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _latency_per_method(latency: pd.DataFrame) -> pd.DataFrame:
    """One latency row per (method, scale, device): the largest measured output size."""
    lat = latency.copy()
    if {"output_h", "output_w"} <= set(lat.columns):
        lat["_pix"] = lat["output_h"].fillna(0) * lat["output_w"].fillna(0)
    else:
        lat["_pix"] = 0
    lat = lat.sort_values("_pix", kind="stable")
    return lat.groupby(["method", "scale", "device"], sort=False).tail(1)


@dataclass(frozen=True)
class _Style:
    """How one Pareto figure reads: x-axis label and tick format; each method's group and its colour."""

    x_label: str
    tick: Callable[[float], str]
    groups: dict[str, str]  # method -> group label
    palette: dict[str, str]  # group label -> colour

    def color(self, method: str) -> str:
        return self.palette.get(self.groups.get(method, ""), "k")


def _draw_points(ax, pts: pd.DataFrame, marker: str, style: _Style) -> None:  # type: ignore[no-untyped-def]
    """Positive-x points as markers with names; x = 0 (no parameters) as a dotted horizontal line."""
    for k, (_, p) in enumerate(pts.sort_values("x").iterrows()):
        if p["x"] <= 0:
            ax.axhline(p["psnr"], color=style.color(p["method"]), linestyle=":", linewidth=1, zorder=1)
            ax.annotate(
                f"{p['method']} (0)",
                (0.01, p["psnr"]),
                xycoords=("axes fraction", "data"),
                xytext=(0, 2),
                textcoords="offset points",
                fontsize=6.5,
                color="#333333",
            )
            continue
        ax.scatter(
            p["x"], p["psnr"], color=style.color(p["method"]), marker=marker, s=36, zorder=3,
            edgecolor="white", linewidth=0.6,
        )  # fmt: skip
        ax.annotate(
            p["method"],
            (p["x"], p["psnr"]),
            xytext=(4, 3 if k % 2 == 0 else -9),  # alternate above/below: neighbours in x overlap less
            textcoords="offset points",
            fontsize=6.5,
            color="#333333",
        )


def _draw_front(ax, pts: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    x, y = pts["x"].to_numpy(float), pts["psnr"].to_numpy(float)
    front = [i for i in pareto_front(list(x), list(y)) if x[i] > 0]  # x = 0 is the dotted line already
    if len(front) > 1:
        ax.step(x[front], y[front], where="post", color="#888888", linestyle="--", linewidth=1, zorder=2)


def _panel(ax, merged: pd.DataFrame, devices: list[str], style: _Style) -> None:  # type: ignore[no-untyped-def]
    """One (dataset, scale) panel: points per device and each device's Pareto front."""
    for d_index, device in enumerate(devices):
        pts = merged[merged["device"] == device]
        _draw_points(ax, pts, _DEVICE_MARKERS[d_index % len(_DEVICE_MARKERS)], style)
        if len(pts) > 1:
            _draw_front(ax, pts)
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.25)
    ax.tick_params(labelsize=8)
    ax.margins(x=0.25, y=0.12)
    if (merged["x"] > 0).any():
        _log_ticks(ax, style.tick)


def _legend(fig: Figure, devices: list[str], style: _Style, methods: set[str]) -> None:
    """Groups of the plotted `methods`, the device markers (when several) and the front."""
    shown = {style.groups.get(m, "") for m in methods}
    handles: list[matplotlib.artist.Artist] = [
        matplotlib.patches.Patch(color=c, label=g) for g, c in style.palette.items() if g in shown
    ]
    if len(devices) > 1:
        handles += [
            matplotlib.lines.Line2D(
                [],
                [],
                marker=_DEVICE_MARKERS[i % len(_DEVICE_MARKERS)],
                color="#555555",
                linestyle="",
                label=d,
            )
            for i, d in enumerate(devices)
        ]
    handles.append(matplotlib.lines.Line2D([], [], color="#888888", linestyle="--", label="Pareto front"))
    fig.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8, frameon=False
    )


def _pareto_figure(run: Run, points: pd.DataFrame, style: _Style, path: Path) -> bool:
    """PSNR (summary.csv) against `points` (method, scale, device, x), one panel per (dataset, scale);
    writes `path` and returns True, or False when no point matches a quality result."""
    columns = run.columns
    datasets = list(dict.fromkeys(d for d, _ in columns))
    scales = list(dict.fromkeys(s for _, s in columns))
    devices = list(dict.fromkeys(points["device"]))
    fig, axes = _grid(len(datasets), len(scales), width=4.8, height=3.7)
    plotted: set[str] = set()
    for r, dataset in enumerate(datasets):
        for c, scale in enumerate(scales):
            ax = axes[r][c]
            q = run.summary[(run.summary["dataset"] == dataset) & (run.summary["scale"] == scale)]
            merged = q.merge(points[points["scale"] == scale], on=["method", "scale"])
            merged = merged[np.isfinite(merged["psnr"])]
            _panel(ax, merged, devices, style)
            plotted |= set(merged["method"])
            ax.set_title(f"{dataset_label(dataset)} ×{scale}", fontsize=10)
            if r == len(datasets) - 1:
                ax.set_xlabel(style.x_label, fontsize=8)
            if c == 0:
                ax.set_ylabel("PSNR (dB)", fontsize=8)
    if not plotted:
        return False
    _legend(fig, devices, style, plotted)
    fig.savefig(path, dpi=DPI)
    return True


def _style(groups: dict[str, str], x_label: str, tick: Callable[[float], str]) -> _Style:
    return _Style(x_label, tick, groups, group_colors(list(groups.values())))


def _count_tick(value: float) -> str:
    """Axis ticks for counts: 500, 5K, 20K, 1M."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    return f"{value / 1e3:g}K" if value >= 1e3 else f"{value:g}"


def plot_psnr_vs_latency(run: Run, groups: dict[str, str], path: Path) -> str | None:
    """PSNR (summary.csv) vs median latency (log), one panel per (dataset, scale), Pareto front per device.

    `groups`: method -> group label (colours and legend). Latency is that of the largest output
    measured per method and device; a method without latency is absent. Returns a note when there
    is nothing to plot, else None after writing `path`.
    """
    if run.latency is None or run.latency.empty:
        return "No latency.csv in this run, so no quality-vs-speed plot: run with '--pass latency'."
    lat = _latency_per_method(run.latency)
    lat = lat[lat["median_ms"] > 0]
    points = pd.DataFrame(
        {
            "method": lat["method"],
            "scale": lat["scale"],
            "device": lat["device"].astype(str),
            "x": lat["median_ms"].astype(float),
        }
    )
    if not _pareto_figure(run, points, _style(groups, "median latency (ms, log)", lambda v: f"{v:g}"), path):
        return "latency.csv has no rows matching the quality results, so no quality-vs-speed plot."
    return None


def plot_psnr_vs_params(run: Run, groups: dict[str, str], path: Path) -> str | None:
    """PSNR (summary.csv) vs parameter count (methods.csv, log), one panel per (dataset, scale).

    Parameter-free methods (interpolation) are dotted horizontal lines. Returns a note when there is
    nothing to plot, else None after writing `path`.
    """
    info = [(m, s, float(r["params"])) for (m, s), r in run.method_info.items() if pd.notna(r.get("params"))]
    if not info:
        return "No parameter counts (methods.csv) in this run, so no quality-vs-size plot."
    points = pd.DataFrame(info, columns=["method", "scale", "x"]).assign(device="")
    if not _pareto_figure(run, points, _style(groups, "parameters (log)", _count_tick), path):
        return "methods.csv has no rows matching the quality results, so no quality-vs-size plot."
    return None


def plot_gain_over_bicubic(
    run: Run, colors: dict[str, str], path: Path, baseline: str = "bicubic"
) -> str | None:
    """Per-image PSNR gain over `baseline` (box + points) per method, one panel per (dataset, scale).

    Returns a note when the run has no `baseline` or no other method, else None after writing `path`.
    """
    q = run.ok_quality
    if baseline not in set(q["method"]):
        return f"No '{baseline}' results in this run, so no per-image gain plot (add --methods {baseline})."
    others = [m for m in run.method_order if m != baseline]
    if not others:
        return f"Only '{baseline}' in this run: nothing to compare with it."
    columns = run.columns
    datasets = list(dict.fromkeys(d for d, _ in columns))
    scales = list(dict.fromkeys(s for _, s in columns))
    fig, axes = _grid(len(datasets), len(scales), width=max(3.0, 0.65 * len(others) + 1.4))
    rng = np.random.default_rng(0)  # jitter only; fixed so figures are reproducible
    for r, dataset in enumerate(datasets):
        for c, scale in enumerate(scales):
            ax = axes[r][c]
            here = q[(q["dataset"] == dataset) & (q["scale"] == scale)]
            base = here[here["method"] == baseline].set_index("image")["psnr"]
            gains, labels = [], []
            for method in others:
                mine = here[here["method"] == method].set_index("image")["psnr"]
                common = mine.index.intersection(base.index)
                g = (mine.loc[common] - base.loc[common]).to_numpy(float)
                gains.append(g[np.isfinite(g)])
                labels.append(method)
            positions = np.arange(len(others))
            nonempty = [i for i, g in enumerate(gains) if len(g)]
            if nonempty:
                ax.boxplot(
                    [gains[i] for i in nonempty],
                    positions=positions[nonempty],
                    widths=0.55,
                    showfliers=False,
                    medianprops={"color": "#333333"},
                    boxprops={"color": "#aaaaaa"},
                    whiskerprops={"color": "#aaaaaa"},
                    capprops={"color": "#aaaaaa"},
                )
            for i, (method, g) in enumerate(zip(others, gains, strict=True)):
                ax.scatter(
                    i + rng.uniform(-0.15, 0.15, len(g)),
                    g,
                    color=colors.get(method, "k"),
                    s=16,
                    zorder=3,
                    alpha=0.9,
                    edgecolor="white",
                    linewidth=0.4,
                )
            ax.axhline(0, color="#555555", linewidth=0.8)
            ax.set_xticks(
                positions,
                labels,
                rotation=30 if len(others) > 3 else 0,
                ha="right" if len(others) > 3 else "center",
                fontsize=8,
            )
            ax.set_title(f"{dataset_label(dataset)} ×{scale}", fontsize=10)
            ax.tick_params(axis="y", labelsize=8)
            ax.grid(True, axis="y", alpha=0.25)
            if c == 0:
                ax.set_ylabel(f"PSNR gain over {baseline} (dB)", fontsize=8)
    fig.savefig(path, dpi=DPI)
    return None


@dataclass(frozen=True)
class Panel:
    """One tile of the visual comparison: `image` an hxwx3 uint8 RGB crop, `label` and `caption` under it."""

    label: str
    image: np.ndarray
    caption: str = ""
    color: str = "#333333"


def plot_visual_comparison(
    hr: np.ndarray, box: tuple[int, int, int], panels: Sequence[Panel], path: Path, title: str
) -> None:
    """Full HR image with the crop box, then the same crop from HR and each method, side by side.

    `hr`: HxWx3 uint8 RGB; `box`: (y, x, size) in HR pixels; `panels`: crops in display order.
    """
    y, x, size = box
    per_row = min(len(panels) + 1, 6)
    n_rows = math.ceil((len(panels) + 1) / per_row)
    fig = _figure(2.2 * per_row, 2.55 * n_rows + 0.3)
    axes = fig.subplots(n_rows, per_row, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    ax = axes[0][0]
    ax.imshow(hr, interpolation="lanczos")
    ax.add_patch(
        matplotlib.patches.Rectangle(
            (x - 0.5, y - 0.5), size, size, fill=False, edgecolor="#ff2222", linewidth=1.5
        )
    )
    ax.set_title("HR (full)", fontsize=8)
    for i, panel in enumerate(panels, start=1):
        ax = axes[i // per_row][i % per_row]
        ax.imshow(panel.image, interpolation="nearest")  # nearest: show the pixels, not a smoothed version
        ax.set_title(panel.label, fontsize=9, color=panel.color, fontweight="bold")
        ax.text(0.5, -0.04, panel.caption, transform=ax.transAxes, ha="center", va="top", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=DPI)
