"""The paper protocol reproduces the reference bicubic table; legacy-y reproduces the published row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
needs_shared = pytest.mark.skipif(not (SHARED / "Set5").is_dir(), reason="../shared/datasets not present")

# PROTOCOL.md, "Bicubic baseline under this protocol"
PAPER_BICUBIC = {
    ("set5", 2): (33.6734, 0.93029), ("set5", 3): (30.4033, 0.86891), ("set5", 4): (28.4290, 0.81114),
    ("set14", 2): (30.2302, 0.86905), ("set14", 3): (27.5367, 0.77447), ("set14", 4): (25.9940, 0.70292),
}
# PROTOCOL.md, "published (legacy Y pipeline)": VDSR / EDSR Table 3
LEGACY_BICUBIC = {
    ("set5", 2): 33.66, ("set5", 3): 30.39, ("set5", 4): 28.42,
    ("set14", 2): 30.24, ("set14", 3): 27.55, ("set14", 4): 26.00,
}


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str) -> pd.DataFrame:
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(SHARED))
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / protocol
    rc = main(["run", "--methods", "bicubic", "--datasets", "set5,set14", "--scales", "2,3,4", "--pass", "quality",
               "--protocol", protocol, "--no-report", "--save-images", "none", "--out", str(out)])
    assert rc == 0
    return pd.read_csv(out / "summary.csv")


@needs_shared
def test_paper_protocol_reproduces_reference_bicubic_table(tmp_path, monkeypatch) -> None:
    summary = _run(tmp_path, monkeypatch, "paper")
    assert len(summary) == 6  # 6 cells x (PSNR, SSIM) = the 12 numbers of the table
    for row in summary.itertuples():
        ref_psnr, ref_ssim = PAPER_BICUBIC[(row.dataset, row.scale)]
        assert abs(row.psnr - ref_psnr) <= 0.001, (row.dataset, row.scale, row.psnr)
        assert abs(row.ssim - ref_ssim) <= 0.00005, (row.dataset, row.scale, row.ssim)
    quality = pd.read_csv(tmp_path / "paper" / "quality.csv")
    assert set(quality["protocol"]) == {"paper"} and set(quality["channel"]) == {"y"}


@needs_shared
def test_legacy_y_protocol_reproduces_published_bicubic_row(tmp_path, monkeypatch) -> None:
    summary = _run(tmp_path, monkeypatch, "legacy-y")
    assert len(summary) == 6
    for row in summary.itertuples():
        assert abs(row.psnr - LEGACY_BICUBIC[(row.dataset, row.scale)]) <= 0.01, (row.dataset, row.scale, row.psnr)
    quality = pd.read_csv(tmp_path / "legacy-y" / "quality.csv")
    assert set(quality["protocol"]) == {"legacy-y"} and set(quality["degradation"]) == {"bicubic-y"}


@needs_shared
def test_bridge_is_scored_on_its_gray_value(tmp_path, monkeypatch) -> None:
    _run(tmp_path, monkeypatch, "paper")
    q = pd.read_csv(tmp_path / "paper" / "quality.csv")
    bridge = q[(q.dataset == "set14") & (q.image == "bridge") & (q.scale == 2)].psnr.item()
    # scoring the 1-channel image as studio-range Y of RGB would move it by ~1.3 dB (PROTOCOL.md step 4)
    assert 26.0 < bridge < 27.5
