"""The report's tables, computed with pandas into a small format-neutral model (Table of Cells)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from bench.report.rundata import Run, dataset_label
from bench.report.stats import ALPHA

__all__ = [
    "Span",
    "Cell",
    "Table",
    "DASH",
    "fmt_psnr",
    "fmt_ssim",
    "fmt_signed",
    "fmt_count",
    "fmt_float",
    "fmt_params",
    "fmt_percent",
    "column_label",
    "is_best",
    "ci_table",
    "leads_table",
    "cost_table",
    "per_image_tables",
    "failures_table",
]

NOT_SIGNIFICANT = "†"
UNTESTABLE = "§"
HAS_FAILURES = "‡"
DASH = "—"


@dataclass(frozen=True)
class Span:
    text: str
    bold: bool = False


@dataclass(frozen=True)
class Cell:
    """One table cell: spans of text, some bold; `title` is a hover note in HTML."""

    spans: tuple[Span, ...]
    title: str = ""
    numeric: bool = False

    @classmethod
    def of(cls, text: object, *, bold: bool = False, title: str = "", numeric: bool = False) -> Cell:
        return cls((Span(str(text), bold),), title, numeric)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.spans)


@dataclass
class Table:
    """Header labels, rows of cells, footnotes (plain text), and optional row groups.

    `sections`: (index of the group's first row, group label), in row order; rendered as a labelled
    row above each group. Empty: one ungrouped body.
    """

    header: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    sections: list[tuple[int, str]] = field(default_factory=list)

    def row_groups(self) -> list[tuple[str, list[list[Cell]]]]:
        """(label, rows) per group in order; one ("", rows) when the table has no sections."""
        if not self.sections:
            return [("", self.rows)]
        starts = [i for i, _ in self.sections] + [len(self.rows)]
        return [(label, self.rows[i : starts[k + 1]]) for k, (i, label) in enumerate(self.sections)]


def fmt_psnr(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def fmt_ssim(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{digits}f}"


def fmt_signed(value: float, digits: int) -> str:
    if not math.isfinite(value):
        return DASH
    text = f"{value:+.{digits}f}"
    return text.replace("-", "−")  # a real minus sign: '-' and '+' line up in proportional fonts


def column_label(dataset: str, scale: int) -> str:
    return f"{dataset_label(dataset)} ×{scale}"


def is_best(value: float, column: pd.Series) -> bool:
    finite = column.dropna()
    return bool(len(finite) > 1 and not math.isnan(value) and value == finite.max())


def ci_table(run: Run, cis: pd.DataFrame) -> Table:
    """Mean PSNR with its 95% bootstrap CI `[lo, hi]` per method and (dataset, scale)."""
    ci = cis.set_index(["method", "dataset", "scale"])
    rows = []
    for method in run.method_order:
        cells = [Cell.of(method)]
        for dataset, scale in run.columns:
            key = (method, dataset, scale)
            if key not in ci.index:
                cells.append(Cell.of(DASH))
                continue
            c = ci.loc[key]
            text = f"{fmt_psnr(c['psnr'])} [{fmt_psnr(c['psnr_lo'])}, {fmt_psnr(c['psnr_hi'])}]"
            title = f"SSIM {fmt_ssim(c['ssim'])} [{fmt_ssim(c['ssim_lo'])}, {fmt_ssim(c['ssim_hi'])}], n = {int(c['n'])}"
            cells.append(Cell.of(text, title=title, numeric=True))
        rows.append(cells)
    notes = [
        "Mean PSNR (dB) [95% bootstrap confidence interval]: images resampled with replacement, "
        "9999 resamples, BCa interval, fixed seed. The interval is about which images a dataset "
        "happens to contain; with 5 images it is wide, so small differences between methods can be noise.",
    ]
    return Table(["Method"] + [column_label(d, s) for d, s in run.columns], rows, notes)


def leads_table(leads: pd.DataFrame) -> Table:
    """Per column: leader, runner-up, lead, wins, p-value of the paired test, verdict."""
    rows = []
    for r in leads.itertuples(index=False):
        verdict = "yes" if r.significant else "no"
        if not r.significant and r.min_p >= ALPHA:
            verdict = f"no (n = {r.n} cannot reach p < {ALPHA})"
        rows.append(
            [
                Cell.of(column_label(r.dataset, r.scale)),
                Cell.of(r.leader),
                Cell.of(r.runner_up),
                Cell.of(fmt_signed(r.lead_db, 3), numeric=True),
                Cell.of(f"{r.wins}/{r.n}", numeric=True),
                Cell.of(f"{r.p_value:.4f}", numeric=True),
                Cell.of(verdict),
            ]
        )
    notes = [
        "Paired test of the leader against the runner-up on the same images: exact sign-flip "
        "permutation test of the mean PSNR difference (all 2^n sign patterns for n ≤ 16, Monte Carlo "
        f"with a fixed seed above), two-sided, α = {ALPHA}. It assumes no distribution of the "
        "per-image differences, only that under 'no difference' each one is as likely positive as negative.",
        "Why not a t-test or a bootstrap: with 5 images normality cannot be checked and the "
        "bootstrap is known to be over-confident. Why not Wilcoxon: it tests a pseudo-median, not the "
        "mean the table reports, and has the same floor. The price is honest: the smallest two-sided "
        "p any exact test of this kind reaches with n images is 2/2^n: 0.0625 for n = 5, so on Set5 "
        "alone no lead is called significant, however consistent; 0.03 for n = 6, 0.0001 for n = 14 (Set14).",
    ]
    return Table(["Column", "Leader", "Runner-up", "Lead (dB)", "Wins", "p", "Significant"], rows, notes)


def fmt_count(value: object) -> str:
    try:
        return f"{int(float(value)):,}"  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # None, NaN, empty: not reported
        return DASH


def fmt_float(value: object, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return f"{float(value):,.{digits}f}"  # type: ignore[arg-type]


def fmt_params(count: float) -> str:
    """A parameter count as papers print it: 812, 12.8K, 694K, 1.59M."""
    if not math.isfinite(count):
        return DASH
    if count < 1e3:
        return f"{count:.0f}"
    if count < 1e5:
        return f"{count / 1e3:.1f}K"
    if count < 1e6:
        return f"{count / 1e3:.0f}K"
    return f"{count / 1e6:.3g}M"


def fmt_percent(fraction: float) -> str:
    """0.093 -> '9.3%', 0.52 -> '52%': one decimal below 10%."""
    pct = 100.0 * fraction
    return f"{pct:.1f}%" if pct < 10 else f"{pct:.0f}%"


def _info_cells(method: str, scale: int, m: pd.Series | None) -> list[Cell]:
    params = fmt_count(m["params"]) if m is not None and "params" in m.index else DASH
    macs = DASH
    if m is not None and "macs_720p" in m.index and pd.notna(m["macs_720p"]):
        macs = fmt_float(float(m["macs_720p"]) / 1e9, 2)
    return [Cell.of(method), Cell.of(f"×{scale}"), Cell.of(params, numeric=True), Cell.of(macs, numeric=True)]


def _achieved(lat_row: pd.Series, peak: float | None) -> str:
    """'12.3 (9.5%)': achieved GFLOP/s and its fraction of the CPU matmul peak (CPU rows only)."""
    gflops = lat_row.get("gflops", math.nan)
    if gflops is None or pd.isna(gflops):
        return DASH
    text = fmt_float(float(gflops), 1)
    if peak and str(lat_row["device"]).startswith("cpu"):
        text += f" ({fmt_percent(float(gflops) / peak)})"
    return text


def _latency_cells(lat_row: pd.Series, peak: float | None) -> list[Cell]:
    size = DASH
    if "input_h" in lat_row.index and pd.notna(lat_row["input_h"]):
        size = f"{int(lat_row['input_h'])}×{int(lat_row['input_w'])}"
    device = str(lat_row["device"])
    if "device_name" in lat_row.index and pd.notna(lat_row["device_name"]):
        device = f"{device} ({lat_row['device_name']})"
    median = fmt_float(lat_row["median_ms"], 2)
    if "iqr_ms" in lat_row.index and pd.notna(lat_row["iqr_ms"]):
        median += f" ± {fmt_float(lat_row['iqr_ms'], 2)}"
    return [
        Cell.of(device),
        Cell.of(size, numeric=True),
        Cell.of(median, numeric=True),
        Cell.of(fmt_float(lat_row.get("mpix_per_s", math.nan), 2), numeric=True),
        Cell.of(_achieved(lat_row, peak), numeric=True),
        Cell.of(fmt_float(lat_row.get("peak_mem_mb", math.nan), 1), numeric=True),
    ]


def _cost_notes(run: Run, measured: bool) -> list[str]:
    notes = ["Mult-adds to produce one 1280×720 output, as papers report cost."]
    if not measured:
        return [*notes, "No latency.csv in this run: run with '--pass latency' to measure speed."]
    notes.append(
        "Latency: median over timed rounds after warm-up, ± interquartile range; Mpix/s counts output pixels."
    )
    peak = run.matmul_gflops
    if peak:
        notes.append(
            "GFLOP/s: 2 × mult-adds per second achieved at that size; in brackets its fraction of this "
            f"machine's float32 matrix-product rate ({peak:.0f} GFLOP/s, env.json matmul_gflops), the "
            "practical compute ceiling; CPU rows only (float64 interpolation is read against the float32 peak)."
        )
    else:
        notes.append(
            "GFLOP/s: 2 × mult-adds per second achieved; env.json has no matmul probe, so no % of peak."
        )
    return notes


def cost_table(run: Run) -> Table | None:
    """Parameters and mult-adds (methods.csv) with latency per device (latency.csv); None if neither.

    The GFLOP/s column shows latency.csv's `gflops` and, on CPU rows, its fraction of env.json's
    `matmul_gflops`.
    """
    latency = run.latency if run.latency is not None and len(run.latency) else None
    if run.methods is None and latency is None:
        return None
    info = run.method_info
    order = {m: i for i, m in enumerate(run.method_order)}
    entries: list[tuple[str, int, pd.Series | None]]
    if latency is not None:
        lat = latency.assign(_o=latency["method"].map(lambda m: order.get(m, 99)))
        lat = lat.sort_values(["scale", "_o", "device"], kind="stable")
        entries = [(str(r["method"]), int(r["scale"]), r) for _, r in lat.iterrows()]
    else:
        entries = sorted(((k[0], k[1], None) for k in info), key=lambda e: (e[1], order.get(e[0], 99)))
    peak = run.matmul_gflops
    rows = []
    for method, scale, lat_row in entries:
        cells = _info_cells(method, scale, info.get((method, scale)))
        if lat_row is not None:
            cells += _latency_cells(lat_row, peak)
        rows.append(cells)
    header = ["Method", "Scale", "Params", "Mult-adds 720p (G)"]
    if latency is not None:
        header += [
            "Device",
            "Input (H×W)",
            "Median ms ± IQR",
            "Mpix/s (output)",
            "GFLOP/s (% of peak)",
            "Peak mem (MB)",
        ]
    return Table(header, rows, _cost_notes(run, latency is not None))


def per_image_tables(run: Run) -> list[tuple[str, Table]]:
    """One table per (dataset, scale): images as rows, methods as columns, `PSNR / SSIM` cells."""
    out = []
    q = run.quality
    methods = run.method_order
    for dataset, scale in run.columns:
        here = q[(q["dataset"] == dataset) & (q["scale"] == scale)]
        if here.empty:
            continue
        ok = (
            here["status"].fillna("ok") == "ok"
            if "status" in here.columns
            else pd.Series(True, index=here.index)
        )
        psnr = here[ok].pivot_table(index="image", columns="method", values="psnr", aggfunc="first")
        ssim = here[ok].pivot_table(index="image", columns="method", values="ssim", aggfunc="first")
        failed = set(zip(here.loc[~ok, "image"], here.loc[~ok, "method"], strict=True))
        rows = []
        for image in dict.fromkeys(here["image"]):
            cells = [Cell.of(image)]
            for method in methods:
                if (image, method) in failed:
                    cells.append(Cell.of("failed", numeric=True))
                    continue
                if image not in psnr.index or method not in psnr.columns or pd.isna(psnr.loc[image, method]):
                    cells.append(Cell.of(DASH))
                    continue
                p, s = float(psnr.loc[image, method]), float(ssim.loc[image, method])
                cells.append(
                    Cell(
                        (
                            Span(fmt_psnr(p), is_best(p, psnr.loc[image])),
                            Span(" / "),
                            Span(fmt_ssim(s), is_best(s, ssim.loc[image])),
                        ),
                        numeric=True,
                    )
                )
            rows.append(cells)
        out.append((column_label(dataset, scale), Table(["Image"] + methods, rows)))
    return out


def failures_table(run: Run) -> Table | None:
    """Rows whose status is not ok, with their error message, and the files the run skipped (with why);
    None when nothing failed."""
    failed = run.failed_quality
    if failed.empty and not run.problems:
        return None
    rows = []
    for problem in run.problems:
        where, _, reason = problem.partition(": ")
        dataset, _, image = where.partition("/")
        rows.append([Cell.of("—"), Cell.of(dataset_label(dataset)), Cell.of(image), Cell.of("skipped"),
                     Cell.of(reason)])  # fmt: skip
    for _, r in failed.iterrows():
        error = r.get("error", "")
        rows.append(
            [
                Cell.of(r["method"]),
                Cell.of(column_label(r["dataset"], int(r["scale"]))),
                Cell.of(r["image"]),
                Cell.of(str(r.get("status", "failed"))),
                Cell.of("" if pd.isna(error) else str(error)),
            ]
        )
    return Table(["Method", "Column", "Image", "Status", "Error"], rows)
