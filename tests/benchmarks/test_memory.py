"""Peak memory (resident set size) of whole runs on large images, each in a fresh interpreter.

    pytest tests/benchmarks/test_memory.py --benchmark-only

- one 8000x8000 image through `bench.evaluate("espcn", ..., scales=2)`: a learned method tiles by itself
  above its pixel budget, so the peak stays under 2 GiB (it was ~9 GiB before);
- the quality pass (`python -m bench run --methods bicubic,espcn --pass quality --no-report`) over 40
  images of 4 MP against the same pass over 5 of them: a run holds one image at a time, so the peak of
  40 stays within 1.5x the peak of 5.

The images are made once per session (PNG, a smooth gradient plus noise) with a fresh LR cache, so the
LR is computed as on a first run. Peaks are recorded in `extra_info` (MiB) and asserted with the bounds
above; each run takes one round (a minute or two), not a timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

GIB = 1 << 30
# one 4 MP camera frame (2448x1632) per image of the quality pass; 5 and 40 of them
FRAME = (1632, 2448)
FEW, MANY = 5, 40

# the child reports its own peak: RUSAGE_CHILDREN would give the largest of every child so far
_REPORT = "import resource, sys; print('peak_rss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
_EVALUATE = "import bench, sys; bench.evaluate('espcn', datasets=sys.argv[1], scales=(2,), protocol='paper')"
_RUN = "import sys; from bench.cli import main\nif main(sys.argv[1:]): sys.exit('bench run failed')"


def _image(shape: tuple[int, int], seed: int) -> np.ndarray:
    """HxWx3 uint8: smooth gradients (compressible, image-like) plus a little noise, different per seed."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    out = np.empty((h, w, 3), dtype=np.uint8)
    for c in range(3):
        fy, fx, phase = rng.uniform(2.0, 9.0, 3)
        plane = 128 + 90 * np.sin(fy * 3 * y + phase) * np.cos(fx * 3 * x)
        plane += rng.normal(0.0, 4.0, (h, w)).astype(np.float32)
        out[:, :, c] = np.clip(plane, 0, 255)
    return out


def _write(folder: Path, count: int, shape: tuple[int, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(_image(shape, seed=i)).save(folder / f"img{i:02d}.png", compress_level=1)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`big`: one 8000x8000 image; `many`: 40 frames of 4 MP; `few`: the first 5 of them."""
    root = tmp_path_factory.mktemp("memory")
    many = _write(root / "many", MANY, FRAME)
    few = root / "few"
    few.mkdir()
    for path in sorted(many.iterdir())[:FEW]:
        os.link(path, few / path.name)
    return {"big": _write(root / "big", 1, (8000, 8000)), "many": many, "few": few}


def _peak_rss(code: str, args: list[str], cache: Path) -> int:
    """Peak resident set size in bytes of `python -c code args`, with the LR cache `cache` (a new folder)."""
    env = {**os.environ, "SRBENCH_CACHE": str(cache), "SRBENCH_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\n{_REPORT}", *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("peak_rss ")]
    # ru_maxrss is KiB on Linux, bytes on macOS
    return int(peak[-1]) * (1 if sys.platform == "darwin" else 1024)


def _once(benchmark: Callable[..., object], fn: Callable[[], int]) -> int:
    peaks: list[int] = []
    benchmark.pedantic(lambda: peaks.append(fn()), rounds=1, iterations=1)  # type: ignore[attr-defined]
    return peaks[0]


@pytest.mark.benchmark(group="peak memory")
def test_memory_8000x8000_espcn_x2_stays_under_2_gib(benchmark, folders, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    peak = _once(benchmark, lambda: _peak_rss(_EVALUATE, [str(folders["big"])], tmp_path / "cache"))
    benchmark.extra_info.update(peak_rss_mib=peak / (1 << 20), image="8000x8000", method="espcn x2")
    assert peak < 2 * GIB, f"peak RSS {peak / GIB:.2f} GiB"


@pytest.mark.benchmark(group="peak memory")
def test_memory_quality_pass_does_not_grow_with_the_number_of_images(
    benchmark, folders, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    def run(folder: str) -> int:
        args = ["run", "--methods", "bicubic,espcn", "--datasets", str(folders[folder]), "--scales", "2",
                "--pass", "quality", "--no-report", "--out", str(tmp_path / folder)]  # fmt: skip
        return _peak_rss(_RUN, args, tmp_path / f"cache-{folder}")

    few = run("few")
    many = _once(benchmark, lambda: run("many"))
    benchmark.extra_info.update(peak_rss_mib_few=few / (1 << 20), peak_rss_mib_many=many / (1 << 20))
    assert many <= 1.5 * few, (
        f"{MANY} images: {many / (1 << 20):.0f} MiB, {FEW} images: {few / (1 << 20):.0f} MiB"
    )
