"""Write a run folder's report: report.md, a self-contained report.html and figures/*.png."""

from __future__ import annotations

from pathlib import Path

from bench.errors import UsageError
from bench.report.plots import method_colors, plot_gain_over_bicubic, plot_psnr_vs_latency
from bench.report.published import load_published
from bench.report.render import ReportContent, header_fields, render_html, render_markdown
from bench.report.rundata import Run, load_run
from bench.report.stats import column_leads, dataset_cis
from bench.report.tables import (
    ci_table,
    cost_table,
    failures_table,
    leads_table,
    paper_table,
    per_image_tables,
    published_table,
)
from bench.report.visual import CropSpec, FigureRef, HrLoader, check_crop, parse_crop, visual_comparisons

__all__ = ["write_report", "CropSpec", "parse_crop", "HrLoader"]

# Figures this module writes; stale ones from an earlier report are removed so figures/ matches it.
_FIGURE_GLOBS = ("psnr_vs_latency.png", "gain_over_bicubic.png", "visual_*.png")


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
    fig_dir.mkdir(exist_ok=True)
    for pattern in _FIGURE_GLOBS:
        for stale in fig_dir.glob(pattern):
            stale.unlink()

    colors = method_colors(run.method_order)
    ok = run.ok_quality
    cis = dataset_cis(ok)
    leads = column_leads(run.summary, ok)

    if run.summary.empty:  # a latency-only run: its report is the cost table
        return _write(run, ReportContent(title="Super-resolution benchmark report (latency)",
                                         header=header_fields(run), paper=None, leads=None, cis=None,
                                         published=None, cost=cost_table(run), figures=[],
                                         figure_notes=["This run measured latency only (--pass latency): "
                                                       "no quality tables or figures."],
                                         per_image=[], failures=failures_table(run), n_failed=0))  # fmt: skip
    figures: list[FigureRef] = []
    notes: list[str] = []
    path = fig_dir / "psnr_vs_latency.png"
    note = plot_psnr_vs_latency(run, colors, path)
    if note is None:
        figures.append(
            FigureRef(
                path,
                "Quality vs speed",
                "Mean PSNR against median latency (log scale) per dataset and scale; the dashed staircase is "
                "the Pareto front (no other method is both faster and better). Latency is that of the largest "
                "input measured for each method and device.",
            )
        )
    else:
        notes.append(note)
    path = fig_dir / "gain_over_bicubic.png"
    note = plot_gain_over_bicubic(run, colors, path)
    if note is None:
        figures.append(
            FigureRef(
                path,
                "PSNR gain over bicubic, per image",
                "Each point is one image: the method's PSNR minus bicubic's on the same image; boxes show "
                "median and quartiles. A method that helps every image sits wholly above zero.",
            )
        )
    else:
        notes.append(note)
    visual, visual_notes = visual_comparisons(run, colors, fig_dir, crop=spec, hr_loader=hr_loader)
    figures += visual
    notes += visual_notes

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
    )
    return _write(run, content)


def _write(run: Run, content: ReportContent) -> dict[str, Path]:
    md_path, html_path = run.path / "report.md", run.path / "report.html"
    md_path.write_text(render_markdown(content, run.path), encoding="utf-8")
    html_path.write_text(render_html(content), encoding="utf-8")
    written = {"report.md": md_path, "report.html": html_path}
    written.update({f.path.relative_to(run.path).as_posix(): f.path for f in content.figures})
    return written
