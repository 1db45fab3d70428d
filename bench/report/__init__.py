"""Write a run folder's report: report.md, a self-contained report.html and figures/*.png."""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

from bench.errors import UsageError
from bench.report.comparison import published_table
from bench.report.leaderboard import budget_table, grouped_methods, paper_table
from bench.report.plots import (
    method_colors,
    plot_gain_over_bicubic,
    plot_psnr_vs_latency,
    plot_psnr_vs_params,
)
from bench.report.published import load_published
from bench.report.render import ReportContent, header_fields, render_html, render_markdown
from bench.report.rundata import Run, load_run
from bench.report.stats import column_leads, dataset_cis
from bench.report.tables import ci_table, cost_table, failures_table, leads_table, per_image_tables
from bench.report.visual import CropSpec, FigureRef, HrLoader, check_crop, parse_crop, visual_comparisons

__all__ = ["write_report", "CropSpec", "parse_crop", "HrLoader"]

# Figures this module writes; stale ones from an earlier report are removed so figures/ matches it.
_FIGURE_GLOBS = ("psnr_vs_latency.png", "psnr_vs_params.png", "gain_over_bicubic.png", "visual_*.png")


def _as_crop(crop: CropSpec | str | tuple | None) -> CropSpec | None:  # type: ignore[type-arg]
    if crop is None or isinstance(crop, CropSpec):
        return crop
    if isinstance(crop, str):
        return parse_crop(crop)
    if isinstance(crop, tuple) and len(crop) in (3, 5, 6):
        return parse_crop(",".join(str(v) for v in crop))
    raise UsageError(
        f"crop {crop!r}: expected (dataset, image, scale[, y, x[, size]]) or 'set5,baby,4,120,80,48'"
    )


# (file name, title, caption) of the Pareto and gain figures, in report order
_FIGURES = (
    (
        "psnr_vs_latency.png",
        "Quality vs speed",
        "Mean PSNR against median latency (log scale) per dataset and scale, coloured by method group; the "
        "dashed staircase is the Pareto front (no other method is both faster and better). Latency is that "
        "of the largest output measured for each method and device; a method without latency is absent.",
    ),
    (
        "psnr_vs_params.png",
        "Quality vs size",
        "Mean PSNR against parameter count (log scale) per dataset and scale, coloured by method group; the "
        "dashed staircase is the Pareto front (no other method is both smaller and better). Parameter-free "
        "methods are dotted horizontal lines.",
    ),
    (
        "gain_over_bicubic.png",
        "PSNR gain over bicubic, per image",
        "Each point is one image: the method's PSNR minus bicubic's on the same image; boxes show "
        "median and quartiles. A method that helps every image sits wholly above zero.",
    ),
)


def _in_group_order(run: Run) -> Run:
    """The run with its methods listed group by group (classical, trained here, published models,
    other; run order within a group), so that every table and figure lists them in one order."""
    order = [m for _, methods in grouped_methods(run) for m in methods]
    return dataclasses.replace(run, config={**run.config, "methods": order})


def _clear_figures(fig_dir: Path) -> None:
    fig_dir.mkdir(exist_ok=True)
    for pattern in _FIGURE_GLOBS:
        for stale in fig_dir.glob(pattern):
            stale.unlink()


def _figures(
    run: Run, fig_dir: Path, spec: CropSpec | None, hr_loader: HrLoader | None
) -> tuple[list[FigureRef], list[str]]:
    """Write the figures; returns those written and a note for each that could not be drawn."""
    colors = method_colors(run.method_order)
    groups = {m: label for label, methods in grouped_methods(run) for m in methods}
    figures: list[FigureRef] = []
    notes: list[str] = []
    draw = {
        "psnr_vs_latency.png": partial(plot_psnr_vs_latency, run, groups),
        "psnr_vs_params.png": partial(plot_psnr_vs_params, run, groups),
        "gain_over_bicubic.png": partial(plot_gain_over_bicubic, run, colors),
    }
    for name, title, caption in _FIGURES:
        path = fig_dir / name
        note = draw[name](path)
        if note is None:
            figures.append(FigureRef(path, title, caption))
        else:
            notes.append(note)
    visual, visual_notes = visual_comparisons(run, colors, fig_dir, crop=spec, hr_loader=hr_loader)
    return figures + visual, notes + visual_notes


def _latency_only(run: Run) -> ReportContent:
    return ReportContent(title="Super-resolution benchmark report (latency)", header=header_fields(run),
                         paper=None, leads=None, cis=None, published=None, cost=cost_table(run), figures=[],
                         figure_notes=["This run measured latency only (--pass latency): "
                                       "no quality tables or figures."],
                         per_image=[], failures=failures_table(run), n_failed=0)  # fmt: skip


def write_report(
    run_dir: str | Path,
    *,
    crop: CropSpec | str | tuple | None = None,  # type: ignore[type-arg]
    published: str | Path | None = None,
    hr_loader: HrLoader | None = None,
) -> dict[str, Path]:
    """Write report.md, report.html and figures/*.png into `run_dir`; returns {relative name: path}.

    `crop`: the visual comparison to draw, `CropSpec`, `"dataset,image,scale[,y,x[,size]]"` or the
    same as a tuple; None chooses images and crops automatically. `published`: a TOML file of
    published numbers (None: the one shipped with srbench). `hr_loader(dataset, image, scale)`
    returns the modcropped HR image as HxWx3 uint8 RGB (None: `bench.data`).
    Raises UsageError when `run_dir` is not a run folder or an argument is malformed.
    """
    run = load_run(run_dir)
    spec = _as_crop(crop)
    if spec is not None:
        check_crop(run, spec)  # before any work: a mistyped --crop fails at once
    fig_dir = run.path / "figures"
    _clear_figures(fig_dir)
    if run.summary.empty:  # a latency-only run: its report is the cost table
        return _write(run, _latency_only(run))
    run = _in_group_order(run)
    ok = run.ok_quality
    cis = dataset_cis(ok)
    leads = column_leads(run.summary, ok)
    figures, notes = _figures(run, fig_dir, spec, hr_loader)
    content = ReportContent(
        title="Super-resolution benchmark report",
        header=header_fields(run),
        paper=paper_table(run, leads, cis),
        leads=leads_table(leads),
        cis=ci_table(run, cis),
        published=published_table(run, load_published(published)),
        cost=cost_table(run),
        figures=figures,
        figure_notes=notes,
        per_image=per_image_tables(run),
        failures=failures_table(run),
        n_failed=len(run.failed_quality),
        budget=budget_table(run),
    )
    return _write(run, content)


def _write(run: Run, content: ReportContent) -> dict[str, Path]:
    md_path, html_path = run.path / "report.md", run.path / "report.html"
    md_path.write_text(render_markdown(content, run.path), encoding="utf-8")
    html_path.write_text(render_html(content), encoding="utf-8")
    written = {"report.md": md_path, "report.html": html_path}
    written.update({f.path.relative_to(run.path).as_posix(): f.path for f in content.figures})
    return written
