"""Describe the machine a run was measured on (env.json): versions, CPU/GPU, threads, compute ceiling."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.data.paths import source_checkout

__all__ = [
    "probe_env",
    "matmul_gflops",
    "cpu_model",
    "git_commit",
    "thp_setting",
    "srbench_version",
    "plugin_distributions",
]


def probe_env(*, measure: bool = True) -> dict[str, Any]:
    """Versions, CPU/GPU, threads, BLAS/oneDNN and the float32 matrix-product GFLOP/s of this machine.

    `measure=False` skips `matmul_gflops` (about a second) and records None instead.
    Never raises for a missing optional piece: unknown values are None.
    """
    import numpy as np
    import scipy
    import torch

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    env: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "srbench": srbench_version(),
        # the commit only when srbench runs from its own checkout: an installed copy has none of its own
        "git_commit": git_commit() if source_checkout() else None,
        "plugins": plugin_distributions(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thp_mem_alloc_enable": thp_setting(),
        "kernel_thp": _read_first_line("/sys/kernel/mm/transparent_hugepage/enabled"),
        "torch_blas": _torch_blas(torch),
        "numpy_blas": _numpy_blas(),
        "gpu": _gpu(torch),
        "matmul_gflops": matmul_gflops() if measure else None,
    }
    return env


def srbench_version() -> str:
    """The installed srbench distribution's version (the package's own when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("srbench")
    except PackageNotFoundError:
        from bench import __version__

        return __version__


def plugin_distributions() -> dict[str, str]:
    """Entry point name -> 'distribution version' of every third-party method plugin installed."""
    from importlib.metadata import entry_points

    from bench.registry import ENTRY_POINT_GROUP

    out = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        out[ep.name] = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
    return out


def thp_setting() -> str:
    """THP_MEM_ALLOC_ENABLE as torch's CPU allocator sees it ('0' when unset): huge pages for large
    tensors change CPU latency of the networks by up to 1.7x, so every latency row records it."""
    return os.environ.get("THP_MEM_ALLOC_ENABLE", "0")


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Achieved float32 GFLOP/s of an n x n matrix product on the CPU (median of `repeats`).

    The practical compute ceiling that a method's achieved GFLOP/s is read against; ~0.5 s here.
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up: thread pool start and first-touch of `out`
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter_ns() - t0)
    return 2.0 * n**3 / statistics.median(times)  # flop per ns = GFLOP/s


def git_commit(cwd: str | Path | None = None) -> str | None:
    """HEAD of the git checkout holding this package (with '-dirty' when changed), None without git."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "") if sha else None


def cpu_model() -> str | None:
    """CPU model name from /proc/cpuinfo (Linux) or platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _read_first_line(path: str) -> str | None:
    try:
        return Path(path).read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None


def _torch_blas(torch: Any) -> dict[str, Any]:
    """The parts of torch.__config__ that decide CPU speed: BLAS, oneDNN, SIMD level, OpenMP."""
    config = torch.__config__.show()
    parallel = torch.__config__.parallel_info()

    def find(pattern: str, text: str) -> str | None:
        m = re.search(pattern, text)
        return m.group(1).strip() if m else None

    return {
        "blas": find(r"BLAS_INFO=([^,\n]+)", config),
        "lapack": find(r"LAPACK_INFO=([^,\n]+)", config),
        "mkl": find(r"(Intel\(R\) oneAPI Math Kernel Library[^\n]*)", parallel + config),
        "onednn": find(r"(Intel\(R\) MKL-DNN v[^\s]+|oneDNN v[^\s]+)", parallel + config),
        "cpu_capability": find(r"CPU capability usage: ([^\n]+)", config),
        "parallel_backend": find(r"ATen parallel backend: ([^\n]+)", parallel),
        "mkldnn_enabled": bool(torch.backends.mkldnn.is_available()),
    }


def _numpy_blas() -> list[dict[str, Any]] | str | None:
    """numpy's BLAS: threadpoolctl's view when installed, else the build configuration."""
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-not-found]

        return [
            {k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for info in threadpool_info()
            if info.get("user_api") == "blas"
        ]
    except ImportError:
        pass
    try:
        import numpy as np

        cfg = np.show_config(mode="dicts")  # numpy >= 1.26
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name')} {blas.get('version')}".strip() if blas else None
    except Exception:  # older numpy prints instead of returning; the BLAS name is then unknown
        return None


def _gpu(torch: Any) -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    driver = None
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.splitlines()[0].strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return {
        "name": props.name,
        "count": torch.cuda.device_count(),
        "memory_gb": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "driver": driver,
    }
