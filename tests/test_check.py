"""The quality gate: `python -m bench check` against a baseline, its verdicts, exit codes and updates."""

from __future__ import annotations

import ast
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench import check
from bench.baseline import BASELINE_COLUMNS, per_image_path
from bench.check import CheckResult, UpdateResult, check_run, compare, parse_tolerance, update_baseline
from bench.cli import EXIT_ERROR, EXIT_OK, EXIT_REGRESSION, main
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


@pytest.fixture(scope="module")
def finished_partial_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A partial quality run: one method (bicubic), one scale (x2), on the sample images."""
    out = tmp_path_factory.mktemp("partial")
    req = RunRequest(
        methods=["bicubic"],
        datasets=["sample"],
        scales=[2],
        passes=["quality"],
        out=out,
        report=False,
        save_images="none",
    )
    assert not run(req, progress=False, log=lambda msg: None).failed
    return out


@pytest.fixture
def partial_run(finished_partial_run: Path, tmp_path: Path) -> Path:
    """A private copy of the partial run, free to edit."""
    dst = tmp_path / "partial"
    shutil.copytree(finished_partial_run, dst)
    return dst


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
    path = REPO / "bench" / "baselines" / name
    if not path.is_file():
        pytest.skip(f"{path} not committed yet")
    df = pd.read_csv(path)
    assert list(df.columns) == BASELINE_COLUMNS
    assert not df.duplicated(["method", "dataset", "scale", "protocol"]).any()
    assert df[["psnr", "ssim"]].notna().all().all() and (df["n_images"] > 0).all()


# --- the library returns results; only the CLI prints ---------------------------------------------------


def test_check_run_returns_a_result_and_prints_nothing(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    _edit_summary(run_dir, "nearest", 3, psnr=lambda v: v - 0.02)
    df = _summary(run_dir)
    df[~((df["method"] == "bicubic") & (df["scale"] == 3))].to_csv(run_dir / "summary.csv", index=False)
    result = check_run(run_dir, baseline)
    assert capsys.readouterr() == ("", "")
    assert isinstance(result, CheckResult) and result.baselines == (baseline,)
    assert not result.passed
    assert list(zip(result.regressions["method"], result.regressions["scale"], strict=True)) == [
        ("nearest", 3)
    ]
    assert list(zip(result.missing["method"], result.missing["scale"], strict=True)) == [("bicubic", 3)]
    assert "1 regressions, 1 missing" in result.summary and result.summary.endswith("-> FAIL")
    assert "REGRESSION" in result.table and "MISSING" in result.table
    assert str(baseline) in result.header and "missing cells" in result.advice


def test_update_baseline_returns_what_it_wrote_and_prints_nothing(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "base.csv"
    result = update_baseline(run_dir, baseline)
    assert capsys.readouterr() == ("", "")
    assert isinstance(result, UpdateResult) and [f.path for f in result.files] == [baseline]
    assert (result.files[0].run_rows, result.files[0].total_rows) == (4, 4)
    assert sum("added" in line for line in result.files[0].changes) == 4
    assert result.lines()[0].startswith(f"updated {baseline} from {run_dir}")
    assert len(pd.read_csv(baseline)) == 4


def test_check_module_never_prints() -> None:
    # DESIGN: only bench.cli prints and picks exit codes
    tree = ast.parse(Path(check.__file__).read_text(encoding="utf-8"))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "print" not in names and "sys" not in imported


# --- a partial run is checked against what it was asked for ---------------------------------------------


def test_check_partial_run_reports_only_its_own_cells(
    partial_run: Path, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the baseline holds bicubic and nearest at x2 and x3; the run was asked for bicubic x2 only
    baseline = _baseline_of(finished_run, tmp_path / "base.csv")
    assert main(["check", str(partial_run), "--baseline", str(baseline)]) == EXIT_OK
    captured = capsys.readouterr()
    assert "MISSING" not in captured.out and "nearest" not in captured.out and captured.err == ""
    assert "1 cells ok, 0 regressions, 0 missing" in captured.out
    assert "3 baseline cells not compared (the run was not asked for them) -> pass" in captured.out


def test_check_partial_run_lacking_a_cell_it_was_asked_for_fails(
    partial_run: Path, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the run was asked for bicubic x2 and x3 but holds x2 only: x3 is missing, nearest is not
    baseline = _baseline_of(finished_run, tmp_path / "base.csv")
    config = json.loads((partial_run / "config.json").read_text())
    (partial_run / "config.json").write_text(json.dumps({**config, "scales": [2, 3]}))
    assert main(["check", str(partial_run), "--baseline", str(baseline)]) == EXIT_REGRESSION
    out = capsys.readouterr().out
    line = _line_of(out, "MISSING")
    assert "bicubic" in line and "x3" in line
    assert "nearest" not in out and "1 missing" in out


def test_check_asked_dataset_absent_from_the_run_is_missing(
    partial_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _summary(partial_run)[BASELINE_COLUMNS]
    baseline = tmp_path / "base.csv"
    pd.concat([base, base.assign(dataset="set5")]).to_csv(baseline, index=False, float_format="%.17g")
    config = json.loads((partial_run / "config.json").read_text())
    (partial_run / "config.json").write_text(json.dumps({**config, "datasets": ["sample", "Set5"]}))
    assert main(["check", str(partial_run), "--baseline", str(baseline)]) == EXIT_REGRESSION
    assert "set5" in _line_of(capsys.readouterr().out, "MISSING")
    # datasets the run defaulted to (and fell back from, to sample) were not asked for
    (partial_run / "config.json").write_text(
        json.dumps({**config, "datasets": ["set5", "set14"], "datasets_defaulted": True})
    )
    assert main(["check", str(partial_run), "--baseline", str(baseline)]) == EXIT_OK


def test_check_run_without_config_is_scoped_by_its_own_cells(
    partial_run: Path, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(finished_run, tmp_path / "base.csv")
    (partial_run / "config.json").unlink()
    assert main(["check", str(partial_run), "--baseline", str(baseline)]) == EXIT_OK
    assert "0 missing" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["{", '{"methods": "bicubic"}', "[]"])
def test_check_unreadable_config_is_an_error(
    partial_run: Path, tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(partial_run, tmp_path / "base.csv")
    (partial_run / "config.json").write_text(text)
    assert main(["check", str(partial_run), "--baseline", str(baseline)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: {partial_run / 'config.json'} ") and len(err.strip().splitlines()) == 1


# --- the default baseline follows the run's datasets ----------------------------------------------------


def test_check_sample_run_picks_the_sample_baseline(
    partial_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "baselines"
    folder.mkdir()
    _baseline_of(partial_run, folder / "sample.csv")
    _summary(partial_run)[BASELINE_COLUMNS].assign(dataset="set5").to_csv(folder / "quality.csv", index=False)
    monkeypatch.setattr(check, "BASELINE_DIR", folder)
    assert main(["check", str(partial_run)]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"against {folder / 'sample.csv'} " in out and "quality.csv" not in out


def test_check_committed_sample_baseline_passes_a_partial_sample_run(
    partial_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the user flow: `bench run --methods bicubic --datasets sample --scales 2`, then `bench check RUN`
    monkeypatch.chdir(REPO)
    if not check.default_baseline("sample").is_file():
        pytest.skip("the sample baseline is not committed")
    assert main(["check", str(partial_run)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "sample.csv" in out and "1 cells ok, 0 regressions, 0 missing" in out


def test_check_mixed_run_is_gated_by_each_datasets_baseline(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = _summary(run_dir)
    set5 = sample.assign(dataset="set5")
    pd.concat([sample, set5]).to_csv(run_dir / "summary.csv", index=False, float_format="%.17g")
    folder = tmp_path / "baselines"
    folder.mkdir()
    sample[BASELINE_COLUMNS].to_csv(folder / "sample.csv", index=False, float_format="%.17g")
    raised = set5["psnr"] + ((set5["method"] == "bicubic") & (set5["scale"] == 2)) * 0.5
    set5[BASELINE_COLUMNS].assign(psnr=raised).to_csv(
        folder / "quality.csv", index=False, float_format="%.17g"
    )
    monkeypatch.setattr(check, "BASELINE_DIR", folder)
    assert main(["check", str(run_dir)]) == EXIT_REGRESSION
    out = capsys.readouterr().out
    assert str(folder / "sample.csv") in out and str(folder / "quality.csv") in out
    line = _line_of(out, "REGRESSION")
    assert "set5" in line and "bicubic" in line and "x2" in line
    assert "7 cells ok, 1 regressions, 0 missing" in out
    # the update writes each dataset's rows into its own baseline
    assert main(["check", str(run_dir), "--update-baseline"]) == EXIT_OK
    assert set(pd.read_csv(folder / "sample.csv")["dataset"]) == {"sample"}
    assert set(pd.read_csv(folder / "quality.csv")["dataset"]) == {"set5"}
    assert main(["check", str(run_dir)]) == EXIT_OK


# --- malformed baselines and run files are refused, naming the file and the line ------------------------


def _edit_cell(path: Path, line: int, col: str, value: str) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[line - 2, col] = value  # line 1 is the header
    df.to_csv(path, index=False)


def _repeat_row(path: Path, line: int) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    pd.concat([df, df.iloc[[line - 2]]]).to_csv(path, index=False)


BAD_CELLS = [
    (3, "psnr", "nan", "line 3: psnr is NaN"),
    (3, "ssim", "", "line 3: ssim is blank"),
    (4, "psnr", "3l.25", "line 4: psnr '3l.25' is not a number"),
    (2, "method", "", "line 2: method is blank"),
    (5, "scale", "x3", "line 5: scale 'x3' is not a positive integer"),
    (2, "n_images", "", "line 2: n_images is blank"),
]


@pytest.mark.parametrize(("line", "col", "value", "expected"), BAD_CELLS)
def test_check_baseline_with_a_bad_cell_is_refused(
    run_dir: Path,
    tmp_path: Path,
    line: int,
    col: str,
    value: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    _edit_cell(baseline, line, col, value)
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: baseline {baseline} {expected}; ")
    assert "--update-baseline" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert captured.out == ""


def test_check_baseline_with_a_repeated_cell_is_refused(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    first = pd.read_csv(baseline).iloc[0]
    _repeat_row(baseline, 2)
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == EXIT_ERROR
    err = capsys.readouterr().err
    cell = f"{first['method']} sample x{first['scale']}"
    assert err.startswith(f"error: baseline {baseline} line 6 repeats the cell {cell} of line 2; ")
    assert len(err.strip().splitlines()) == 1


def test_check_bad_line_number_counts_blank_lines(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    _edit_cell(baseline, 3, "psnr", "nan")
    lines = baseline.read_text().splitlines()
    baseline.write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n")  # an empty line 3
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == EXIT_ERROR
    assert f"error: baseline {baseline} line 4: psnr is NaN" in capsys.readouterr().err


def test_check_per_image_baseline_with_a_blank_image_is_refused(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "base.csv"
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--per-image", "--update-baseline"]) == 0
    _edit_cell(per_image_path(baseline), 7, "image", "")
    capsys.readouterr()
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--per-image"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: per-image baseline {per_image_path(baseline)} line 7: image is blank; ")


@pytest.mark.parametrize(
    ("name", "line", "col", "value", "expected"),
    [
        ("summary.csv", 3, "psnr", "", "line 3: psnr is blank"),
        ("summary.csv", 2, "status", "", "line 2: status is blank"),
        ("summary.csv", 4, None, "", "line 6 repeats the cell"),
        ("quality.csv", 5, "ssim", "nan", "line 5: ssim is NaN"),
        ("quality.csv", 2, None, "", "line 18 repeats the cell"),
    ],
)
def test_check_run_file_with_a_bad_cell_is_refused(
    run_dir: Path,
    tmp_path: Path,
    name: str,
    line: int,
    col: str | None,
    value: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # col None: the line is repeated at the end of the file
    baseline = _baseline_of(run_dir, tmp_path / "base.csv")
    path = run_dir / name
    if col is None:
        _repeat_row(path, line)
    else:
        _edit_cell(path, line, col, value)
    per_image = ["--per-image"] if name == "quality.csv" else []
    assert main(["check", str(run_dir), "--baseline", str(baseline), *per_image]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: run file {path} {expected}")
    assert f"--resume {run_dir}" in err and len(err.strip().splitlines()) == 1


def test_check_update_baseline_refuses_a_malformed_file_and_writes_nothing(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "base.csv"
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--per-image", "--update-baseline"]) == 0
    _edit_cell(baseline, 2, "psnr", "20")  # stale: an update would rewrite it
    _repeat_row(per_image_path(baseline), 2)
    before = baseline.read_bytes(), per_image_path(baseline).read_bytes()
    capsys.readouterr()
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--update-baseline"]) == EXIT_ERROR
    assert "repeats the cell" in capsys.readouterr().err
    assert (baseline.read_bytes(), per_image_path(baseline).read_bytes()) == before
