"""The CLI in-process: listing, usage errors with suggestions, runs on sample, dir: outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from bench.data import open_dataset
from bench.registry import create_method, list_methods, register_method


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SRBENCH_OFFLINE", "1")
    monkeypatch.delenv("SRBENCH_DATA_PATH", raising=False)


def test_list_shows_methods_and_datasets(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("bicubic", "lanczos", "nearest", "set5", "div2k-val", "sample"):
        assert name in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--methods", "bicubc"], "did you mean 'bicubic'"),
        (["run", "--methods", "bicubic", "--datasets", "set55"], "did you mean 'set5'"),
        (["run", "--methods", "bicubic", "--scales", "1"], "unsupported scale '1'"),
        (["run", "--methods", "bicubic", "--pass", "speed", "--datasets", "sample"], "unknown pass 'speed'"),
        (["run", "--methods", "bicubic", "--protocol", "paperz", "--datasets", "sample"], "unknown protocol"),
        (["run", "--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(argv, needle, capsys, tmp_path) -> None:
    assert (
        main([*argv, "--out", str(tmp_path / "r")] if argv[0] == "run" and "--bogus" not in argv else argv)
        == 2
    )
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_method_lists_the_choices(capsys) -> None:
    assert main(["run", "--methods", "zzz", "--datasets", "sample"]) == 2
    err = capsys.readouterr().err
    assert "known: " in err and "bicubic" in err


def test_offline_default_run_falls_back_to_sample_with_one_warning(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "--methods",
            "bicubic,nearest",
            "--scales",
            "2",
            "--pass",
            "quality",
            "--no-report",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "sample" in warnings[0]
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["dataset"]) == {"sample"}
    assert (summary["n_images"] == len(open_dataset("sample"))).all()
    for name in ("quality.csv", "summary.csv", "env.json", "config.json"):
        assert (out / name).is_file()


def test_explicitly_requested_missing_dataset_is_an_error(tmp_path, capsys) -> None:
    rc = main(
        [
            "run",
            "--methods",
            "bicubic",
            "--datasets",
            "set5",
            "--pass",
            "quality",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "SRBENCH_DATA_PATH" in err and "SRBENCH_MIRROR" in err and "python -m bench fetch" in err


def test_dir_method_scores_stored_outputs(tmp_path, capsys) -> None:
    # outputs of "another tool": bicubic results saved with two of the accepted naming patterns
    root = tmp_path / "outputs"
    bicubic = create_method("bicubic", scale=2)
    for i, s in enumerate(open_dataset("sample").samples(2)):
        sub = root / "sample" / "x2"
        sub.mkdir(parents=True, exist_ok=True)
        name = f"{s.image}_x2.png" if i % 2 else f"{s.image}.png"
        Image.fromarray(bicubic.upscale(s.lr)).save(sub / name)
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "--methods",
            f"bicubic,dir:{root}",
            "--datasets",
            "sample",
            "--scales",
            "2",
            "--pass",
            "quality",
            "--no-report",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    s = pd.read_csv(out / "summary.csv").set_index("method")
    assert s.loc[f"dir:{root}", "psnr"] == pytest.approx(s.loc["bicubic", "psnr"], abs=1e-12)


def test_dir_method_missing_image_is_a_failed_cell(tmp_path, capsys) -> None:
    root = tmp_path / "outputs"
    (root / "sample" / "x2").mkdir(parents=True)
    rc = main(
        [
            "run",
            "--methods",
            f"dir:{root}",
            "--datasets",
            "sample",
            "--scales",
            "2",
            "--pass",
            "quality",
            "--no-report",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 1
    q = pd.read_csv(tmp_path / "r" / "quality.csv")
    assert (q["status"] == "failed").all()
    assert q["error"].str.contains("no SR image for sample/").all()


def test_registry_refuses_silent_overwrite() -> None:
    from bench.errors import UsageError

    with pytest.raises(UsageError, match="already registered"):
        register_method("bicubic", lambda **kw: None)


def test_registry_lists_builtins_by_pattern() -> None:
    assert {"bicubic", "bilinear", "lanczos", "nearest"} <= set(list_methods())
    assert list_methods("bi*") == ["bicubic", "bilinear"]


def test_entry_point_methods_are_registered(monkeypatch) -> None:
    import bench.registry as reg

    class FakeEP:
        name = "plugin_nn"
        value = "plugin:make"

        def load(self):
            return lambda *, scale, device: create_method("nearest", scale=scale, device=device)

    monkeypatch.setattr(
        reg, "entry_points", lambda group: [FakeEP()] if group == reg.ENTRY_POINT_GROUP else []
    )
    monkeypatch.setattr(reg, "_loaded", False)
    monkeypatch.setattr(reg, "_METHODS", {})
    assert "plugin_nn" in reg.list_methods()
    m = reg.create_method("plugin_nn", scale=2)
    assert m.upscale(np.zeros((4, 4, 3), np.uint8)).shape == (8, 8, 3)
