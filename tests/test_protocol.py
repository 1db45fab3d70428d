"""The paper protocol reproduces the reference bicubic table; legacy-y reproduces the published row."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main

# PROTOCOL.md, "Bicubic baseline under this protocol"
PAPER_BICUBIC = {
    ("set5", 2): (33.6734, 0.93029),
    ("set5", 3): (30.4033, 0.86891),
    ("set5", 4): (28.4290, 0.81114),
    ("set14", 2): (30.2302, 0.86905),
    ("set14", 3): (27.5367, 0.77447),
    ("set14", 4): (25.9940, 0.70292),
}
# PROTOCOL.md, "published (legacy Y pipeline)": VDSR / EDSR Table 3
LEGACY_BICUBIC = {
    ("set5", 2): 33.66,
    ("set5", 3): 30.39,
    ("set5", 4): 28.42,
    ("set14", 2): 30.24,
    ("set14", 3): 27.55,
    ("set14", 4): 26.00,
}


@pytest.fixture
def shared(shared_datasets: Path) -> Path:
    return shared_datasets


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str, shared: Path) -> pd.DataFrame:
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(shared))
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / protocol
    rc = main(
        [
            "run",
            "--methods",
            "bicubic",
            "--datasets",
            "set5,set14",
            "--scales",
            "2,3,4",
            "--pass",
            "quality",
            "--protocol",
            protocol,
            "--no-report",
            "--save-images",
            "none",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    return pd.read_csv(out / "summary.csv")


def test_paper_protocol_reproduces_reference_bicubic_table(tmp_path, monkeypatch, shared) -> None:
    summary = _run(tmp_path, monkeypatch, "paper", shared)
    assert len(summary) == 6  # 6 cells x (PSNR, SSIM) = the 12 numbers of the table
    for row in summary.itertuples():
        ref_psnr, ref_ssim = PAPER_BICUBIC[(row.dataset, row.scale)]
        assert abs(row.psnr - ref_psnr) <= 0.001, (row.dataset, row.scale, row.psnr)
        assert abs(row.ssim - ref_ssim) <= 0.00005, (row.dataset, row.scale, row.ssim)
    quality = pd.read_csv(tmp_path / "paper" / "quality.csv")
    assert set(quality["protocol"]) == {"paper"} and set(quality["channel"]) == {"y"}


def test_legacy_y_protocol_reproduces_published_bicubic_row(tmp_path, monkeypatch, shared) -> None:
    summary = _run(tmp_path, monkeypatch, "legacy-y", shared)
    assert len(summary) == 6
    for row in summary.itertuples():
        assert abs(row.psnr - LEGACY_BICUBIC[(row.dataset, row.scale)]) <= 0.01, (
            row.dataset,
            row.scale,
            row.psnr,
        )
    quality = pd.read_csv(tmp_path / "legacy-y" / "quality.csv")
    assert set(quality["protocol"]) == {"legacy-y"} and set(quality["degradation"]) == {"bicubic-y"}


def test_bridge_is_scored_on_its_gray_value(tmp_path, monkeypatch, shared) -> None:
    _run(tmp_path, monkeypatch, "paper", shared)
    _run(tmp_path, monkeypatch, "basicsr", shared)
    paper = pd.read_csv(tmp_path / "paper" / "quality.csv").set_index(["dataset", "scale", "image"])["psnr"]
    studio = pd.read_csv(tmp_path / "basicsr" / "quality.csv").set_index(["dataset", "scale", "image"])[
        "psnr"
    ]
    # bicubic of a gray image stays gray (R = G = B), so studio Y = 16 + 219/255 * gray exactly: scoring the
    # gray value (PROTOCOL.md step 4) reads 20 log10(255/219) dB lower than studio Y, and only on bridge
    shift = (studio - paper).round(9)
    bridge = shift.index.get_level_values("image") == "bridge"
    assert (shift[bridge] == round(20 * math.log10(255 / 219), 9)).all() and bridge.sum() == 3
    assert (shift[~bridge] == 0).all()
