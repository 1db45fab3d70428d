"""Own images and own weights: `bench upscale` on files and folders, and `bench run --weights`."""

from __future__ import annotations

import doctest
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data

import bench.upscale
from bench.cli import main
from bench.data import load_rgb, sha256_file
from bench.metrics import to_uint8
from bench.registry import create_method
from methods import _tiles

WEIGHTS = Path(__file__).resolve().parent.parent / "methods" / "weights"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SRBENCH_OFFLINE", "1")
    monkeypatch.delenv("SRBENCH_DATA_PATH", raising=False)


def _image(path: Path, h: int = 48, w: int = 60, top: int = 100) -> Path:
    """A small textured RGB crop of scikit-image's astronaut, saved to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()[top : top + h, 120 : 120 + w]).save(path)
    return path


def _mine(tmp_path: Path, shipped: str = "srcnn_x2.safetensors") -> Path:
    """A user's weights file: a shipped file under another name (no manifest entry for it)."""
    return Path(shutil.copy(WEIGHTS / shipped, tmp_path / "mine.safetensors"))


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ upscale


def test_upscale_file_writes_the_methods_rounded_output(tmp_path, capsys) -> None:
    src = _image(tmp_path / "in" / "a.jpg")
    assert main(["upscale", str(src), str(tmp_path / "a_x2.png"), "--method", "bicubic", "--scale", "2"]) == 0
    lr, _ = load_rgb(src)
    expected = to_uint8(create_method("bicubic", scale=2).upscale(lr))
    np.testing.assert_array_equal(_png(tmp_path / "a_x2.png"), expected)
    assert "bicubic x2: 1 image(s) written" in capsys.readouterr().out


def test_upscale_file_into_a_folder_is_named_by_its_stem(tmp_path) -> None:
    src = _image(tmp_path / "in" / "photo.jpg")
    assert main(["upscale", str(src), str(tmp_path / "out"), "--method", "nearest", "--scale", "3"]) == 0
    assert _png(tmp_path / "out" / "photo.png").shape == (48 * 3, 60 * 3, 3)


def test_upscale_folder_skips_a_broken_file_with_one_line_and_exit_1(tmp_path, capsys) -> None:
    folder = tmp_path / "in"
    _image(folder / "a.png")
    _image(folder / "b.jpg", top=200)
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not an input")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    rc = main(["upscale", str(folder), str(tmp_path / "out"), "--method", "espcn", "--scale", "2"])
    assert rc == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert _png(tmp_path / "out" / "a.png").shape == (96, 120, 3)
    err = _error_lines(capsys.readouterr().err)
    assert len([line for line in err if "broken.png" in line]) == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # inputs untouched


@pytest.mark.parametrize("same", ["folder", "file"])
def test_upscale_refuses_to_write_over_its_inputs(same, tmp_path, capsys) -> None:
    src = _image(tmp_path / "in" / "a.png")
    before = src.read_bytes()
    source, dest = (tmp_path / "in", tmp_path / "in") if same == "folder" else (src, src)
    assert main(["upscale", str(source), str(dest), "--method", "bicubic", "--scale", "2"]) == 2
    assert len(_error_lines(capsys.readouterr().err)) == 1
    assert src.read_bytes() == before and sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.png"]


def test_upscale_tiles_large_images_with_the_same_result(tmp_path, capsys, monkeypatch) -> None:
    src = _image(tmp_path / "in" / "a.png")
    args = ["--method", "srcnn", "--scale", "2"]
    assert main(["upscale", str(src), str(tmp_path / "whole.png"), *args]) == 0
    assert "in tiles" not in capsys.readouterr().out
    monkeypatch.setattr(_tiles, "AUTO_TILE_PIXELS", 1000)  # srcnn's 96x120 network input is "large"
    monkeypatch.setattr(_tiles, "AUTO_TILE", 32)
    assert main(["upscale", str(src), str(tmp_path / "tiled.png"), *args]) == 0
    assert "(1 in tiles)" in capsys.readouterr().out
    # overlap = receptive radius: equal up to float summation order, so at most one grey level apart
    diff = np.abs(_png(tmp_path / "whole.png").astype(int) - _png(tmp_path / "tiled.png").astype(int))
    assert diff.max() <= 1


def test_upscale_with_weights_is_the_shipped_output_under_its_own_label(tmp_path, capsys) -> None:
    src = _image(tmp_path / "in" / "a.png")
    args = ["--method", "srcnn", "--scale", "2"]
    assert main(["upscale", str(src), str(tmp_path / "shipped.png"), *args]) == 0
    assert (
        main(["upscale", str(src), str(tmp_path / "mine.png"), *args, "--weights", str(_mine(tmp_path))]) == 0
    )
    np.testing.assert_array_equal(_png(tmp_path / "shipped.png"), _png(tmp_path / "mine.png"))
    assert "srcnn@mine x2" in capsys.readouterr().out


def test_upscale_zoo_method_with_a_copied_checkpoint(shared_weights, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SRBENCH_WEIGHTS_PATH", str(shared_weights))
    mine = shutil.copy(shared_weights / "pan" / "PANx2_DF2K.pth", tmp_path / "pan_mine.pth")
    src = _image(tmp_path / "in" / "a.png")
    args = ["--method", "pan", "--scale", "2", "--device", "cpu"]
    assert main(["upscale", str(src), str(tmp_path / "official.png"), *args]) == 0
    assert main(["upscale", str(src), str(tmp_path / "mine.png"), *args, "--weights", str(mine)]) == 0
    np.testing.assert_array_equal(_png(tmp_path / "official.png"), _png(tmp_path / "mine.png"))
    assert "pan@pan_mine x2" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ --weights


def _run(tmp_path: Path, out: str, *extra: str) -> int:
    folder = tmp_path / "imgs"
    if not folder.is_dir():
        _image(folder / "a.png")
        _image(folder / "b.png", h=40, w=52, top=220)
    return main(["run", "--datasets", str(folder), "--scales", "2", "--pass", "quality", "--no-report",
                 "--save-images", "none", "--out", str(tmp_path / out), *extra])  # fmt: skip


def test_run_with_weights_gives_the_shipped_numbers_under_its_own_label(tmp_path) -> None:
    mine = _mine(tmp_path)
    assert _run(tmp_path, "shipped", "--methods", "srcnn") == 0
    assert _run(tmp_path, "mine", "--methods", "srcnn", "--weights", str(mine)) == 0
    shipped = pd.read_csv(tmp_path / "shipped" / "quality.csv")
    own = pd.read_csv(tmp_path / "mine" / "quality.csv")
    assert set(shipped["method"]) == {"srcnn"} and set(own["method"]) == {"srcnn@mine"}
    np.testing.assert_array_equal(own["psnr"].to_numpy(), shipped["psnr"].to_numpy())
    assert set(own["weights_sha256"]) == {sha256_file(mine)}
    info = pd.read_csv(tmp_path / "mine" / "methods.csv").iloc[0]
    assert info["name"] == "srcnn@mine" and info["weights"] == str(mine.resolve())


def test_run_with_weights_resumes_under_the_same_label(tmp_path) -> None:
    assert _run(tmp_path, "r", "--methods", "srcnn", "--weights", str(_mine(tmp_path))) == 0
    first = pd.read_csv(tmp_path / "r" / "quality.csv")
    assert main(["run", "--resume", str(tmp_path / "r"), "--no-report", "--no-progress"]) == 0
    again = pd.read_csv(tmp_path / "r" / "quality.csv")
    assert list(again["method"]) == list(first["method"]) == ["srcnn@mine", "srcnn@mine"]
    np.testing.assert_array_equal(again["seconds"].to_numpy(), first["seconds"].to_numpy())  # reused


@pytest.mark.parametrize(
    ("method", "file"), [("srcnn", "fsrcnn_x2.safetensors"), ("espcn", "espcn_x3.safetensors")]
)
def test_run_with_weights_that_do_not_fit_is_one_line_before_any_work(method, file, tmp_path, capsys) -> None:
    mine = _mine(tmp_path, file)
    assert _run(tmp_path, "r", "--methods", method, "--weights", str(mine)) == 1
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "mine.safetensors" in err[0] and "expected" in err[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--methods", "srcnn,espcn"], "exactly one method"),
    (["--methods", "trained"], "exactly one method"),
    (["--methods", "bicubic"], "learned method"),
    (["--methods", "srcn"], "did you mean 'srcnn'"),
])  # fmt: skip
def test_run_weights_usage_errors_are_one_line_with_exit_2(argv, needle, tmp_path, capsys) -> None:
    assert _run(tmp_path, "r", *argv, "--weights", str(_mine(tmp_path))) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and needle in err[0]


def test_run_weights_needs_one_scale_and_an_existing_file(tmp_path, capsys) -> None:
    base = ["run", "--methods", "srcnn", "--datasets", "sample", "--out", str(tmp_path / "r")]
    assert main([*base, "--weights", str(_mine(tmp_path))]) == 2  # default scales 2,3,4
    assert main([*base, "--scales", "2", "--weights", str(tmp_path / "none.safetensors")]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 2 and "exactly one scale" in err[0] and "no such file" in err[1]


def test_upscale_module_examples_run() -> None:
    assert doctest.testmod(bench.upscale).failed == 0


def test_user_weights_method_rebuilt_with_tiles_keeps_its_file_and_label(tmp_path) -> None:
    mine = _mine(tmp_path)
    method = bench.upscale.build_method("srcnn", scale=2, device="cpu", weights=mine)
    # what the runner does on out of memory: the label and the same file, tiled
    tiled = bench.upscale.build_method(method.name, scale=2, device="cpu", weights=mine, tile=16)
    assert (tiled.name, tiled.tile, tiled.info().weights_sha256) == ("srcnn@mine", 16, sha256_file(mine))  # type: ignore[attr-defined]
    assert method.info().name == "srcnn@mine" and method.info().weights == str(mine)
