"""The quality gate: `python -m bench check` against a baseline, its verdicts, exit codes and updates."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.check import BASELINE_COLUMNS, compare, parse_tolerance, per_image_path
from bench.cli import main
from bench.errors import UsageError
from bench.runner import RunRequest, run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real quality run: bicubic and nearest on the built-in sample images, x2 and x3."""
    out = tmp_path_factory.mktemp("run")
    req = RunRequest(
        methods=["bicubic", "nearest"],
        datasets=["sample"],
        scales=[2, 3],
        passes=["quality"],
        out=out,
        report=False,
        save_images="none",
    )
    outcome = run(req, progress=False, log=lambda msg: None)
    assert not outcome.failed
    return out


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run, free to edit."""
    dst = tmp_path / "run"
    shutil.copytree(finished_run, dst)
    return dst


def _summary(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "summary.csv")


def _baseline_of(run_dir: Path, path: Path) -> Path:
    _summary(run_dir)[BASELINE_COLUMNS].to_csv(path, index=False, float_format="%.17g")
    return path


def _edit_summary(run_dir: Path, method: str, scale: int, **changes: object) -> None:
    df = _summary(run_dir)
    sel = (df["method"] == method) & (df["scale"] == scale)
    assert sel.sum() == 1
    for col, value in changes.items():
        if callable(value):
            df.loc[sel, col] = value(df.loc[sel, col])
        else:
            df.loc[sel, col] = value
    df.to_csv(run_dir / "summary.csv", index=False, float_format="%.17g")


def _line_of(out: str, *words: str) -> str:
    lines = [ln for ln in out.splitlines() if all(f" {w} " in f" {ln} " for w in words)]
    assert len(lines) == 1, f"expected one line naming {words} in:\n{out}"
    return lines[0]


def test_check_baseline_equal_to_run_passes(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "check: 4 cells ok, 0 regressions, 0 missing, 0 improvements" in out
    assert "REGRESSION" not in out and "MISSING" not in out


def test_check_cell_lower_by_002_db_fails_and_names_it(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    _edit_summary(run_dir, "nearest", 3, psnr=lambda v: v - 0.02)
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 3
    out = capsys.readouterr().out
    line = _line_of(out, "REGRESSION")
    assert "nearest" in line and "sample" in line and "x3" in line and "-0.020" in line
    assert "1 regressions" in out


def test_check_drop_within_tolerance_passes(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    _edit_summary(run_dir, "nearest", 3, psnr=lambda v: v - 0.005, ssim=lambda v: v - 0.0004)
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 0
    # the same drop fails under a tighter tolerance
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--tolerance", "psnr=0.001"]) == 3
    assert "nearest" in _line_of(capsys.readouterr().out, "REGRESSION")


def test_check_ssim_regression_fails(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    _edit_summary(run_dir, "bicubic", 2, ssim=lambda v: v - 0.001)
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 3
    line = _line_of(capsys.readouterr().out, "REGRESSION")
    assert "bicubic" in line and "x2" in line


def test_check_missing_cell_fails(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    df = _summary(run_dir)
    df[~((df["method"] == "bicubic") & (df["scale"] == 3))].to_csv(run_dir / "summary.csv", index=False)
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 3
    captured = capsys.readouterr()
    line = _line_of(captured.out, "MISSING")
    assert "bicubic" in line and "sample" in line and "x3" in line
    assert "1 missing" in captured.out
    assert "missing cells" in captured.err


def test_check_improvement_passes_and_is_reported(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    _edit_summary(run_dir, "bicubic", 2, psnr=lambda v: v + 0.5)
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    line = _line_of(out, "IMPROVEMENT")
    assert "bicubic" in line and "x2" in line and "+0.500" in line
    assert "1 improvements" in out


def test_check_new_cell_passes_and_is_reported(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = _summary(run_dir)
    baseline = tmp_path / "base.csv"
    df[df["method"] == "bicubic"][BASELINE_COLUMNS].to_csv(baseline, index=False, float_format="%.17g")
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "nearest" in _line_of(out, "NEW", "x2")
    assert "2 new" in out


def test_check_failed_cell_is_a_regression(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    _edit_summary(
        run_dir, "bicubic", 3, psnr=math.nan, ssim=math.nan, status="failed", n_failed=1, n_images=3
    )
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 3
    line = _line_of(capsys.readouterr().out, "REGRESSION")
    assert "bicubic" in line and "x3" in line and "failed in the run" in line


def test_check_other_datasets_of_the_baseline_are_not_missing(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a sample-only run checked against a baseline that also holds set5 rows
    base = _summary(run_dir)[BASELINE_COLUMNS]
    extra = base.assign(dataset="set5", psnr=base["psnr"] + 3)
    baseline = tmp_path / "base.csv"
    pd.concat([base, extra]).to_csv(baseline, index=False, float_format="%.17g")
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 0
    assert "4 cells ok, 0 regressions, 0 missing" in capsys.readouterr().out


def test_check_other_protocol_is_not_compared(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _summary(run_dir)[BASELINE_COLUMNS]
    baseline = tmp_path / "base.csv"
    pd.concat([base, base.assign(protocol="rgb", psnr=base["psnr"] + 5)]).to_csv(baseline, index=False)
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 0
    assert "4 cells ok" in capsys.readouterr().out


def test_check_baseline_without_the_runs_datasets_is_an_error(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _summary(run_dir)[BASELINE_COLUMNS].assign(dataset="set5")
    baseline = tmp_path / "quality.csv"
    base.to_csv(baseline, index=False)
    _baseline_of(run_dir, tmp_path / "sample.csv")
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sample" in err and f"--baseline {tmp_path / 'sample.csv'}" in err


def test_check_absent_baseline_names_the_fix(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(run_dir), "--baseline", str(tmp_path / "nope.csv")]) == 1
    err = capsys.readouterr().err
    assert "nope.csv not found" in err and "--update-baseline" in err and len(err.strip().splitlines()) == 1


def test_check_not_a_run_folder_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["check", str(tmp_path / "empty"), "--baseline", str(tmp_path / "b.csv")]) == 1
    assert "summary.csv not found" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "absent")]) == 2


@pytest.mark.parametrize("text", ["psnr=abc", "lpips=0.1", "psnr", "psnr=-1", "psnr=nan"])
def test_check_bad_tolerance_is_a_usage_error(
    run_dir: Path, tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--tolerance", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bad tolerance") and "psnr=0.01,ssim=0.0005" in err


def test_parse_tolerance_keeps_defaults_for_metrics_left_out() -> None:
    assert parse_tolerance("psnr=0.05") == {"psnr": 0.05, "ssim": 0.0005}
    assert parse_tolerance(" ssim = 0.001 , psnr=0 ") == {"psnr": 0.0, "ssim": 0.001}
    with pytest.raises(UsageError):
        parse_tolerance("psnr=0.1=2")


def test_check_update_baseline_writes_the_runs_cells(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "baselines" / "quality.csv"
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--update-baseline"]) == 0
    assert "added" in capsys.readouterr().out
    written = pd.read_csv(baseline)
    assert list(written.columns) == BASELINE_COLUMNS
    expected = _summary(run_dir)[BASELINE_COLUMNS].sort_values(["method", "scale"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(written.sort_values(["method", "scale"]).reset_index(drop=True), expected)
    # the new baseline passes, and rewriting it from the same run changes nothing
    before = baseline.read_bytes()
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--update-baseline"]) == 0
    assert baseline.read_bytes() == before
    assert "4 rows unchanged" in capsys.readouterr().out
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 0


def test_check_update_baseline_keeps_other_datasets_and_reports_changes(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _summary(run_dir)[BASELINE_COLUMNS]
    set5 = base.assign(dataset="set5", psnr=base["psnr"] + 3)
    stale = base.assign(psnr=base["psnr"] - 1)
    baseline = tmp_path / "base.csv"
    pd.concat([set5, stale]).to_csv(baseline, index=False, float_format="%.17g")
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--update-baseline"]) == 0
    out = capsys.readouterr().out
    assert "changed  bicubic sample x2: psnr" in out and "4 rows of other methods or datasets kept" in out
    written = pd.read_csv(baseline)
    assert sorted(written["dataset"].unique()) == ["sample", "set5"]
    pd.testing.assert_frame_equal(
        written[written["dataset"] == "set5"].reset_index(drop=True),
        set5.reset_index(drop=True),
        check_dtype=False,
    )
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 0


def test_check_update_baseline_refuses_failed_cells(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit_summary(run_dir, "bicubic", 3, psnr=math.nan, ssim=math.nan, status="failed", n_failed=1)
    baseline = tmp_path / "base.csv"
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--update-baseline"]) == 1
    assert "bicubic sample x3" in capsys.readouterr().err
    assert not baseline.exists()


def test_check_per_image_names_the_image(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "base.csv"
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--per-image", "--update-baseline"]) == 0
    assert per_image_path(baseline).is_file()
    capsys.readouterr()
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--per-image"]) == 0
    assert "16 cells ok" in capsys.readouterr().out
    q = pd.read_csv(run_dir / "quality.csv")
    sel = (q["method"] == "bicubic") & (q["scale"] == 2) & (q["image"] == "camera")
    q.loc[sel, "psnr"] -= 0.05
    q.to_csv(run_dir / "quality.csv", index=False, float_format="%.17g")
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--per-image"]) == 3
    line = _line_of(capsys.readouterr().out, "REGRESSION")
    assert "bicubic" in line and "camera" in line and "x2" in line


def test_compare_verdicts_follow_the_tolerance() -> None:
    base = pd.DataFrame(
        {
            "method": ["m"] * 3,
            "dataset": ["d"] * 3,
            "scale": [2, 3, 4],
            "protocol": ["paper"] * 3,
            "psnr": [30.0, 30.0, 30.0],
            "ssim": [0.9, 0.9, 0.9],
            "n_images": [5, 5, 5],
        }
    )
    run_df = base.assign(psnr=[29.989, 30.011, 30.0], status="ok").iloc[:2]
    result = compare(run_df, base, {"psnr": 0.01, "ssim": 0.0005})
    psnr = result[result["metric"] == "psnr"].set_index("scale")["verdict"]
    assert psnr.to_dict() == {2: "regression", 3: "improvement", 4: "missing"}
    assert list(result.columns) == [
        "method",
        "dataset",
        "scale",
        "protocol",
        "metric",
        "baseline",
        "run",
        "delta",
        "verdict",
    ]


@pytest.mark.parametrize("name", ["sample.csv", "quality.csv"])
def test_committed_baseline_is_well_formed(name: str) -> None:
    path = REPO / "reports" / "baselines" / name
    if not path.is_file():
        pytest.skip(f"{path} not committed yet")
    df = pd.read_csv(path)
    assert list(df.columns) == BASELINE_COLUMNS
    assert not df.duplicated(["method", "dataset", "scale", "protocol"]).any()
    assert df[["psnr", "ssim"]].notna().all().all() and (df["n_images"] > 0).all()
