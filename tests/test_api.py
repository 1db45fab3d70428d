"""The public Python face: `bench.__all__`, sectioned docstrings whose examples run, and `evaluate` equal to the CLI."""

from __future__ import annotations

import doctest
import inspect
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import bench
import bench.registry as registry
from bench.api import MethodInfo
from bench.cli import main
from bench.imresize import imresize

PUBLIC_FUNCTIONS = [n for n in bench.__all__ if inspect.isfunction(getattr(bench, n))]


def test_public_face_lists_what_a_user_needs() -> None:
    for name in ("evaluate", "Method", "MethodInfo", "create_method", "list_methods", "open_dataset", "list_datasets",
                 "imresize", "rgb_to_y", "psnr", "ssim", "get_protocol"):  # fmt: skip
        assert name in bench.__all__ and hasattr(bench, name)


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_public_function_docstring_has_sections_and_an_example(name: str) -> None:
    doc = inspect.getdoc(getattr(bench, name)) or ""
    for section in ("Parameters", "Returns", "Raises", "Example"):
        assert f"\n{section}\n" in doc, f"{name}: no {section} section"


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_public_function_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    obj = getattr(bench, name)
    tests = doctest.DocTestFinder().find(obj, name, globs={})
    assert tests and any(t.examples for t in tests)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0


class Doubler(torch.nn.Module):
    """A tiny 'network': nearest-neighbour x2 plus a learned-looking 1x1 conv (identity weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


def _nearest(lr: np.ndarray) -> np.ndarray:
    return lr.repeat(2, axis=0).repeat(2, axis=1)


class _Plugin:
    def __init__(self, scale: int) -> None:
        self.name, self.scale, self.device = "plugin_nearest", scale, "cpu"

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        return _nearest(lr)

    def info(self) -> MethodInfo:
        return MethodInfo(self.name, self.scale, self.device)


def test_evaluate_module_and_callable_equal_the_cli_on_the_equivalent_plugin(
    shared_datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(shared_datasets))
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    df_module = bench.evaluate(Doubler(), "set5", scales=[2])
    df_callable = bench.evaluate(_nearest, "set5", scales=[2])
    registry.list_methods()
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    registry.register_method("plugin_nearest", lambda *, scale, device="cpu", **_: _Plugin(scale))
    out = tmp_path / "run"
    assert main(["run", "--methods", "plugin_nearest", "--datasets", "set5", "--scales", "2", "--pass", "quality",
                 "--no-report", "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    cli = pd.read_csv(out / "quality.csv").set_index("image")
    for df in (df_module, df_callable):
        assert isinstance(df, pd.DataFrame) and len(df) == 5
        mine = df.set_index("image")
        assert np.array_equal(mine.loc[cli.index, "psnr"].to_numpy(), cli["psnr"].to_numpy())
        assert np.array_equal(mine.loc[cli.index, "ssim"].to_numpy(), cli["ssim"].to_numpy())


def test_evaluate_writes_nothing_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    bench.evaluate("bicubic", "sample", scales=[4])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    df, summary = bench.evaluate(["bicubic"], "sample", scales=[4], out=tmp_path / "run", summary=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["quality.csv", "summary.csv"]
    assert summary["psnr"].iloc[0] == pytest.approx(df["psnr"].mean())


def test_evaluate_input_range_255_feeds_the_module_0_to_255(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    seen: list[float] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(float(x.max()))
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    a = bench.evaluate(Probe(), "sample", scales=[2], input_range=255.0)
    b = bench.evaluate(_nearest, "sample", scales=[2])
    assert max(seen) > 200 and np.array_equal(a["psnr"].to_numpy(), b["psnr"].to_numpy())


def test_evaluate_rejects_what_is_not_a_method() -> None:
    with pytest.raises(bench.errors.UsageError, match="cannot evaluate a int"):
        bench.evaluate(42, "sample", scales=[2])


def test_summarise_of_a_failed_image_has_no_mean() -> None:
    rows = pd.DataFrame({"method": ["m", "m"], "dataset": ["d", "d"], "scale": [2, 2], "psnr": [30.0, math.nan],
                         "ssim": [0.9, math.nan], "status": ["ok", "failed"], "protocol": ["paper"] * 2})  # fmt: skip
    assert math.isnan(bench.summarise(rows)["psnr"].iloc[0])


def test_imresize_is_the_same_object_as_the_module_function() -> None:
    assert bench.imresize is imresize


def test_evaluate_skips_scales_a_published_model_does_not_have(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.core as core

    built: list[int] = []
    monkeypatch.setattr(core, "method_scales", lambda name: (2, 4) if name == "rlfn" else None)
    monkeypatch.setattr(
        core,
        "as_method",
        lambda obj, *, scale, **kw: built.append(scale) or bench.create_method("bicubic", scale=scale),
    )
    bench.evaluate("rlfn", "sample", scales=[2, 3, 4])
    assert built == [2, 4]
