"""Tests of bench.report: tables against summary.csv, statistics, crops, and the HTML in a real browser."""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest_report_helpers import (
    DATASETS,
    METHODS,
    SCALES,
    ExtraMethod,
    add_methods,
    make_run,
    synthetic_hr,
)
from PIL import Image

from bench.errors import UsageError
from bench.report import parse_crop, write_report
from bench.report.leaderboard import latency_at_720p
from bench.report.plots import pareto_front
from bench.report.published import load_published
from bench.report.rundata import Run
from bench.report.stats import bootstrap_ci, min_attainable_p, paired_permutation_p
from bench.report.visual import choose_crop, disagreement_map

LABEL = {"set5": "Set5", "set14": "Set14"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    run = make_run(tmp_path_factory.mktemp("report"), failure=True)
    return run, write_report(run, hr_loader=synthetic_hr)


# ---------------------------------------------------------------- parsing the reports back


def _md_section_table(md: str, heading: str) -> list[list[str]]:
    """Rows (header first) of the first pipe table after `heading` in a Markdown document."""
    lines = md[md.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if not all(re.fullmatch(r"-+:?", c) for c in cells):
            rows.append(cells)
    return rows


class _Tables(HTMLParser):
    """Collects <table class=...> contents: cell text and whether it holds <strong> parts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, list[str]]]]] = {}
        self.imgs: list[dict[str, str | None]] = []
        self.links: list[tuple[str, str]] = []
        self._table: list[list[tuple[str, list[str]]]] | None = None
        self._cell: list[str] | None = None
        self._strong: list[str] = []
        self._in_strong = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in ("src", "href", "action", "data", "poster"):
            if a.get(name):
                self.links.append((tag, a[name] or ""))
        if tag == "img":
            self.imgs.append(a)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("class") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell, self._strong = [], []
        elif tag == "strong":
            self._in_strong = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table is not None and self._cell is not None:
            self._table[-1].append(("".join(self._cell).strip(), self._strong))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "strong":
            self._in_strong = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
            if self._in_strong:
                self._strong.append(data)


def _parse_html(text: str) -> _Tables:
    parser = _Tables()
    parser.feed(text)
    return parser


def _score_columns(rows: list[list[Any]]) -> list[list[Any]]:
    """The quality table reduced to its Method and (dataset, scale) columns, group label rows dropped.

    Works on Markdown rows (cell text) and parsed HTML rows ((text, strong parts) per cell).
    """

    def text(cell: Any) -> str:
        return cell if isinstance(cell, str) else cell[0]

    header = [text(c) for c in rows[0]]
    keep = [0] + [i for i, h in enumerate(header) if re.fullmatch(r".+ ×\d+", h)]
    body = [
        r
        for r in rows[1:]
        if len(r) == len(header) and not (text(r[0]).startswith("**") and not any(map(text, r[1:])))
    ]
    return [[row[i] for i in keep] for row in [rows[0], *body]]


def _split_cell(text: str) -> tuple[float, float]:
    psnr, ssim = re.sub(r"[*†‡§]", "", text).split(" / ")
    return float(psnr), float(ssim)


def _expected(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "summary.csv").set_index(["method", "dataset", "scale"])


# ---------------------------------------------------------------- tables


def test_report_writes_md_html_and_figures(report: tuple[Path, dict[str, Path]]) -> None:
    run, written = report
    assert {
        "report.md",
        "report.html",
        "figures/psnr_vs_latency.png",
        "figures/gain_over_bicubic.png",
    } <= set(written)
    assert any(name.startswith("figures/visual_") for name in written)
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0
        assert path.parent in (run, run / "figures")


def test_report_md_paper_table_matches_summary(report: tuple[Path, dict[str, Path]]) -> None:
    run, _ = report
    summary = _expected(run)
    rows = _score_columns(_md_section_table((run / "report.md").read_text("utf-8"), "## Quality"))
    header, body = rows[0], rows[1:]
    assert header[0] == "Method"
    assert header[1:] == [f"{LABEL[d]} ×{s}" for d in DATASETS for s in SCALES]
    assert [r[0] for r in body] == list(METHODS)
    for row in body:
        for label, cell in zip(header[1:], row[1:], strict=True):
            dataset = next(d for d, name in LABEL.items() if label.startswith(name + " "))
            scale = int(label.split("×")[1])
            psnr, ssim = _split_cell(cell.replace("**", ""))
            want = summary.loc[(row[0], dataset, scale)]
            assert psnr == pytest.approx(round(want["psnr"], 2), abs=1e-9)
            assert ssim == pytest.approx(round(want["ssim"], 4), abs=1e-9)
            best = summary.xs((dataset, scale), level=("dataset", "scale"))["psnr"].idxmax()
            assert cell.startswith("**") == (row[0] == best), (label, row[0], cell)


def test_report_html_paper_table_matches_summary_and_marks_best(report: tuple[Path, dict[str, Path]]) -> None:
    run, _ = report
    summary = _expected(run)
    table = _score_columns(_parse_html((run / "report.html").read_text("utf-8")).tables["paper"])
    header = [text for text, _ in table[0]]
    for row in table[1:]:
        method = row[0][0]
        for label, (text, strong) in zip(header[1:], row[1:], strict=True):
            dataset = next(d for d, name in LABEL.items() if label.startswith(name + " "))
            scale = int(label.split("×")[1])
            psnr, ssim = _split_cell(text)
            want = summary.loc[(method, dataset, scale)]
            assert (psnr, ssim) == (round(want["psnr"], 2), round(want["ssim"], 4))
            column = summary.xs((dataset, scale), level=("dataset", "scale"))
            assert (f"{psnr:.2f}" in strong) == (method == column["psnr"].idxmax())
            assert (f"{ssim:.4f}" in strong) == (method == column["ssim"].idxmax())


def test_report_published_table_shows_difference(report: tuple[Path, dict[str, Path]]) -> None:
    run, _ = report
    summary = _expected(run)
    published = {
        (p.method, p.dataset, p.scale): p for p in load_published() if p.protocol == "paper" and p.comparable
    }
    rows = _md_section_table((run / "report.md").read_text("utf-8"), "## Measured vs published")
    assert rows[0][:6] == [
        "Method",
        "Column",
        "Measured PSNR / SSIM",
        "Published PSNR / SSIM",
        "Δ PSNR (dB)",
        "Δ SSIM",
    ]
    assert len(rows) - 1 == len([k for k in published if k in summary.index])
    for method, column, _measured, pub, d_psnr, _d_ssim, _source in rows[1:]:
        dataset = next(d for d, name in LABEL.items() if column.startswith(name + " "))
        scale = int(column.split("×")[1])
        p = published[(method, dataset, scale)]
        assert _split_cell(pub) == (p.psnr, p.ssim)
        want = summary.loc[(method, dataset, scale), "psnr"] - p.psnr
        assert float(d_psnr.replace("−", "-")) == pytest.approx(want, abs=1e-3)
    md = (run / "report.md").read_text("utf-8")
    assert "Reference implementation of the paper protocol" in md  # every number carries its source


def test_report_failures_section_lists_failed_rows(report: tuple[Path, dict[str, Path]]) -> None:
    run, _ = report
    md = (run / "report.md").read_text("utf-8")
    rows = _md_section_table(md, "## Failures")
    assert rows[1][:3] == ["fsrcnn", "Set14 ×4", "img2"]
    assert "out of memory" in rows[1][4]
    assert "‡" in md.split("## Uncertainty")[0]


def test_report_header_has_provenance(report: tuple[Path, dict[str, Path]]) -> None:
    run, _ = report
    config, env = json.loads((run / "config.json").read_text()), json.loads((run / "env.json").read_text())
    for text in ((run / "report.md").read_text("utf-8"), (run / "report.html").read_text("utf-8")):
        head = text[: text.index("Quality")]
        for value in (
            env["date"],
            env["git_commit"],
            env["cpu"],
            env["python"],
            env["torch"],
            env["numpy"],
            config["command"],
            "paper",
        ):
            assert value in head


def test_report_per_image_tables_are_collapsible(report: tuple[Path, dict[str, Path]]) -> None:
    run, _ = report
    text = (run / "report.html").read_text("utf-8")
    assert text.count("<details>") == len(DATASETS) * len(SCALES)
    quality = pd.read_csv(run / "quality.csv")
    rows = _md_section_table((run / "report.md").read_text("utf-8"), "### Set5 ×2\n")
    row = next(r for r in rows if r[0] == "img0")
    want = quality[(quality["dataset"] == "set5") & (quality["scale"] == 2) & (quality["image"] == "img0")]
    for method, cell in zip(rows[0][1:], row[1:], strict=True):
        psnr = want[want["method"] == method]["psnr"].iloc[0]
        assert _split_cell(cell.replace("**", ""))[0] == round(psnr, 2)


def test_report_html_is_self_contained(report: tuple[Path, dict[str, Path]]) -> None:
    run, written = report
    text = (run / "report.html").read_text("utf-8")
    parsed = _parse_html(text)
    figures = [n for n in written if n.startswith("figures/")]
    assert len(parsed.imgs) == len(figures)
    assert all((img.get("src") or "").startswith("data:image/png;base64,") for img in parsed.imgs)
    assert all(url.startswith(("data:", "#")) for _, url in parsed.links), parsed.links
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert "default-src 'none'" in text  # the browser itself refuses any fetch the page might attempt


def test_report_without_latency_or_images_says_why(tmp_path: Path) -> None:
    run = make_run(tmp_path, with_latency=False, with_images=False, with_methods=False)
    written = write_report(run)
    assert set(written) == {"report.md", "report.html", "figures/gain_over_bicubic.png"}
    md = (run / "report.md").read_text("utf-8")
    assert "No latency.csv in this run" in md
    assert "No SR images saved" in md
    assert "## Failures" not in md


def test_report_removes_stale_figures(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    write_report(run, hr_loader=synthetic_hr)
    (run / "latency.csv").unlink()
    written = write_report(run, hr_loader=synthetic_hr)
    assert not (run / "figures" / "psnr_vs_latency.png").exists()
    assert sorted(p.name for p in (run / "figures").iterdir()) == sorted(
        Path(n).name for n in written if "/" in n
    )


def test_report_given_crop_draws_that_window(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    written = write_report(run, crop=("set5", "img1", 2, 4, 6, 16), hr_loader=synthetic_hr)
    visuals = [n for n in written if "visual_" in n]
    assert visuals == ["figures/visual_set5_x2_img1.png"]
    assert "16×16 HR-pixel crop (as requested)" in (run / "report.md").read_text("utf-8")


def test_report_crop_for_unsaved_image_is_usage_error(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with pytest.raises(UsageError, match="no saved SR images for set5/nope x2"):
        write_report(run, crop="set5/nope/x2", hr_loader=synthetic_hr)


def test_report_not_a_run_folder_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a run folder: expected quality.csv"):
        write_report(tmp_path)


def test_report_published_legacy_protocol_uses_legacy_row(tmp_path: Path) -> None:
    run = make_run(tmp_path, protocol="legacy-y")
    write_report(run, hr_loader=synthetic_hr)
    rows = _md_section_table((run / "report.md").read_text("utf-8"), "## Measured vs published")
    assert {r[0] for r in rows[1:]} == {"bicubic"}
    assert "33.66 / 0.9299" in [r[3] for r in rows[1:]]


# ---------------------------------------------------------------- the leaderboard


def _first_cells(rows: list[list[str]]) -> list[str]:
    return [r[0] for r in rows[1:]]


def _is_group_row(row: list[str]) -> bool:
    return row[0].startswith("**") and not any(row[1:])


def test_report_quality_table_groups_methods_with_their_cost(tmp_path: Path) -> None:
    run = make_run(tmp_path, with_images=False)
    add_methods(
        run,
        [
            ExtraMethod("net-x", 32.0, params=272_419, group="zoo", training_data="DF2K", macs_720p=70.5e9),
            ExtraMethod("imdn", 32.2, params=694_404, group=None, training_data="DIV2K", macs_720p=159.6e9),
            ExtraMethod("mystery", 30.5),  # no methods.csv row, in no registry group
        ],
        order=["net-x", "bicubic", "mystery", "srcnn", "imdn", "fsrcnn"],
    )
    write_report(run)
    rows = _md_section_table((run / "report.md").read_text("utf-8"), "## Quality")
    assert rows[0][:4] == ["Method", "Training data", "Params", "Mult-adds 720p (G)"]
    # methods.csv's extra_group for net-x (no registry group has it); the registry's groups for the
    # others (imdn has no extra_group); config order within a group
    assert _first_cells(rows) == [
        "**Classical**", "bicubic", "**Trained here**", "srcnn", "fsrcnn",
        "**Published models**", "net-x", "imdn", "**Other**", "mystery",
    ]  # fmt: skip
    assert all(_is_group_row(r) for r in rows[1:] if r[0].startswith("**"))
    facts = {r[0]: r[1:4] for r in rows[1:] if not _is_group_row(r)}
    assert facts["net-x"] == ["DF2K", "272K", "70.5"]
    assert facts["imdn"] == ["DIV2K", "694K", "160"]
    assert facts["srcnn"] == ["—", "8.1K", "7.49"]
    assert facts["bicubic"][:2] == ["—", "0"] and facts["mystery"] == ["—", "—", "—"]
    html = _parse_html((run / "report.html").read_text("utf-8")).tables["paper"]
    labels = [row[0][0] for row in html[1:] if len(row) == 1]  # the group rows span the table
    assert labels == ["Classical", "Trained here", "Published models", "Other"]
    # one order for the whole report: the per-image tables list the methods group by group too
    per_image = _md_section_table((run / "report.md").read_text("utf-8"), "### Set5 ×2\n")
    assert per_image[0][1:] == ["bicubic", "srcnn", "fsrcnn", "net-x", "imdn", "mystery"]


def test_report_quality_table_single_group_has_no_group_rows(tmp_path: Path) -> None:
    run = make_run(tmp_path, with_images=False, with_methods=False, with_latency=False)
    add_methods(run, [ExtraMethod("pan", 32.0), ExtraMethod("imdn", 32.2)], order=["pan", "imdn"])
    quality = pd.read_csv(run / "quality.csv")
    quality[quality["method"].isin(["pan", "imdn"])].to_csv(run / "quality.csv", index=False)
    summary = pd.read_csv(run / "summary.csv")
    summary[summary["method"].isin(["pan", "imdn"])].to_csv(run / "summary.csv", index=False)
    write_report(run)
    rows = _md_section_table((run / "report.md").read_text("utf-8"), "## Quality")
    assert _first_cells(rows) == ["pan", "imdn"]
    assert rows[0][1] == "Set5 ×2"  # no methods.csv: no empty cost columns


_BUDGET_METHODS = [
    ExtraMethod("a", 35.0, params=50_000, ms_720p=30.0),
    ExtraMethod("b", 36.0, params=90_000, ms_720p=45.0),
    ExtraMethod("f", 36.5, params=100_000, ms_720p=60.0),  # exactly at the budget: counts
    ExtraMethod("c", 37.0, params=400_000, ms_720p=150.0),
    ExtraMethod("c2", 37.0, params=300_000, ms_720p=190.0),  # ties c: smaller, but slower
    ExtraMethod("d", 38.0, params=900_000, ms_720p=800.0),
    ExtraMethod("e", 39.0, params=2_000_000, ms_720p=1500.0),  # over every budget
    ExtraMethod("g", 36.2, ms_720p=20.0),  # no parameter count: a latency candidate only
]


def test_budget_table_picks_best_psnr_within_each_budget(tmp_path: Path) -> None:
    run = make_run(tmp_path, with_images=False)
    add_methods(run, _BUDGET_METHODS)
    write_report(run)
    rows = _md_section_table((run / "report.md").read_text("utf-8"), "## Which model for which budget")
    assert rows[0] == ["Budget", *(f"{LABEL[d]} ×{s}" for d in DATASETS for s in SCALES)]
    want = {
        "≤ 100K parameters": "**f** 36.50 (100K)",
        "≤ 500K parameters": "**c2** 37.00 (300K)",
        "≤ 1M parameters": "**d** 38.00 (900K)",
        "≤ 50 ms at 1280×720, cpu (Fake CPU)": "**g** 36.20 (20 ms)",
        "≤ 200 ms at 1280×720, cpu (Fake CPU)": "**c** 37.00 (150 ms)",
        "≤ 1000 ms at 1280×720, cpu (Fake CPU)": "**d** 38.00 (800 ms)",
    }
    assert {r[0]: set(r[1:]) for r in rows[1:]} == {label: {cell} for label, cell in want.items()}


def test_budget_table_without_720p_latency_says_so(report: tuple[Path, dict[str, Path]]) -> None:
    run, _ = report  # its latency rows are 128x128 and 256x256 outputs, none 1280x720
    rows = _md_section_table((run / "report.md").read_text("utf-8"), "## Which model for which budget")
    by_label = {r[0]: r[1:] for r in rows[1:]}
    assert by_label["≤ 50 / 200 / 1000 ms at 1280×720"] == ["no latency measured"] * len(DATASETS) * len(
        SCALES
    )
    summary = _expected(run)
    for label in ("≤ 100K parameters", "≤ 1M parameters"):  # every base method is under 100K
        for (dataset, scale), cell in zip(
            ((d, s) for d in DATASETS for s in SCALES), by_label[label], strict=True
        ):
            best = summary.xs((dataset, scale), level=("dataset", "scale"))["psnr"].idxmax()
            assert cell.startswith(f"**{best}** ")


def test_latency_at_720p_takes_1280x720_outputs_per_image() -> None:
    rows = [  # (method, scale, output_h, output_w, batch, median_ms)
        ("m", 3, 720, 1281, 1, 90.0),  # ceil(1280 / 3) * 3 = 1281: the 720p row at x3
        ("m", 3, 720, 1281, 2, 160.0),  # a batch of two: 80 ms per image, the faster configuration
        ("m", 3, 1440, 2562, 1, 300.0),  # another size: ignored
        ("n", 2, 360, 640, 1, 5.0),  # not 720p
    ]
    latency = pd.DataFrame(rows, columns=["method", "scale", "output_h", "output_w", "batch", "median_ms"])
    latency["device"] = "cpu"
    empty = pd.DataFrame(columns=["method", "dataset", "scale", "image", "psnr", "ssim"])
    run = Run(Path("."), quality=empty, summary=empty, latency=latency, methods=None)
    assert latency_at_720p(run) == {"cpu": {("m", 3): 80.0}}


def _red_pixels(path: Path) -> int:
    """Pixels of the published-models colour (#d62728) in a figure."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    return int((np.abs(rgb - np.array([214, 39, 40])).sum(axis=2) < 30).sum())


def test_report_pareto_plots_show_each_method_where_it_was_measured(tmp_path: Path) -> None:
    run = make_run(tmp_path, with_images=False)
    # a published model with a parameter count but no latency: on the size plot, absent from the speed plot
    add_methods(run, [ExtraMethod("pan", 32.0, params=272_419, group="zoo")])
    written = write_report(run)
    assert {"figures/psnr_vs_params.png", "figures/psnr_vs_latency.png"} <= set(written)
    assert _red_pixels(run / "figures" / "psnr_vs_params.png") > 50
    assert _red_pixels(run / "figures" / "psnr_vs_latency.png") == 0  # neither a point nor a legend entry
    bare = make_run(tmp_path / "bare", with_images=False, with_methods=False)
    assert "figures/psnr_vs_params.png" not in write_report(bare)
    assert "No parameter counts (methods.csv) in this run" in (bare / "report.md").read_text("utf-8")


_PUBLISHED = """
[[table]]
method = "pan"
protocol = "paper"
source = "Test source A"
note = "The authors crop 4 pixels."
[table.scores.set5]
x2 = { psnr = 38.00, ssim = 0.9605, flag = "V" }
x4 = { psnr = 32.13, ssim = 0.8948, flag = "V" }
[table.scores.set14]
x2 = { psnr = 33.70, ssim = 0.9200, flag = "I" }
x4 = { psnr = 28.80, ssim = 0.7800, flag = "I" }

[[table]]
method = "imdn"
protocol = "paper"
source = "Test source B"
[table.scores.set5]
x2 = { psnr = 38.00, ssim = 0.9600, flag = "U" }
x4 = { psnr = 32.21, ssim = 0.8900, flag = "V" }
"""


def test_report_published_footnotes_only_cells_beyond_their_flags_tolerance(tmp_path: Path) -> None:
    run = make_run(tmp_path, with_images=False)
    pan = {("set5", 2): 37.90, ("set5", 4): 32.10, ("set14", 2): 33.62, ("set14", 4): 28.62}
    imdn = {("set5", 2): 37.00, ("set5", 4): 32.00}  # U far off: never footnoted; V 0.21 dB off
    add_methods(run, [ExtraMethod("pan", 30.0, psnr_at=pan), ExtraMethod("imdn", 30.0, psnr_at=imdn)])
    toml = tmp_path / "published.toml"
    toml.write_text(_PUBLISHED)
    write_report(run, published=toml)
    md = (run / "report.md").read_text("utf-8")
    rows = _md_section_table(md, "## Measured vs published")
    cells = {(r[0], r[1]): r for r in rows[1:]}
    assert set(cells) == {("pan", f"{LABEL[d]} ×{s}") for d in DATASETS for s in SCALES} | {
        ("imdn", "Set5 ×2"),
        ("imdn", "Set5 ×4"),
    }
    marked = {key: re.search(r"\((\w)\)$", r[4]) for key, r in cells.items()}
    assert {key: m.group(1) for key, m in marked.items() if m} == {
        ("pan", "Set5 ×2"): "a",  # V, 0.10 dB off
        ("pan", "Set14 ×4"): "a",  # I, 0.18 dB off
        ("imdn", "Set5 ×4"): "b",  # V, 0.21 dB off
    }
    # within tolerance: pan Set5 x4 (V, 0.03 dB), pan Set14 x2 (I, 0.08 dB); imdn Set5 x2 is U
    flags = {("pan", "Set5 ×2"): "V", ("pan", "Set14 ×2"): "I", ("imdn", "Set5 ×2"): "U"}
    for key, flag in flags.items():
        assert cells[key][3].endswith(f" {flag}")  # every row shows its number's flag
    assert "- (a) pan Set5 ×2 (V), Set14 ×4 (I): " in md and "The authors crop 4 pixels." in md
    assert re.search(r"- \(b\) imdn Set5 ×4 \(V\): .*the gap is unexplained", md)


def _cost_rows(run: Path) -> list[list[str]]:
    return _md_section_table((run / "report.md").read_text("utf-8"), "## Latency and cost")


def test_report_cost_table_shows_fraction_of_matmul_peak(report: tuple[Path, dict[str, Path]]) -> None:
    run, _ = report
    rows = _cost_rows(run)
    column = rows[0].index("GFLOP/s (% of peak)")
    peak = json.loads((run / "env.json").read_text())["matmul_gflops"]
    latency = pd.read_csv(run / "latency.csv").set_index(["method", "scale", "input_h"])
    for row in rows[1:]:
        method, scale, size = row[0], int(row[1].lstrip("×")), int(row[5].split("×")[0])
        gflops = latency.loc[(method, scale, size), "gflops"]
        if math.isnan(gflops):
            assert row[column] == "—"
            continue
        pct = 100 * gflops / peak
        assert row[column] == (f"{gflops:,.1f} ({pct:.1f}%)" if pct < 10 else f"{gflops:,.1f} ({pct:.0f}%)")
    assert "of this machine's float32 matrix-product rate (51 GFLOP/s" in (run / "report.md").read_text()


def test_report_cost_table_without_probe_shows_gflops_only(tmp_path: Path) -> None:
    run = make_run(tmp_path, with_images=False)
    env = json.loads((run / "env.json").read_text())
    (run / "env.json").write_text(json.dumps({k: v for k, v in env.items() if k != "matmul_gflops"}))
    write_report(run)
    rows = _cost_rows(run)
    column = rows[0].index("GFLOP/s (% of peak)")
    assert all("%" not in r[column] for r in rows[1:])
    assert any(re.fullmatch(r"[\d,]+\.\d", r[column]) for r in rows[1:])
    assert "no matmul probe, so no % of peak" in (run / "report.md").read_text("utf-8")


# ---------------------------------------------------------------- units


def test_parse_crop_forms() -> None:
    assert parse_crop("set5/baby/x4") == parse_crop("set5,baby,4") == parse_crop("set5, baby, x4")
    assert parse_crop("set14/zebra/x3@10,20,48") == parse_crop("set14,zebra,3,10,20,48")
    assert parse_crop("set5/baby/x2@1,2").size == 64
    spec = parse_crop("set14,zebra,3,10,20,48")
    assert (spec.dataset, spec.image, spec.scale, spec.y, spec.x, spec.size) == (
        "set14",
        "zebra",
        3,
        10,
        20,
        48,
    )
    with pytest.raises(UsageError, match="expected DATASET/IMAGE/xSCALE"):
        parse_crop("set5,baby")
    with pytest.raises(UsageError, match="expected DATASET/IMAGE/xSCALE"):
        parse_crop("set5/baby")
    with pytest.raises(UsageError, match="must be integers"):
        parse_crop("set5,baby,four")


def test_paired_permutation_p_exact_floor() -> None:
    # all five differences positive: the most extreme of 2^5 sign patterns, two-sided
    assert paired_permutation_p([3, 4, 5, 6, 7], [1, 1, 1, 1, 1]) == pytest.approx(2 / 32)
    assert min_attainable_p(5) == pytest.approx(0.0625)
    assert paired_permutation_p(np.arange(8.0) + 1, np.zeros(8)) == pytest.approx(2 / 256)
    assert paired_permutation_p([1, 2, 3], [1, 2, 3]) == 1.0


def test_paired_permutation_p_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.2, 1, 7), rng.normal(0, 1, 7)
    d = a - b
    signs = np.array(np.meshgrid(*[[-1, 1]] * 7)).reshape(7, -1).T
    null = (signs * d).mean(axis=1)
    t = d.mean()
    want = min(1.0, 2 * min(np.mean(null >= t - 1e-12), np.mean(null <= t + 1e-12)))
    assert paired_permutation_p(a, b) == pytest.approx(want)


def test_bootstrap_ci_is_deterministic_and_brackets_mean() -> None:
    values = [30.1, 31.2, 29.8, 33.0, 35.2]
    lo, hi = bootstrap_ci(values)
    assert lo < np.mean(values) < hi
    assert bootstrap_ci(values) == (lo, hi)
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert all(math.isnan(v) for v in bootstrap_ci([30.0, math.inf]))


def test_pareto_front_keeps_undominated_points() -> None:
    times, psnrs = [1.0, 5.0, 3.0, 10.0], [30.0, 31.0, 29.0, 32.0]
    assert pareto_front(times, psnrs) == [0, 1, 3]


def test_choose_crop_finds_where_methods_differ() -> None:
    hr = synthetic_hr("set5", "img0", 1)
    a = hr.copy()
    b = hr.copy()
    b[20:28, 10:18] = 255 - b[20:28, 10:18]
    y, x, score = choose_crop(disagreement_map([a, b]), 8)
    assert (y, x) == (20, 10) and score > 0
    assert choose_crop(disagreement_map([b], hr), 8)[:2] == (20, 10)


def test_published_numbers_load_with_sources() -> None:
    scores = load_published()
    bicubic = {(p.dataset, p.scale): p for p in scores if p.method == "bicubic" and p.protocol == "paper"}
    assert bicubic[("set5", 2)].psnr == 33.6734 and bicubic[("set14", 4)].ssim == 0.70292
    espcn = [p for p in scores if p.method == "espcn"]
    assert {p.comparable for p in espcn} == {True, False}
    assert all(math.isnan(p.ssim) for p in espcn if not p.comparable)
    assert all(p.source for p in scores)


# ---------------------------------------------------------------- the page in a real browser

_PROBE = """<script>
window.__errors = [];
addEventListener('error', e => __errors.push('error: ' + (e.message || (e.target && (e.target.src || e.target.href)))), true);
addEventListener('unhandledrejection', e => __errors.push('rejection: ' + e.reason));
addEventListener('securitypolicyviolation', e => __errors.push('csp: ' + e.blockedURI));
for (const level of ['error', 'warn']) {
  const original = console[level];
  console[level] = (...args) => { __errors.push(level + ': ' + args.join(' ')); original.apply(console, args); };
}
addEventListener('load', () => {
  // synchronously in the load handler: --dump-dom does not wait for later tasks such as decode()
  const imgs = [...document.images];
  const out = document.createElement('pre');
  out.id = 'probe-result';
  out.textContent = JSON.stringify({
    images: imgs.map(i => ({w: i.naturalWidth, h: i.naturalHeight, complete: i.complete})),
    resources: performance.getEntriesByType('resource').map(e => e.name),
    errors: __errors,
    styled: getComputedStyle(document.body).maxWidth,
  });
  document.body.appendChild(out);
});
</script>"""

# Chromium's own background services (update checks, network time, sign-in) that are not the page's
# doing; the flags below switch them off, the proxy sink catches any that remain.
_BROWSER_HOSTS = re.compile(r"(^|\.)(google\.com|googleapis\.com|gvt1\.com)$")


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


class _ProxySink:
    """A local HTTP proxy that answers nothing and records each request line: no request leaves."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.requests.append(conn.recv(4096).split(b"\r\n")[0].decode("latin-1"))
                except OSError:
                    self.requests.append("(unreadable request)")

    def __enter__(self) -> _ProxySink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _chromium(browser: str, profile: Path, proxy_port: int, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-pings",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--metrics-recording-only",
        "--disable-component-extensions-with-background-pages",
        "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate,"
        "AutofillServerCommunication,CertificateTransparencyComponentUpdater",
        f"--user-data-dir={profile}",
        # every request goes to a local sink that never forwards it: nothing can leave the machine,
        # and what the page asked for is recorded
        f"--proxy-server=http://127.0.0.1:{proxy_port}",
        "--virtual-time-budget=10000",
    ]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120, check=False)


def _request_host(line: str) -> str:
    parts = line.split()
    target = parts[1] if len(parts) > 1 else ""
    return re.sub(r"^[a-z]+://", "", target).split("/")[0].split(":")[0]


@pytest.mark.browser
def test_report_html_renders_offline_in_chromium(
    report: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium found (Debian: apt-get install chromium)")
    run, _ = report
    page = (run / "report.html").read_text("utf-8")
    # A copy in an empty folder (a relative figure path would fail to load there), with a probe
    # script; the report's policy is kept and only widened to let the probe itself run.
    probe_page = page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1)
    probe_page = probe_page.replace("<head>", "<head>\n" + _PROBE, 1)
    probe = tmp_path / "probe" / "report.html"
    probe.parent.mkdir()
    probe.write_text(probe_page, "utf-8")
    shot = tmp_path / "report.png"
    with _ProxySink() as proxy:
        dom = _chromium(browser, tmp_path / "profile1", proxy.port, "--dump-dom", probe.as_uri())
        screenshot = _chromium(
            browser,
            tmp_path / "profile2",
            proxy.port,
            "--window-size=1280,2400",
            f"--screenshot={shot}",
            (run / "report.html").as_uri(),
        )
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'<pre id="probe-result">(.*?)</pre>', dom.stdout, re.S)
    assert match, f"the probe did not report; chromium said: {dom.stderr[-2000:]}"
    result = json.loads(match.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert len(result["images"]) == page.count("<img ") > 0
    images = result["images"]
    assert all(img["w"] > 0 and img["h"] > 0 and img["complete"] for img in images), images
    assert result["resources"] == [], "the page fetched resources"
    assert result["errors"] == []
    assert result["styled"] == "1180px"  # the inline stylesheet applied
    page_requests = [r for r in proxy.requests if not _BROWSER_HOSTS.search(_request_host(r))]
    assert page_requests == []
    assert screenshot.returncode == 0, screenshot.stderr[-2000:]
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("L"))
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 10  # not a blank page


def test_report_from_a_real_run_uses_the_data_layer(tmp_path: Path) -> None:
    # end to end: the core writes the run folder (images bundled with scikit-image), the report
    # reads it and loads HR images through bench.data for the visual comparison
    from bench.cli import main

    out = tmp_path / "run"
    argv = ["run", "--methods", "bicubic,nearest", "--datasets", "sample", "--scales", "2"]
    assert main([*argv, "--pass", "quality", "--out", str(out), "--no-report", "--no-progress"]) == 0
    written = write_report(out, crop="sample/camera/x2")
    assert "figures/visual_sample_x2_camera.png" in written
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    rows = _score_columns(_md_section_table((out / "report.md").read_text("utf-8"), "## Quality"))
    for method, cell in rows[1:]:
        psnr, ssim = _split_cell(cell.replace("**", ""))
        assert (psnr, ssim) == (round(summary.loc[method, "psnr"], 2), round(summary.loc[method, "ssim"], 4))


def test_report_handles_inf_psnr_and_a_column_that_failed_entirely(tmp_path: Path) -> None:
    run = make_run(tmp_path, with_images=False)
    quality = pd.read_csv(run / "quality.csv", dtype={"error": str})
    identity = quality[quality["method"] == "bicubic"].assign(method="identity", psnr=math.inf, ssim=1.0)
    broken = quality["method"].eq("srcnn") & quality["dataset"].eq("set5") & quality["scale"].eq(2)
    quality.loc[broken, ["psnr", "ssim", "status", "error"]] = [math.nan, math.nan, "failed", "boom"]
    quality = pd.concat([quality, identity], ignore_index=True)
    quality.to_csv(run / "quality.csv", index=False)
    ok = quality[quality["status"] == "ok"]
    summary = ok.groupby(["method", "dataset", "scale"], sort=False)[["psnr", "ssim"]].mean().reset_index()
    summary.to_csv(run / "summary.csv", index=False)
    write_report(run)
    rows = _score_columns(_md_section_table((run / "report.md").read_text("utf-8"), "## Quality"))
    by_method = {r[0]: r[1:] for r in rows[1:]}
    assert by_method["srcnn"][0] == "—"  # no summary row for the failed column
    assert by_method["identity"][0].startswith("**inf**")
    assert "boom" in (run / "report.md").read_text("utf-8")


def test_cli_report_writes_and_rejects_a_bad_crop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    run = make_run(tmp_path, with_images=False, with_latency=False)
    assert main(["report", str(run)]) == 0
    assert str(run / "report.html") in capsys.readouterr().out
    assert main(["report", str(run), "--crop", "set5/img0/x2@0,0,16"]) == 2
    assert "no saved SR images for set5/img0 x2" in capsys.readouterr().err


def test_report_published_espcn_shows_comparable_and_reference_rows(tmp_path: Path) -> None:
    run = make_run(tmp_path, with_images=False)
    for name in ("quality.csv", "summary.csv", "config.json"):
        path = run / name
        path.write_text(path.read_text().replace("fsrcnn", "espcn"))
    write_report(run)
    rows = _md_section_table((run / "report.md").read_text("utf-8"), "## Measured vs published")
    espcn_x4 = [r for r in rows[1:] if r[0] == "espcn" and r[1] == "Set5 ×4"]
    assert [r[3] for r in espcn_x4] == ["30.52 / 0.8697", "30.90 / — \\*"]
    assert espcn_x4[1][4] == "n/c"  # Gaussian-blur degradation: no difference is computed
    assert not [r for r in rows[1:] if r[0] == "espcn" and r[1] == "Set5 ×2"]  # nothing published at x2
