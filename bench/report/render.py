"""Render the report's content into Markdown and one self-contained HTML file with Jinja2."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from bench.report.rundata import Run
from bench.report.tables import Cell, Table
from bench.report.visual import FigureRef

__all__ = ["ReportContent", "header_fields", "md_table", "render_markdown", "render_html"]

PROTOCOLS = {
    "paper": (
        "LR by MATLAB-exact bicubic imresize of the uint8 RGB HR image; SR rounded to "
        "uint8; metrics on Y (BT.601 studio range, as MATLAB rgb2ycbcr) with scale pixels shaved; "
        "SSIM as Wang et al. 2004 (11×11 Gaussian, σ 1.5, no downsampling); dataset score = mean over images"
    ),
    "legacy-y": (
        "the Y-only pipeline of the SRCNN/VDSR MATLAB scripts: Y of the HR image rounded to 8 bits, LR = "
        "imresize of that Y plane kept in double; metrics on Y with scale pixels shaved; reproduces the "
        "historic bicubic rows"
    ),
}


@dataclass
class ReportContent:
    """Everything the templates show; tables are format-neutral, figures are PNG files."""

    title: str
    header: list[tuple[str, str]]
    paper: Table | None
    leads: Table | None
    cis: Table | None
    published: Table | None
    cost: Table | None
    figures: list[FigureRef]
    figure_notes: list[str]
    per_image: list[tuple[str, Table]]
    failures: Table | None
    n_failed: int = 0
    budget: Table | None = None  # which model for which budget


def _text(value: object, default: str = "unknown") -> str:
    return default if value is None or value == "" else str(value)


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    """The first of `keys` present with a value (env.json names vary: `date`/`date_utc`, `cpu`/`cpu_model`)."""
    for key in keys:
        if mapping.get(key) not in (None, ""):
            return mapping[key]
    return None


def header_fields(run: Run) -> list[tuple[str, str]]:
    """(label, value) pairs every report opens with: date, commit, machine, versions, command, protocol."""
    env, config = run.env, run.config
    cpu = _text(_first(env, "cpu", "cpu_model"))
    if env.get("cpu_count"):
        cpu += f" ({env['cpu_count']} cores)"
    machine = f"CPU: {cpu}; GPU: {_text(env.get('gpu'), 'none')}"
    if env.get("platform"):
        machine += f"; {env['platform']}"
    if env.get("torch_threads") is not None:
        machine += f"; torch threads: {env['torch_threads']}"
    if env.get("matmul_gflops") is not None:
        try:
            machine += f"; float32 matmul: {float(env['matmul_gflops']):.0f} GFLOP/s"
        except (TypeError, ValueError):
            pass
    versions = ", ".join(
        f"{name} {env[key]}"
        for name, key in (("srbench", "srbench"), ("Python", "python"), ("torch", "torch"), ("NumPy", "numpy"),
                          ("SciPy", "scipy"))
        if env.get(key)
    )  # fmt: skip
    plugins = env.get("plugins")
    if isinstance(plugins, dict) and plugins:
        versions += "; plugins: " + ", ".join(f"{k} ({v})" for k, v in sorted(plugins.items()))
    protocol = run.protocol
    detail = config.get("protocol_detail")
    described = detail.get("description") if isinstance(detail, dict) else None
    text = f"{protocol}: {described or PROTOCOLS.get(protocol, 'a named protocol variant')}"
    settings = []
    for column in ("channel", "shave", "degradation"):
        if column in run.quality.columns:
            values = sorted({str(v) for v in run.quality[column].dropna()})
            if values:
                settings.append(f"{column} = {', '.join(values)}")
    if settings:
        text += f" (recorded per row: {'; '.join(settings)})"
    fields = [
        ("Date", _text(_first(env, "date", "date_utc"))),
        ("Commit", _text(env.get("git_commit"), "none (an installed srbench)")),
        ("Machine", machine),
        ("Versions", versions or "unknown"),
        ("Command", _text(config.get("command"))),
        ("Protocol", text),
    ]
    device = _first(config, "resolved_device", "device")
    if device:
        fields.append(("Device", str(device)))
    return fields


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("\n", " ")


def _md_cell(cell: Cell) -> str:
    return "".join(
        f"**{_md_escape(s.text)}**" if s.bold and s.text else _md_escape(s.text) for s in cell.spans
    )


def md_table(table: Table) -> str:
    """A GitHub pipe table; numeric columns right-aligned; a bold label row above each row group."""
    numeric = [
        all(row[i].numeric or row[i].text == "—" for row in table.rows) for i in range(len(table.header))
    ]
    lines = [
        "| " + " | ".join(_md_escape(h) for h in table.header) + " |",
        "|" + "|".join("---:" if numeric[i] and i else "---" for i in range(len(table.header))) + "|",
    ]
    for label, rows in table.row_groups():
        if label:  # a group's label row: bold in the first column, the others empty
            lines.append(f"| **{_md_escape(label)}** |" + " |" * (len(table.header) - 1))
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def html_cell(cell: Cell) -> str:
    """One cell's inner HTML (escaped), bold spans in <strong>."""
    return "".join(
        f"<strong>{html.escape(s.text)}</strong>" if s.bold else html.escape(s.text) for s in cell.spans
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bench.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md_table"] = md_table
    env.filters["html_cell"] = lambda cell: Markup(html_cell(cell))
    return env


def render_markdown(content: ReportContent, run_dir: Path) -> str:
    """report.md: figures linked relative to the run folder (`figures/*.png`)."""
    figures = [(f, f.path.relative_to(run_dir).as_posix()) for f in content.figures]
    return _environment().get_template("report.md.j2").render(c=content, figures=figures)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(content: ReportContent) -> str:
    """report.html: one file, CSS inline, figures as base64 data URIs, a CSP forbidding any fetch."""
    figures = [(f, _data_uri(f.path)) for f in content.figures]
    return _environment().get_template("report.html.j2").render(c=content, figures=figures)
