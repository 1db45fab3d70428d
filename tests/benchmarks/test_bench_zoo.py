"""Speed of the published models on this CPU at 1280x720 output, and their share of the compute ceiling.

    SRBENCH_WEIGHTS_PATH=../shared/weights pytest tests/benchmarks/test_bench_zoo.py --benchmark-only

One benchmark per (model, scale) with official weights. `extra_info` records the achieved GFLOP/s (from
the model's mult-adds, torch.utils.flop_counter) and its fraction of this machine's float32 matmul rate
(`bench.probe.matmul_gflops`, measured once per session). Timings are recorded, never asserted.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from bench.latency import lr_shape_for
from bench.probe import matmul_gflops
from bench.registry import create_method
from methods.zoo.catalog import checkpoints

CELLS = [(c.method, s) for c in checkpoints() for s in c.scales]
OUTPUT = (720, 1280)

pytestmark = pytest.mark.skipif(
    not os.environ.get("SRBENCH_WEIGHTS_PATH"), reason="set SRBENCH_WEIGHTS_PATH to the official weights"
)


@pytest.fixture(scope="module")
def peak_gflops() -> float:
    return matmul_gflops()


@pytest.mark.parametrize(("name", "scale"), CELLS)
@pytest.mark.benchmark(group="published models: 1280x720 output, float32 CPU")
def test_zoo_upscale_720p(benchmark, peak_gflops: float, name: str, scale: int) -> None:  # type: ignore[no-untyped-def]
    method = create_method(name, scale=scale, device="cpu")
    h, w = lr_shape_for(OUTPUT, scale)
    lr = np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    method.upscale(lr)  # warm-up outside the timing
    sr = benchmark.pedantic(method.upscale, args=(lr,), rounds=3, iterations=1)
    assert sr.shape == (h * scale, w * scale, 3)
    info = method.info()
    macs = (info.macs_720p or 0) * (h * scale * w * scale) / (1280 * 720)
    median_s = benchmark.stats.stats.median
    gflops = 2.0 * macs / median_s / 1e9
    benchmark.extra_info.update(
        scale=scale, params=info.params, gmacs=macs / 1e9, gflops=gflops, peak_gflops=peak_gflops,
        peak_fraction=gflops / peak_gflops,
    )  # fmt: skip
