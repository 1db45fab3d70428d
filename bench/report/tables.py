"""The report's tables, computed with pandas into a small format-neutral model (Table of Cells)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from bench.report.published import PublishedScore
from bench.report.rundata import Run, dataset_label
from bench.report.stats import ALPHA

__all__ = [
    "Span",
    "Cell",
    "Table",
    "fmt_psnr",
    "fmt_ssim",
    "paper_table",
    "ci_table",
    "leads_table",
    "published_table",
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
    """Header labels, rows of cells, and footnotes (plain text)."""

    header: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


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


def _fmt_signed(value: float, digits: int) -> str:
    if not math.isfinite(value):
        return DASH
    text = f"{value:+.{digits}f}"
    return text.replace("-", "−")  # a real minus sign: '-' and '+' line up in proportional fonts


def _column_label(dataset: str, scale: int) -> str:
    return f"{dataset_label(dataset)} ×{scale}"


def _is_best(value: float, column: pd.Series) -> bool:
    finite = column.dropna()
    return bool(len(finite) > 1 and not math.isnan(value) and value == finite.max())


def paper_table(run: Run, leads: pd.DataFrame, cis: pd.DataFrame) -> Table:
    """Methods as rows, (dataset, scale) as columns, cells `PSNR / SSIM` from summary.csv.

    Bold: best PSNR and best SSIM per column (full precision). After the leader's PSNR: `†` when
    its lead over the runner-up is not significant, `§` when no lead could be with that few images.
    `‡` where some images failed.
    """
    summary = run.summary.set_index(["method", "dataset", "scale"])
    ci = cis.set_index(["method", "dataset", "scale"]) if len(cis) else None
    lead = leads.set_index(["dataset", "scale"]) if len(leads) else None
    columns = run.columns
    marks: set[str] = set()
    rows = []
    for method in run.method_order:
        cells = [Cell.of(method)]
        for dataset, scale in columns:
            key = (method, dataset, scale)
            if key not in summary.index:
                cells.append(Cell.of(DASH))
                continue
            row = summary.loc[key]
            col = run.summary[(run.summary["dataset"] == dataset) & (run.summary["scale"] == scale)]
            psnr, ssim = float(row["psnr"]), float(row["ssim"])
            spans = [Span(fmt_psnr(psnr), _is_best(psnr, col["psnr"]))]
            if lead is not None and (dataset, scale) in lead.index:
                info = lead.loc[(dataset, scale)]
                if info["leader"] == method and not info["significant"]:
                    mark = UNTESTABLE if info["min_p"] >= ALPHA else NOT_SIGNIFICANT
                    spans.append(Span(mark))
                    marks.add(mark)
            spans += [Span(" / "), Span(fmt_ssim(ssim), _is_best(ssim, col["ssim"]))]
            n_failed = int(row["n_failed"]) if "n_failed" in row.index and pd.notna(row["n_failed"]) else 0
            if n_failed:
                spans.append(Span(HAS_FAILURES))
            title = ""
            if ci is not None and key in ci.index:
                c = ci.loc[key]
                title = f"95% CI of the mean PSNR: [{fmt_psnr(c['psnr_lo'])}, {fmt_psnr(c['psnr_hi'])}] dB over {int(c['n'])} images"
            cells.append(Cell(tuple(spans), title, numeric=True))
        rows.append(cells)
    notes = ["PSNR (dB) / SSIM, mean over the images of each dataset. Bold: best in the column."]
    if NOT_SIGNIFICANT in marks:
        notes.append(
            f"{NOT_SIGNIFICANT} the column leader's PSNR lead over the runner-up is not significant (paired "
            f"sign-flip permutation test over the same images, two-sided, α = {ALPHA}; see Uncertainty)."
        )
    if UNTESTABLE in marks:
        notes.append(
            f"{UNTESTABLE} too few images to call any lead significant: with n images the smallest attainable "
            f"two-sided p is 2/2^n (0.0625 for n = 5), so the lead is unconfirmed, however consistent "
            "(see Uncertainty)."
        )
    if "n_failed" in run.summary.columns and (run.summary["n_failed"].fillna(0) > 0).any():
        notes.append(
            f"{HAS_FAILURES} some images failed; the mean is over the images that scored (see Failures)."
        )
    return Table(["Method"] + [_column_label(d, s) for d, s in columns], rows, notes)


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
    return Table(["Method"] + [_column_label(d, s) for d, s in run.columns], rows, notes)


def leads_table(leads: pd.DataFrame) -> Table:
    """Per column: leader, runner-up, lead, wins, p-value of the paired test, verdict."""
    rows = []
    for r in leads.itertuples(index=False):
        verdict = "yes" if r.significant else "no"
        if not r.significant and r.min_p >= ALPHA:
            verdict = f"no (n = {r.n} cannot reach p < {ALPHA})"
        rows.append(
            [
                Cell.of(_column_label(r.dataset, r.scale)),
                Cell.of(r.leader),
                Cell.of(r.runner_up),
                Cell.of(_fmt_signed(r.lead_db, 3), numeric=True),
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


def _decimals(value: float, minimum: int) -> int:
    text = repr(float(value))
    return max(minimum, len(text.split(".")[1]) if "." in text and "e" not in text else minimum)


def published_table(run: Run, published: list[PublishedScore]) -> Table | None:
    """Measured vs published numbers where a published number exists for the run's cells.

    Comparable entries must be for the run's protocol; others (a different degradation) are listed
    for reference without a difference. None when nothing matches.
    """
    summary = run.summary.set_index(["method", "dataset", "scale"])
    sources: list[str] = []
    rows = []
    order = {m: i for i, m in enumerate(run.method_order)}
    matches = [
        p
        for p in published
        if (p.method, p.dataset, p.scale) in summary.index
        and (p.protocol == run.protocol or not p.comparable)
    ]
    d_order = {d: i for i, d in enumerate(run.dataset_order)}
    matches.sort(
        key=lambda p: (order.get(p.method, 99), d_order.get(p.dataset, 99), p.scale, not p.comparable)
    )
    # one precision per source table: its numbers are printed as the source prints them
    psnr_digits: dict[str, int] = {}
    ssim_digits: dict[str, int] = {}
    for p in published:
        psnr_digits[p.source] = max(psnr_digits.get(p.source, 2), _decimals(p.psnr, 2))
        if math.isfinite(p.ssim):
            ssim_digits[p.source] = max(ssim_digits.get(p.source, 4), _decimals(p.ssim, 4))
    for p in matches:
        if p.source not in sources:
            sources.append(p.source)
        ref = sources.index(p.source) + 1
        row = summary.loc[(p.method, p.dataset, p.scale)]
        psnr, ssim = float(row["psnr"]), float(row["ssim"])
        pd_digits, sd_digits = psnr_digits[p.source], ssim_digits.get(p.source, 4)
        published_text = fmt_psnr(p.psnr, pd_digits) + " / " + fmt_ssim(p.ssim, sd_digits)
        if p.flag:
            published_text += f" {p.flag}"
        if p.comparable:
            d_psnr, d_ssim = (
                _fmt_signed(psnr - p.psnr, max(3, pd_digits)),
                _fmt_signed(ssim - p.ssim, max(4, sd_digits)),
            )
        else:
            published_text += " *"
            d_psnr = d_ssim = "n/c"
        rows.append(
            [
                Cell.of(p.method),
                Cell.of(_column_label(p.dataset, p.scale)),
                Cell.of(fmt_psnr(psnr, max(pd_digits, 2)) + " / " + fmt_ssim(ssim, sd_digits), numeric=True),
                Cell.of(published_text, numeric=True, title=p.note),
                Cell.of(d_psnr, numeric=True),
                Cell.of(d_ssim, numeric=True),
                Cell.of(f"[{ref}]"),
            ]
        )
    if not rows:
        return None
    notes = [f"[{i}] {s}" for i, s in enumerate(sources, 1)]
    notes.append(
        "Δ = measured − published. Measured numbers are shown to the precision of the published ones. "
        "* a different degradation (not comparable, n/c): shown for reference only."
    )
    if any(p.flag for p in matches):
        notes.append(
            "Flags: V verified as text in the paper or the authors' repository; I read from an image of the "
            "paper's table; U not confirmed by any source (shown, never a regression target)."
        )
    return Table(
        [
            "Method",
            "Column",
            "Measured PSNR / SSIM",
            "Published PSNR / SSIM",
            "Δ PSNR (dB)",
            "Δ SSIM",
            "Source",
        ],
        rows,
        notes,
    )


def _fmt_count(value: object) -> str:
    try:
        return f"{int(float(value)):,}"  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # None, NaN, empty: not reported
        return DASH


def _fmt_float(value: object, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return f"{float(value):,.{digits}f}"  # type: ignore[arg-type]


def cost_table(run: Run) -> Table | None:
    """Parameters and mult-adds (methods.csv) with latency per device (latency.csv); None if neither."""
    methods = run.methods
    latency = run.latency if run.latency is not None and len(run.latency) else None
    if methods is None and latency is None:
        return None
    info: dict[tuple[str, int], pd.Series] = {}
    if methods is not None:
        for _, m in methods.iterrows():
            info.setdefault((str(m["name"]), int(m["scale"])), m)
    order = {m: i for i, m in enumerate(run.method_order)}
    rows = []
    if latency is not None:
        lat = latency.assign(_o=latency["method"].map(lambda m: order.get(m, 99)))
        lat = lat.sort_values(["scale", "_o", "device"], kind="stable")
        entries = [(str(r["method"]), int(r["scale"]), r) for _, r in lat.iterrows()]
    else:
        entries = sorted(((k[0], k[1], None) for k in info), key=lambda e: (e[1], order.get(e[0], 99)))
    for method, scale, lat_row in entries:
        m = info.get((method, scale))
        params = _fmt_count(m["params"]) if m is not None and "params" in m.index else DASH
        macs = DASH
        if m is not None and "macs_720p" in m.index and pd.notna(m["macs_720p"]):
            macs = _fmt_float(float(m["macs_720p"]) / 1e9, 2)
        cells = [
            Cell.of(method),
            Cell.of(f"×{scale}"),
            Cell.of(params, numeric=True),
            Cell.of(macs, numeric=True),
        ]
        if lat_row is not None:
            size = DASH
            if "input_h" in lat_row.index and pd.notna(lat_row["input_h"]):
                size = f"{int(lat_row['input_h'])}×{int(lat_row['input_w'])}"
            device = str(lat_row["device"])
            if "device_name" in lat_row.index and pd.notna(lat_row["device_name"]):
                device = f"{device} ({lat_row['device_name']})"
            median = _fmt_float(lat_row["median_ms"], 2)
            if "iqr_ms" in lat_row.index and pd.notna(lat_row["iqr_ms"]):
                median += f" ± {_fmt_float(lat_row['iqr_ms'], 2)}"
            cells += [
                Cell.of(device),
                Cell.of(size, numeric=True),
                Cell.of(median, numeric=True),
                Cell.of(_fmt_float(lat_row.get("mpix_per_s", math.nan), 2), numeric=True),
                Cell.of(_fmt_float(lat_row.get("peak_mem_mb", math.nan), 1), numeric=True),
            ]
        rows.append(cells)
    header = ["Method", "Scale", "Params", "Mult-adds 720p (G)"]
    notes = ["Mult-adds to produce one 1280×720 output, as papers report cost."]
    if latency is not None:
        header += ["Device", "Input (H×W)", "Median ms ± IQR", "Mpix/s (output)", "Peak mem (MB)"]
        notes.append(
            "Latency: median over timed rounds after warm-up, ± interquartile range; Mpix/s counts output pixels."
        )
    else:
        notes.append("No latency.csv in this run: run with '--pass latency' to measure speed.")
    return Table(header, rows, notes)


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
                            Span(fmt_psnr(p), _is_best(p, psnr.loc[image])),
                            Span(" / "),
                            Span(fmt_ssim(s), _is_best(s, ssim.loc[image])),
                        ),
                        numeric=True,
                    )
                )
            rows.append(cells)
        out.append((_column_label(dataset, scale), Table(["Image"] + methods, rows)))
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
                Cell.of(_column_label(r["dataset"], int(r["scale"]))),
                Cell.of(r["image"]),
                Cell.of(str(r.get("status", "failed"))),
                Cell.of("" if pd.isna(error) else str(error)),
            ]
        )
    return Table(["Method", "Column", "Image", "Status", "Error"], rows)
