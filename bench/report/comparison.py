"""The "Measured vs published" table: each published number beside the run's, with Δ, flag and footnotes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from bench.report.published import PublishedScore
from bench.report.rundata import Run
from bench.report.tables import Cell, Span, Table, column_label, fmt_psnr, fmt_signed, fmt_ssim

__all__ = ["FLAG_TOLERANCE_DB", "beyond_tolerance", "published_table"]

# How far (dB PSNR) a measured number may sit from a flagged published one before the report explains
# the gap: V numbers are read as text, I numbers from an image of a table; U numbers are never targets.
FLAG_TOLERANCE_DB = {"V": 0.05, "I": 0.10}
_EPS = 1e-9  # a Δ of exactly the tolerance (up to float noise) is within it

_HEADER = [
    "Method",
    "Column",
    "Measured PSNR / SSIM",
    "Published PSNR / SSIM",
    "Δ PSNR (dB)",
    "Δ SSIM",
    "Source",
]


def _decimals(value: float, minimum: int) -> int:
    text = repr(float(value))
    return max(minimum, len(text.split(".")[1]) if "." in text and "e" not in text else minimum)


def _digits(published: list[PublishedScore]) -> tuple[dict[str, int], dict[str, int]]:
    """One precision per source table, PSNR and SSIM: its numbers are printed as the source prints them."""
    psnr_digits: dict[str, int] = {}
    ssim_digits: dict[str, int] = {}
    for p in published:
        psnr_digits[p.source] = max(psnr_digits.get(p.source, 2), _decimals(p.psnr, 2))
        if math.isfinite(p.ssim):
            ssim_digits[p.source] = max(ssim_digits.get(p.source, 4), _decimals(p.ssim, 4))
    return psnr_digits, ssim_digits


def _matches(run: Run, published: list[PublishedScore], summary: pd.DataFrame) -> list[PublishedScore]:
    """Published entries for the run's cells (its protocol, or another degradation for reference), in
    run order: method, dataset, scale, comparable first."""
    order = {m: i for i, m in enumerate(run.method_order)}
    d_order = {d: i for i, d in enumerate(run.dataset_order)}
    matches = [
        p
        for p in published
        if (p.method, p.dataset, p.scale) in summary.index
        and (p.protocol == run.protocol or not p.comparable)
    ]
    matches.sort(
        key=lambda p: (order.get(p.method, 99), d_order.get(p.dataset, 99), p.scale, not p.comparable)
    )
    return matches


def beyond_tolerance(p: PublishedScore, measured_psnr: float) -> bool:
    """Whether a comparable, V- or I-flagged number is further from the measured one than its flag allows."""
    tolerance = FLAG_TOLERANCE_DB.get(p.flag)
    if tolerance is None or not p.comparable or not math.isfinite(measured_psnr):
        return False
    return abs(measured_psnr - p.psnr) > tolerance + _EPS


@dataclass
class _Footnotes:
    """Lettered footnotes, one per source table's note, listing the cells beyond their flag's tolerance."""

    cells: dict[tuple[str, str], dict[str, list[str]]] = field(
        default_factory=dict
    )  # (source, note) -> cells

    def mark(self, p: PublishedScore) -> str:
        """Record `p`'s cell; its footnote's letter as '(a)'."""
        key = (p.source, p.note)
        by_method = self.cells.setdefault(key, {})
        by_method.setdefault(p.method, []).append(f"{column_label(p.dataset, p.scale)} ({p.flag})")
        return f"({_letter(list(self.cells).index(key))})"

    def notes(self) -> list[str]:
        out = []
        for i, ((_, note), by_method) in enumerate(self.cells.items()):
            where = "; ".join(f"{method} {', '.join(cells)}" for method, cells in by_method.items())
            cause = (
                f"Known protocol difference (published.toml): {note}"
                if note
                else "published.toml records no protocol difference for this source: the gap is unexplained."
            )
            out.append(
                f"({_letter(i)}) {where}: further from the published number than its flag allows. {cause}"
            )
        return out


def _letter(i: int) -> str:
    """0 -> 'a', 25 -> 'z', 26 -> 'aa'."""
    return chr(ord("a") + i) if i < 26 else _letter(i // 26 - 1) + chr(ord("a") + i % 26)


def _row(
    p: PublishedScore, row: pd.Series, digits: tuple[int, int], ref: int, notes: _Footnotes
) -> list[Cell]:
    psnr, ssim = float(row["psnr"]), float(row["ssim"])
    pd_digits, sd_digits = digits
    published_text = fmt_psnr(p.psnr, pd_digits) + " / " + fmt_ssim(p.ssim, sd_digits)
    if p.flag:
        published_text += f" {p.flag}"
    delta = [Span(fmt_signed(psnr - p.psnr, max(3, pd_digits)))]
    d_ssim = fmt_signed(ssim - p.ssim, max(4, sd_digits))
    if not p.comparable:
        published_text += " *"
        delta, d_ssim = [Span("n/c")], "n/c"
    elif beyond_tolerance(p, psnr):
        delta.append(Span(" " + notes.mark(p)))
    return [
        Cell.of(p.method),
        Cell.of(column_label(p.dataset, p.scale)),
        Cell.of(fmt_psnr(psnr, max(pd_digits, 2)) + " / " + fmt_ssim(ssim, sd_digits), numeric=True),
        Cell.of(published_text, numeric=True, title=p.note),
        Cell(tuple(delta), title=p.note, numeric=True),
        Cell.of(d_ssim, numeric=True),
        Cell.of(f"[{ref}]"),
    ]


def published_table(run: Run, published: list[PublishedScore]) -> Table | None:
    """Measured vs published numbers where a published number exists for the run's cells.

    Comparable entries must be for the run's protocol; others (a different degradation) are listed
    for reference without a difference. Each row shows the number's flag (V, I, U); a Δ PSNR beyond
    the flag's tolerance (FLAG_TOLERANCE_DB) gets a footnote quoting its source table's `note` from
    published.toml. None when nothing matches.
    """
    summary = run.summary.set_index(["method", "dataset", "scale"])
    matches = _matches(run, published, summary)
    if not matches:
        return None
    psnr_digits, ssim_digits = _digits(published)
    sources = list(dict.fromkeys(p.source for p in matches))
    footnotes = _Footnotes()
    rows = [
        _row(
            p,
            summary.loc[(p.method, p.dataset, p.scale)],
            (psnr_digits[p.source], ssim_digits.get(p.source, 4)),
            sources.index(p.source) + 1,
            footnotes,
        )
        for p in matches
    ]
    notes = [f"[{i}] {s}" for i, s in enumerate(sources, 1)]
    notes.append(
        "Δ = measured − published. Measured numbers are shown to the precision of the published ones. "
        "* a different degradation (not comparable, n/c): shown for reference only."
    )
    if any(p.flag for p in matches):
        tolerances = ", ".join(f"{flag} {tol:.2f} dB" for flag, tol in FLAG_TOLERANCE_DB.items())
        notes.append(
            "Flags: V verified as text in the paper or the authors' repository; I read from an image of the "
            "paper's table; U not confirmed by any source (shown, never a regression target). A lettered "
            f"footnote marks a Δ PSNR beyond its flag's tolerance ({tolerances})."
        )
    return Table(list(_HEADER), rows, notes + footnotes.notes())
