"""Latency pass and machine probe: what a row holds and how rounds are calibrated (no timed assertions)."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.latency as latency
from bench.api import MethodInfo
from bench.cli import main
from bench.errors import UsageError
from bench.latency import (
    LATENCY_COLUMNS,
    latency_pass,
    lr_shape_for,
    measure_latency,
    methods_table,
    parse_sizes,
)
from bench.probe import probe_env
from bench.registry import create_method, list_methods

FAST = {"min_time_s": 0.0, "warmup_time_s": 0.0}  # the minimum count alone decides: keeps tests quick


class FakeClockMethod:
    """A method whose every call takes exactly `step_ms` on a fake clock (see `fake_clock`)."""

    def __init__(self, clock: list[int], step_ms: float = 10.0, scale: int = 2) -> None:
        self.name, self.scale, self.device = "fake", scale, "cpu"
        self.clock, self.step_ns, self.calls = clock, int(step_ms * 1e6), 0

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.clock[0] += self.step_ns
        return np.zeros((lr.shape[0] * self.scale, lr.shape[1] * self.scale, 3), np.uint8)

    def info(self) -> MethodInfo:
        return MethodInfo(name=self.name, scale=self.scale, device=self.device, macs_720p=1280 * 720 * 100)


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    clock = [0]
    monkeypatch.setattr(latency, "_now_ns", lambda: clock[0])
    return clock


def test_measure_latency_bicubic_row_has_documented_columns() -> None:
    row = measure_latency(create_method("bicubic", scale=2), lr_shape=(20, 30), **FAST)
    assert list(row) == LATENCY_COLUMNS
    assert (row["method"], row["scale"], row["device"]) == ("bicubic", 2, "cpu")
    assert (row["input_h"], row["input_w"], row["output_h"], row["output_w"]) == (20, 30, 40, 60)
    assert row["rounds"] >= 5
    assert math.isfinite(row["median_ms"]) and row["median_ms"] > 0
    assert 0 <= row["min_ms"] <= row["median_ms"] and row["iqr_ms"] >= 0
    assert row["mpix_per_s"] > 0 and row["peak_mem_mb"] >= 0
    assert row["threads"] == torch.get_num_threads() and row["batch"] == 1
    assert row["thp"] in ("0", "1") and row["device_name"]
    assert math.isnan(row["device_median_ms"])  # CUDA events only on CUDA


def test_measure_latency_rounds_obey_min_count(fake_clock: list[int]) -> None:
    method = FakeClockMethod(fake_clock, step_ms=10)
    row = measure_latency(method, lr_shape=(8, 8), min_rounds=7, **FAST)
    assert row["rounds"] == 7
    assert row["median_ms"] == row["min_ms"] == 10.0 and row["iqr_ms"] == 0.0


def test_measure_latency_rounds_run_until_min_time(fake_clock: list[int]) -> None:
    method = FakeClockMethod(fake_clock, step_ms=10)
    row = measure_latency(method, lr_shape=(8, 8), min_rounds=5, min_time_s=0.25, warmup=3, warmup_time_s=0.0)
    assert row["rounds"] == 25  # 25 rounds x 10 ms reach the 0.25 s minimum; 5 alone would not
    assert row["warmup"] == 3
    # first call (output size, peak memory; counts as warm-up) + 2 more warm-up calls + rounds
    assert method.calls == 1 + 2 + 25


def test_measure_latency_rounds_stop_at_max_rounds(fake_clock: list[int]) -> None:
    method = FakeClockMethod(fake_clock, step_ms=0.001)
    row = measure_latency(method, lr_shape=(8, 8), min_time_s=10.0, max_rounds=50, warmup_time_s=0.0)
    assert row["rounds"] == 50


def test_measure_latency_reports_gflops_from_macs(fake_clock: list[int]) -> None:
    method = FakeClockMethod(fake_clock, step_ms=10, scale=2)
    row = measure_latency(method, lr_shape=(360, 640), **FAST)  # output 720x1280: macs_720p exactly
    assert row["gflops"] == pytest.approx(2 * 1280 * 720 * 100 / 0.010 / 1e9)
    assert row["mpix_per_s"] == pytest.approx(1280 * 720 / 1e6 / 0.010)


def test_measure_latency_restores_gc_and_threads_after_a_failure() -> None:
    class Failing(FakeClockMethod):
        def upscale(self, lr: np.ndarray) -> np.ndarray:
            if self.calls >= 2:
                raise RuntimeError("boom")
            return super().upscale(lr)

    threads = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        measure_latency(Failing([0]), lr_shape=(8, 8), threads=1, **FAST)
    assert gc.isenabled()
    assert torch.get_num_threads() == threads


def test_measure_latency_rejects_bad_arguments() -> None:
    method = create_method("nearest", scale=2)
    with pytest.raises(UsageError, match="min_rounds"):
        measure_latency(method, lr_shape=(8, 8), min_rounds=0)
    with pytest.raises(UsageError, match="upscale_batch"):
        measure_latency(method, lr_shape=(8, 8), batch=2)


def test_measure_latency_same_seed_same_input() -> None:
    seen: list[np.ndarray] = []

    class Recorder(FakeClockMethod):
        def upscale(self, lr: np.ndarray) -> np.ndarray:
            seen.append(lr.copy())
            return super().upscale(lr)

    measure_latency(Recorder([0]), lr_shape=(6, 7), min_rounds=1, **FAST)
    measure_latency(Recorder([0]), lr_shape=(6, 7), min_rounds=1, **FAST)
    assert seen[0].dtype == np.uint8 and seen[0].shape == (6, 7, 3)
    assert np.array_equal(seen[0], seen[-1])


def test_measure_latency_torch_method_records_float32() -> None:
    _torchsr = pytest.importorskip("methods._torchsr")
    espcn = pytest.importorskip("methods.espcn")
    method = _torchsr.YChannelMethod("espcn", espcn.build_net(3), scale=3, receptive_radius=4)
    row = measure_latency(method, lr_shape=(12, 16), **FAST)
    assert row["dtype"] == "float32"
    assert (row["output_h"], row["output_w"]) == (36, 48)
    assert math.isfinite(row["gflops"]) and row["gflops"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_measure_latency_cuda_row_uses_events_and_device_memory() -> None:
    _torchsr = pytest.importorskip("methods._torchsr")
    espcn = pytest.importorskip("methods.espcn")
    method = _torchsr.YChannelMethod("espcn", espcn.build_net(3), scale=3, device="cuda", receptive_radius=4)
    row = measure_latency(method, lr_shape=(64, 64), **FAST)
    assert row["device"].startswith("cuda") and "cpu" not in row["device_name"].lower()
    assert math.isfinite(row["device_median_ms"]) and row["device_median_ms"] > 0
    assert row["rounds"] >= 5 and row["peak_mem_mb"] > 0


def test_parse_sizes_reads_width_x_height() -> None:
    assert parse_sizes("1280x720,1920x1080") == [(720, 1280), (1080, 1920)]
    assert parse_sizes(" 64X48 ") == [(48, 64)]


@pytest.mark.parametrize("bad", ["", "1280", "1280x", "x720", "0x720", "1280x720,abc", "-5x3"])
def test_parse_sizes_rejects_malformed(bad: str) -> None:
    with pytest.raises(UsageError, match="WxH"):
        parse_sizes(bad)


def test_lr_shape_for_rounds_up() -> None:
    assert lr_shape_for((720, 1280), 3) == (240, 427)
    assert lr_shape_for((720, 1280), 4) == (180, 320)


def test_latency_bytes_counts_float32_input_and_output() -> None:
    # uint8 + float32 output + a float32 working copy per HR pixel; uint8 + float32 input per LR pixel
    assert latency.latency_bytes((40, 60), 2) == 40 * 60 * 3 * 9 + 20 * 30 * 3 * 5


def test_check_latency_memory_refuses_a_size_that_cannot_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(latency, "available_memory", lambda device="cpu": (2 * 2**30, "MemAvailable"))
    with pytest.raises(UsageError) as err:
        latency.check_latency_memory(["bicubic", "espcn"], [4, 2], [(720, 1280), (20000, 30000)])
    msg = str(err.value)
    assert "\n" not in msg and "bicubic x2 at 30000x20000" in msg  # the smallest scale needs the most
    assert "GiB" in msg and "MemAvailable is 2.0 GiB" in msg and "smaller --sizes" in msg
    with pytest.raises(UsageError, match="the worker's memory limit is 0.0 GiB"):
        latency.check_latency_memory(["bicubic"], [2], [(720, 1280)], limit=2**20)


def test_check_latency_memory_accepts_default_sizes_for_every_method(monkeypatch: pytest.MonkeyPatch) -> None:
    # a machine with a couple of GB free times 1280x720 and 1920x1080 with any shipped method
    monkeypatch.setattr(latency, "available_memory", lambda device="cpu": (2 * 2**30, "MemAvailable"))
    latency.check_latency_memory(list_methods(), [2, 3, 4], [(720, 1280), (1080, 1920)])
    monkeypatch.setattr(latency, "available_memory", lambda device="cpu": None)  # unknown: refuses nothing
    latency.check_latency_memory(["bicubic"], [2], [(99999, 99999)])


def test_available_memory_on_this_machine_is_positive() -> None:
    found = latency.available_memory("cpu")
    assert found is None or (found[0] > 0 and found[1])


def test_run_latency_size_too_large_fails_before_allocating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rss0 = latency._reset_peak_rss()  # VmHWM from here on
    args = ["run", "--methods", "bicubic,espcn", "--pass", "latency", "--sizes", "99999x99999", "--no-report",
            "--no-progress", "--device", "cpu", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "99999x99999" in err and "GiB" in err and "--sizes" in err
    assert not (tmp_path / "r" / "latency.csv").exists()
    hwm = latency._status_kb("VmHWM")
    if rss0 is not None and hwm is not None:  # the 50000x50000 LR input alone would be 7 GiB
        assert (hwm - rss0) * 1024 < 2**30


def test_run_latency_size_too_large_fails_before_the_quality_pass(tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = ["run", "--methods", "bicubic", "--datasets", "sample", "--scales", "2", "--pass", "quality,latency",
            "--sizes", "99999x99999", "--no-report", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(args) == 2
    assert not out.exists()  # refused before the folder was claimed: no quality row computed and then lost


def test_latency_pass_one_row_per_method_scale_size() -> None:
    df, infos = latency_pass(
        ["nearest", "bicubic"], [2, 3], sizes=[(24, 40), (12, 12)], progress=False, **FAST
    )
    assert set(infos) == {("nearest", 2), ("nearest", 3), ("bicubic", 2), ("bicubic", 3)}
    assert list(df.columns) == LATENCY_COLUMNS
    assert len(df) == 2 * 2 * 2
    assert (df["rounds"] >= 5).all() and np.isfinite(df["median_ms"]).all()
    x3 = df[(df["scale"] == 3) & (df["method"] == "nearest")].iloc[0]
    assert (x3["input_h"], x3["input_w"], x3["output_h"], x3["output_w"]) == (8, 14, 24, 42)


def test_methods_table_has_one_info_row_per_method_and_scale() -> None:
    df = methods_table(["bicubic", "lanczos"], [2, 4], device="cpu")
    assert len(df) == 4
    assert {"name", "scale", "device", "params", "macs_720p", "weights_sha256"} <= set(df.columns)
    assert set(zip(df["name"], df["scale"], strict=True)) == {
        ("bicubic", 2),
        ("bicubic", 4),
        ("lanczos", 2),
        ("lanczos", 4),
    }


def test_probe_env_has_documented_keys() -> None:
    env = probe_env()
    for key in (
        "date_utc", "git_commit", "python", "torch", "numpy", "scipy", "platform", "cpu_model",
        "cpu_count", "cpu_affinity", "torch_threads", "thp_mem_alloc_enable", "torch_blas",
        "numpy_blas", "gpu", "matmul_gflops",
    ):  # fmt: skip
        assert key in env, key
    assert env["matmul_gflops"] > 0
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["date_utc"].endswith("+00:00")
    assert (env["gpu"] is None) == (not torch.cuda.is_available())


def test_probe_env_can_skip_the_measurement() -> None:
    assert probe_env(measure=False)["matmul_gflops"] is None


# known architecture sizes, through the registry as a user sees them (skipped until registered)
@pytest.mark.parametrize(
    ("name", "scale", "low", "high"),
    [("srcnn", 3, 57_281, 57_281), ("fsrcnn", 3, 12_809, 12_809), ("espcn", 3, 22_000, 23_500)],
)
def test_learned_method_param_count(name: str, scale: int, low: int, high: int) -> None:
    if name not in list_methods():
        pytest.skip(f"{name} is not registered yet")
    params = create_method(name, scale=scale).info().params
    assert low <= params <= high
