"""The leaderboard: the grouped quality table with each method's cost, and the best method per budget."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from bench.registry import method_groups
from bench.report.rundata import Run
from bench.report.stats import ALPHA
from bench.report.tables import (
    DASH,
    Cell,
    Span,
    Table,
    column_label,
    fmt_params,
    fmt_psnr,
    fmt_ssim,
    is_best,
)

__all__ = [
    "GROUP_LABELS",
    "PARAM_BUDGETS",
    "LATENCY_BUDGETS_MS",
    "method_group_keys",
    "method_group_labels",
    "grouped_methods",
    "latency_at_720p",
    "paper_table",
    "budget_table",
]

NOT_SIGNIFICANT = "†"
UNTESTABLE = "§"
HAS_FAILURES = "‡"

# display names of the registry's method groups, in the order the leaderboard lists them
GROUP_LABELS = {"classical": "Classical", "trained": "Trained here", "zoo": "Published models"}
OTHER_GROUP = "other"  # plugins, dir: outputs: methods no group claims
_OTHER_LABEL = "Other"

PARAM_BUDGETS = (100_000, 500_000, 1_000_000)
LATENCY_BUDGETS_MS = (50.0, 200.0, 1000.0)
BUDGET_OUTPUT_HW = (720, 1280)  # the output size papers quote cost for


# ---------------------------------------------------------------- groups


def _registry_groups() -> dict[str, str]:
    """Method -> the first registry group (`all` aside) that lists it."""
    out: dict[str, str] = {}
    for group, names in method_groups().items():
        if group != "all":
            for name in names:
                out.setdefault(name, group)
    return out


def method_group_keys(run: Run) -> dict[str, str]:
    """Method -> group key, in run order: methods.csv `extra_group` where recorded, else the
    registry's group (bench.registry.method_groups), else 'other'."""
    recorded: dict[str, str] = {}
    for (name, _), row in run.method_info.items():
        group = row.get("extra_group")
        if isinstance(group, str) and group.strip():
            recorded.setdefault(name, group.strip())
    registry = _registry_groups()
    return {m: recorded.get(m) or registry.get(m, OTHER_GROUP) for m in run.method_order}


def _label(key: str) -> str:
    return _OTHER_LABEL if key == OTHER_GROUP else GROUP_LABELS.get(key, key)


def method_group_labels(run: Run) -> dict[str, str]:
    """Method -> the display label of its group ('Classical', 'Trained here', 'Published models', ...)."""
    return {m: _label(k) for m, k in method_group_keys(run).items()}


def grouped_methods(run: Run) -> list[tuple[str, list[str]]]:
    """(group label, methods in run order) per group: classical, trained here, published models,
    then groups only methods.csv names, then 'Other'."""
    keys = method_group_keys(run)
    present = list(dict.fromkeys(keys.values()))
    known = [g for g in GROUP_LABELS if g in present]
    rest = [g for g in present if g not in GROUP_LABELS and g != OTHER_GROUP]
    order = known + rest + ([OTHER_GROUP] if OTHER_GROUP in present else [])
    return [(_label(g), [m for m, k in keys.items() if k == g]) for g in order]


# ---------------------------------------------------------------- the quality table


@dataclass
class _Scores:
    """Indexed summary, CIs and leads of a run: builds the `PSNR / SSIM` cells and their footnotes."""

    run: Run
    leads: pd.DataFrame
    cis: pd.DataFrame
    marks: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.summary = self.run.summary.set_index(["method", "dataset", "scale"])
        self.ci = self.cis.set_index(["method", "dataset", "scale"]) if len(self.cis) else None
        self.lead = self.leads.set_index(["dataset", "scale"]) if len(self.leads) else None

    def _lead_mark(self, method: str, dataset: str, scale: int) -> str:
        if self.lead is None or (dataset, scale) not in self.lead.index:
            return ""
        info = self.lead.loc[(dataset, scale)]
        if info["leader"] != method or info["significant"]:
            return ""
        mark = UNTESTABLE if info["min_p"] >= ALPHA else NOT_SIGNIFICANT
        self.marks.add(mark)
        return mark

    def cell(self, method: str, dataset: str, scale: int) -> Cell:
        key = (method, dataset, scale)
        if key not in self.summary.index:
            return Cell.of(DASH)
        row = self.summary.loc[key]
        col = self.run.summary[
            (self.run.summary["dataset"] == dataset) & (self.run.summary["scale"] == scale)
        ]
        psnr, ssim = float(row["psnr"]), float(row["ssim"])
        spans = [Span(fmt_psnr(psnr), is_best(psnr, col["psnr"]))]
        if mark := self._lead_mark(method, dataset, scale):
            spans.append(Span(mark))
        spans += [Span(" / "), Span(fmt_ssim(ssim), is_best(ssim, col["ssim"]))]
        if "n_failed" in row.index and pd.notna(row["n_failed"]) and int(row["n_failed"]):
            spans.append(Span(HAS_FAILURES))
        title = ""
        if self.ci is not None and key in self.ci.index:
            c = self.ci.loc[key]
            title = (
                f"95% CI of the mean PSNR: [{fmt_psnr(c['psnr_lo'])}, {fmt_psnr(c['psnr_hi'])}] dB "
                f"over {int(c['n'])} images"
            )
        return Cell(tuple(spans), title, numeric=True)

    def notes(self) -> list[str]:
        notes = ["PSNR (dB) / SSIM, mean over the images of each dataset. Bold: best in the column."]
        if NOT_SIGNIFICANT in self.marks:
            notes.append(
                f"{NOT_SIGNIFICANT} the column leader's PSNR lead over the runner-up is not significant (paired "
                f"sign-flip permutation test over the same images, two-sided, α = {ALPHA}; see Uncertainty)."
            )
        if UNTESTABLE in self.marks:
            notes.append(
                f"{UNTESTABLE} too few images to call any lead significant: with n images the smallest "
                "attainable two-sided p is 2/2^n (0.0625 for n = 5), so the lead is unconfirmed, however "
                "consistent (see Uncertainty)."
            )
        if "n_failed" in self.run.summary.columns and (self.run.summary["n_failed"].fillna(0) > 0).any():
            notes.append(
                f"{HAS_FAILURES} some images failed; the mean is over the images that scored (see Failures)."
            )
        return notes


def _spread(values: dict[int, float], show: Callable[[float], str]) -> Cell:
    """One number, or 'low–high' when it varies with the scale; the exact value per scale on hover."""
    if not values:
        return Cell.of(DASH)
    lo, hi = min(values.values()), max(values.values())
    text = show(lo) if show(lo) == show(hi) else f"{show(lo)}–{show(hi)}"
    title = "; ".join(f"×{s}: {v:,.0f}" if v >= 1000 else f"×{s}: {v:g}" for s, v in sorted(values.items()))
    return Cell.of(text, title=title, numeric=True)


def _fact_cells(run: Run, method: str) -> list[Cell]:
    """Training data, parameters and mult-adds at 720p (G) of `method` over the run's scales."""
    params: dict[int, float] = {}
    macs: dict[int, float] = {}
    data: list[str] = []
    for scale in run.scales:
        m = run.method_info.get((method, scale))
        if m is None:
            continue
        if pd.notna(m.get("params")):
            params[scale] = float(m["params"])
        if pd.notna(m.get("macs_720p")):
            macs[scale] = float(m["macs_720p"]) / 1e9
        trained_on = m.get("extra_training_data")
        if isinstance(trained_on, str) and trained_on.strip():
            data.append(trained_on.strip())
    training = Cell.of(", ".join(dict.fromkeys(data)) or DASH)
    return [training, _spread(params, fmt_params), _spread(macs, lambda v: f"{v:.3g}")]


_FACT_HEADER = ("Training data", "Params", "Mult-adds 720p (G)")


def paper_table(run: Run, leads: pd.DataFrame, cis: pd.DataFrame) -> Table:
    """The leaderboard: methods grouped (classical, trained here, published models), each with its
    training data, parameters and mult-adds at 720p (methods.csv), then (dataset, scale) columns of
    `PSNR / SSIM` from summary.csv.

    Bold: best PSNR and best SSIM per column (full precision). After the leader's PSNR: `†` when
    its lead over the runner-up is not significant, `§` when no lead could be with that few images.
    `‡` where some images failed. A cost column with nothing known in it is left out; group rows
    are shown when the run spans more than one group.
    """
    scores = _Scores(run, leads, cis)
    groups = grouped_methods(run)
    facts = {m: _fact_cells(run, m) for _, methods in groups for m in methods}
    keep = [i for i in range(len(_FACT_HEADER)) if any(f[i].text != DASH for f in facts.values())]
    rows: list[list[Cell]] = []
    sections: list[tuple[int, str]] = []
    for label, methods in groups:
        if len(groups) > 1:
            sections.append((len(rows), label))
        for method in methods:
            cost = [facts[method][i] for i in keep]
            rows.append([Cell.of(method), *cost, *(scores.cell(method, d, s) for d, s in run.columns)])
    notes = scores.notes()
    if keep:
        notes.append(
            "Params and mult-adds (G) to produce one 1280×720 output from methods.csv; a range where they "
            "differ between scales (exact values on hover in the HTML report)."
        )
    header = ["Method", *(_FACT_HEADER[i] for i in keep), *(column_label(d, s) for d, s in run.columns)]
    return Table(header, rows, notes, sections)


# ---------------------------------------------------------------- budgets


def latency_at_720p(run: Run) -> dict[str, dict[tuple[str, int], float]]:
    """Per device label: (method, scale) -> ms per 1280×720 output on this machine.

    latency.csv rows whose output is 1280×720 (up to scale-1 pixels more where 720 or 1280 is not a
    multiple of the scale); median_ms divided by the batch; the fastest configuration measured.
    """
    lat = run.latency
    if lat is None or lat.empty:
        return {}
    if {"output_h", "output_w"} <= set(lat.columns):
        out_h, out_w = lat["output_h"], lat["output_w"]
    elif {"input_h", "input_w"} <= set(lat.columns):
        out_h, out_w = lat["input_h"] * lat["scale"], lat["input_w"] * lat["scale"]
    else:
        return {}
    h, w, s = *BUDGET_OUTPUT_HW, lat["scale"]
    at_720p = (out_h >= h) & (out_h < h + s) & (out_w >= w) & (out_w < w + s)
    batch = lat["batch"].fillna(1).clip(lower=1) if "batch" in lat.columns else 1
    device = lat["device"].astype(str)
    if "device_name" in lat.columns:
        named = lat["device_name"].notna()
        device = device.where(~named, device + " (" + lat["device_name"].astype(str) + ")")
    frame = lat.assign(_ms=lat["median_ms"] / batch, _device=device)[at_720p & (lat["median_ms"] > 0)]
    out: dict[str, dict[tuple[str, int], float]] = {}
    for (label, method, scale), ms in (
        frame.groupby(["_device", "method", "scale"], sort=False)["_ms"].min().items()
    ):
        out.setdefault(str(label), {})[(str(method), int(scale))] = float(ms)
    return out


def _param_counts(run: Run) -> dict[tuple[str, int], float]:
    return {k: float(m["params"]) for k, m in run.method_info.items() if pd.notna(m.get("params"))}


def _best_under(
    run: Run, dataset: str, scale: int, cost: dict[tuple[str, int], float], budget: float
) -> tuple[str, float, float] | None:
    """(method, PSNR, cost) of the best mean PSNR in the column among methods within `budget`;
    ties go to the cheaper method. None when no method fits."""
    col = run.summary[(run.summary["dataset"] == dataset) & (run.summary["scale"] == scale)]
    best: tuple[str, float, float] | None = None
    for method, psnr in zip(col["method"], col["psnr"].astype(float), strict=True):
        c = cost.get((method, scale))
        if c is None or math.isnan(psnr) or c > budget:
            continue
        if best is None or (psnr, -c) > (best[1], -best[2]):
            best = (method, psnr, c)
    return best


def _budget_row(
    run: Run, label: str, cost: dict[tuple[str, int], float], budget: float, unit: str
) -> list[Cell]:
    cells = [Cell.of(label)]
    for dataset, scale in run.columns:
        best = _best_under(run, dataset, scale, cost, budget)
        if best is None:
            cells.append(Cell.of("none within budget"))
            continue
        method, psnr, c = best
        spent = fmt_params(c) if unit == "params" else f"{c:,.0f} ms" if c >= 10 else f"{c:.2g} ms"
        cells.append(
            Cell(
                (Span(method, bold=True), Span(f" {fmt_psnr(psnr)} ({spent})")),
                title=f"{method}: {psnr:.3f} dB at {spent}",
            )
        )
    return cells


def _unmeasured_row(run: Run, label: str, why: str) -> list[Cell]:
    return [Cell.of(label), *(Cell.of(why) for _ in run.columns)]


def budget_table(
    run: Run,
    params: Sequence[int] = PARAM_BUDGETS,
    latency_ms: Sequence[float] = LATENCY_BUDGETS_MS,
) -> Table | None:
    """Which model for which budget: per (dataset, scale) column, the best mean PSNR among methods
    with at most `params` parameters, and among those at most `latency_ms` per 1280×720 output on
    this machine (one set of rows per device measured). None for a run without quality results."""
    if run.summary.empty:
        return None
    rows: list[list[Cell]] = []
    counts = _param_counts(run)
    if counts:
        rows += [_budget_row(run, f"≤ {fmt_params(b)} parameters", counts, b, "params") for b in params]
    else:
        label = f"≤ {' / '.join(fmt_params(b) for b in params)} parameters"
        rows.append(_unmeasured_row(run, label, "no parameter counts (no methods.csv)"))
    by_device = latency_at_720p(run)
    for device, times in by_device.items():
        rows += [_budget_row(run, f"≤ {b:g} ms at 1280×720, {device}", times, b, "ms") for b in latency_ms]
    if not by_device:
        label = f"≤ {' / '.join(f'{b:g}' for b in latency_ms)} ms at 1280×720"
        rows.append(_unmeasured_row(run, label, "no latency measured"))
    notes = [
        "Best mean PSNR (dB) in each column among the methods within the budget, with the method's cost "
        "in brackets; ties go to the cheaper. Parameters from methods.csv at that scale (interpolation "
        "counts 0).",
        "Latency: latency.csv rows with a 1280×720 output on this machine (median per image, the fastest "
        "configuration measured); a method without such a row is no candidate. Measure with "
        "'--pass latency' (its default output size is 1280×720).",
    ]
    return Table(["Budget", *(column_label(d, s) for d, s in run.columns)], rows, notes)
