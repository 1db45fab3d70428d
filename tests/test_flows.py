"""User flows end to end through the CLI: stored outputs alone, latency-only runs, a user's own folder,
dataset names as papers spell them, and the layouts other tools leave data in."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from bench.data import open_dataset

REPO = Path(__file__).resolve().parent.parent
QUICK = ["--scales", "2", "--no-progress"]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SRBENCH_PROGRESS", "0")
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))


def _stored_bicubic(root: Path) -> None:
    """SR images of `sample` x2 as another tool would leave them: root/sample/x2/<image>_x2.png."""
    from bench.imresize import imresize

    for sample in open_dataset("sample").samples(2):
        path = root / "sample" / "x2" / f"{sample.image}_x2.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(imresize(sample.lr, 2)).save(path)


def test_dir_method_alone_runs_and_reports(tmp_path: Path) -> None:
    root, out = tmp_path / "outputs", tmp_path / "run"
    _stored_bicubic(root)
    assert main(["run", "--methods", f"dir:{root}", "--datasets", "sample", "--out", str(out), *QUICK]) == 0
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert main(["report", str(out)]) == 0
    assert pd.read_csv(out / "methods.csv")["name"].tolist() == [f"dir:{root}"]


def test_latency_only_run_writes_a_latency_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["run", "--methods", "bicubic", "--pass", "latency", "--sizes", "64x48", "--out", str(out), *QUICK]
    assert main(argv) == 0
    text = (out / "report.md").read_text()
    assert "latency" in text.lower() and "bicubic" in text
    assert main(["report", str(out)]) == 0


def _user_folder(base: Path, shared: Path | None = None) -> Path:
    folder = base / "myimgs"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("one", "two"):
        Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def test_user_folder_report_lists_skipped_files_and_draws_crops_from_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, out = _user_folder(tmp_path / "data"), tmp_path / "run"
    argv = [
        "run",
        "--methods",
        "bicubic,nearest",
        "--datasets",
        str(folder),
        "--pass",
        "quality",
        "--out",
        str(out),
    ]
    assert main([*argv, *QUICK]) == 1  # skipped files make the exit status say so
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the report must not depend on the working directory
    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "notes.txt" in text and "broken" in text and "skipped" in text
    assert list((out / "figures").glob("visual_myimgs_x2_*.png"))


def test_user_folder_named_like_a_known_dataset_is_its_own_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "set5"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "a.png")
    ds = open_dataset(folder)
    assert ds.name != "set5" and ds.name.startswith("set5-") and ds.origin == "folder"


def test_images_with_one_stem_stay_two_rows(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.full((40, 40, 3), 9, np.uint8)).save(folder / "a.bmp")
    assert sorted(name for name, _, _ in open_dataset(folder).files) == ["a.bmp", "a.png"]


def test_dataset_names_are_case_insensitive(shared_datasets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(shared_datasets))
    assert open_dataset("Set5").name == "set5"
    assert open_dataset("SET14").name == "set14"


@pytest.mark.parametrize("layout", ["benchmark/Set5/HR", "Set5/HR"])
def test_data_path_finds_edsr_and_basicsr_layouts(
    shared_datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    target = tmp_path / "theirs" / layout
    target.mkdir(parents=True)
    for src in (shared_datasets / "Set5").glob("*.png"):
        os.symlink(src, target / src.name)
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(tmp_path / "theirs"))
    monkeypatch.setenv("SRBENCH_OFFLINE", "1")
    ds = open_dataset("set5")
    assert ds.origin.startswith("data-path:") and len(list(ds.images())) == 5


def test_missing_dataset_error_names_the_layouts_it_looked_for(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(tmp_path))
    monkeypatch.setenv("SRBENCH_OFFLINE", "1")
    assert (
        main(["run", "--methods", "bicubic", "--datasets", "set5", "--out", str(tmp_path / "r"), *QUICK]) == 1
    )
    err = capsys.readouterr().err
    assert "Set5/HR/" in err and "benchmark/Set5/HR/" in err


def test_resume_without_a_readable_config_is_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--methods",
                "bicubic",
                "--datasets",
                "sample",
                "--pass",
                "quality",
                "--out",
                str(out),
                *QUICK,
            ]
        )
        == 0
    )
    (out / "config.json").write_text("{ torn")
    before = sorted(p.name for p in out.iterdir())
    assert main(["run", "--resume", str(out), *QUICK]) == 2
    assert "config.json" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_repeated_scales_and_methods_run_once(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    argv = ["run", "--methods", "bicubic,bicubic", "--datasets", "sample", "--scales", "2,2", "--pass", "quality",
            "--out", str(out), "--no-report"]  # fmt: skip
    assert main(argv) == 0
    assert len(pd.read_csv(out / "quality.csv")) == 4  # four sample images, once each
    assert "runs once" in capsys.readouterr().err


def test_all_with_another_name_is_accepted(tmp_path: Path) -> None:
    from bench.registry import expand_methods

    methods, _ = expand_methods(["all", "bicubic"])
    assert methods.count("bicubic") == 1 and "srcnn" in methods


def test_readme_links_the_protocol_shipped_in_the_repository() -> None:
    readme = (REPO / "README.md").read_text()
    assert "](docs/PROTOCOL.md)" in readme and "../shared" not in readme
    assert (REPO / "docs" / "PROTOCOL.md").is_file()
