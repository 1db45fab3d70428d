"""Speed of every registered method's `upscale` at 256x256 LR, and the latency pass's stability.

    pytest tests/benchmarks --benchmark-only

Parametrised over the registry, so a new method is benchmarked without touching this file. Timings are
recorded (in the table and in `extra_info`), never asserted: on a shared machine they vary with load.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.latency import measure_latency
from bench.registry import create_method, list_methods, method_groups

SCALE = 4
# the published models have their own benchmark (test_bench_zoo.py): they need their official weights
LOCAL = [n for n in list_methods() if n not in method_groups()["zoo"]]


@pytest.fixture(scope="module")
def lr256() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", LOCAL)
@pytest.mark.benchmark(group=f"method upscale: 256x256 RGB uint8 LR, x{SCALE}")
def test_method_upscale_256(benchmark, name: str, lr256: np.ndarray) -> None:
    method = create_method(name, scale=SCALE, device="cpu")
    method.upscale(lr256)  # warm-up outside the timing: kernels, caches, allocator pools
    sr = benchmark(method.upscale, lr256)
    assert sr.shape == (256 * SCALE, 256 * SCALE, 3)
    benchmark.extra_info.update(scale=SCALE, output_mpix=(256 * SCALE) ** 2 / 1e6)


@pytest.mark.parametrize("name", LOCAL)
@pytest.mark.benchmark(group="latency stability: two measure_latency runs, 1280x720 output, x3")
def test_latency_back_to_back_runs(benchmark, name: str) -> None:
    """The latency pass's own reproducibility: run it twice back to back on the same method and record
    how far the two medians differ (`extra_info["relative_difference"]`)."""
    method = create_method(name, scale=3, device="cpu")
    medians: list[float] = []

    def two_runs() -> None:
        for _ in range(2):
            medians.append(measure_latency(method, lr_shape=(240, 427))["median_ms"])

    benchmark.pedantic(two_runs, rounds=1, iterations=1)
    first, second = medians
    benchmark.extra_info.update(
        median_ms_first=first,
        median_ms_second=second,
        relative_difference=abs(first - second) / min(first, second),
    )
