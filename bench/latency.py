"""Latency pass: sound timing of one method at a time (latency.csv) and the methods' cost table (methods.csv)."""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from bench.api import Method
from bench.errors import UsageError
from bench.probe import cpu_model, thp_setting

__all__ = [
    "LATENCY_COLUMNS",
    "DEFAULT_SIZES",
    "measure_latency",
    "latency_pass",
    "methods_table",
    "parse_sizes",
    "lr_shape_for",
    "latency_bytes",
    "available_memory",
    "check_latency_memory",
]

# (height, width) of the HR output: 1280x720 is the size papers quote cost for
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((720, 1280),)

# the clock of every timed round (module attribute so tests can substitute a fake clock)
_now_ns = time.perf_counter_ns

# one row of latency.csv, in this order
LATENCY_COLUMNS = [
    "method",
    "scale",
    "device",
    "device_name",
    "input_h",
    "input_w",
    "output_h",
    "output_w",
    "batch",
    "dtype",
    "threads",
    "thp",
    "warmup",
    "rounds",
    "median_ms",
    "iqr_ms",
    "min_ms",
    "device_median_ms",
    "mpix_per_s",
    "gflops",
    "peak_fraction",
    "peak_mem_mb",
]


def add_peak_fraction(lat: Any, matmul_gflops: float | None) -> Any:
    """`peak_fraction` = achieved GFLOP/s / the machine's float32 matmul GFLOP/s (env.json): how much of
    the practical compute ceiling a network reaches (CPU rows; NaN on a GPU or without a probe)."""
    import numpy as np

    cpu = ~lat["device"].astype(str).str.startswith("cuda")
    peak = float(matmul_gflops) if matmul_gflops else float("nan")
    lat["peak_fraction"] = np.where(cpu, lat["gflops"] / peak, float("nan"))
    return lat


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'1280x720,1920x1080' (WxH, as people write resolutions) -> [(720, 1280), (1080, 1920)] (h, w).

    Raises UsageError for anything that is not a comma-separated list of positive WxH pairs.
    """
    sizes = []
    for part in text.split(","):
        w, sep, h = part.strip().lower().partition("x")
        if not sep or not w.isdigit() or not h.isdigit() or int(w) < 1 or int(h) < 1:
            raise UsageError(
                f"bad size {part.strip()!r} in --sizes {text!r}; expected WxH pairs like 1280x720,1920x1080"
            )
        sizes.append((int(h), int(w)))
    return sizes


def lr_shape_for(size: tuple[int, int], scale: int) -> tuple[int, int]:
    """LR (h, w) whose x`scale` output covers the HR `size` (h, w): ceil(size / scale)."""
    return (math.ceil(size[0] / scale), math.ceil(size[1] / scale))


# What timing one image takes at the least, per pixel: the uint8 result, the float32 output and one float32
# working copy of it (a network's last feature map, a resampler's intermediate) per HR pixel; the uint8 input
# and its float32 copy per LR pixel. A lower bound (the shipped methods take 1 to 60 times as much), so a size
# refused for it cannot fit; one that passes may still be too large for a large network, whose rows then fail
_BYTES_PER_HR_PIXEL = 3 * (1 + 4 + 4)
_BYTES_PER_LR_PIXEL = 3 * (1 + 4)


def latency_bytes(size: tuple[int, int], scale: int) -> int:
    """The least memory, in bytes, that timing one image of HR output `size` (h, w) at x`scale` takes.

    Example:
        >>> latency_bytes((720, 1280), 2)
        28339200
    """
    lr_h, lr_w = lr_shape_for(size, scale)
    return size[0] * size[1] * _BYTES_PER_HR_PIXEL + lr_h * lr_w * _BYTES_PER_LR_PIXEL


def available_memory(device: str = "cpu") -> tuple[int, str] | None:
    """(bytes a new allocation can take, where that was read) on `device`; None when unknown. CPU: MemAvailable
    (else the free physical pages), capped by the cgroup's memory.max; CUDA: torch.cuda.mem_get_info."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.mem_get_info(torch.device(device))[0]), f"the free memory of {device}"
    found: list[tuple[int, str]] = []
    kb = _status_kb("MemAvailable", "/proc/meminfo")
    if kb is not None:
        found.append((kb * 1024, "MemAvailable"))
    elif hasattr(os, "sysconf"):
        with suppress(ValueError, OSError):
            found.append((os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free memory"))
    with suppress(OSError, ValueError):  # a container's limit (cgroup v2); "max" when there is none
        cgroup = Path("/sys/fs/cgroup")
        limit = int((cgroup / "memory.max").read_text())
        found.append((limit - int((cgroup / "memory.current").read_text()), "the cgroup's memory.max"))
    return min(found) if found else None


def check_latency_memory(
    method_names: Sequence[str],
    scales: Iterable[int],
    sizes: Sequence[tuple[int, int]],
    device: str = "cpu",
    *,
    limit: int | None = None,
) -> None:
    """Raise UsageError, before anything is allocated, when a (method, scale, size) of a latency pass cannot
    fit: `latency_bytes` above the memory available on this machine (and on `device` when it is CUDA).

    `limit` caps what is available (a Dask worker's memory limit). Unknown memory refuses nothing.
    """
    from bench.registry import method_scales

    cells = [(s, n) for s in sorted(scales)  # the smallest scale needs the most: checked first
             for n in method_names if (known := method_scales(n)) is None or s in known]  # fmt: skip
    places = [available_memory("cpu"), available_memory(device) if device.startswith("cuda") else None]
    places.append((limit, "the worker's memory limit") if limit else None)
    for h, w in sizes:
        for scale, name in cells:
            need = latency_bytes((h, w), scale)
            for have, where in (p for p in places if p is not None):
                if need > have:
                    raise UsageError(
                        f"latency of {name} x{scale} at {w}x{h} needs at least {need / 2**30:.1f} GiB (its "
                        f"float32 input and output), but {where} is {max(have, 0) / 2**30:.1f} GiB; give "
                        f"smaller --sizes, e.g. --sizes 1280x720"
                    )


def measure_latency(
    method: Method,
    *,
    lr_shape: tuple[int, int],
    device: str | None = None,
    min_rounds: int = 5,
    min_time_s: float = 0.25,
    max_rounds: int = 1000,
    warmup: int = 1,
    warmup_time_s: float = 0.05,
    batch: int = 1,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time `method.upscale` on a seeded synthetic HxWx3 uint8 LR image; one row of latency.csv.

    Warm-up: at least `warmup` calls and `warmup_time_s` seconds, counted from the first call (first
    calls build kernels, fill caches and allocator pools; excluded). Then rounds of one call each, timed with
    `time.perf_counter_ns`, until at least `min_rounds` rounds *and* `min_time_s` seconds are done
    (at most `max_rounds`), with garbage collection paused and under `torch.inference_mode()`.
    On CUDA each round is bracketed by `torch.cuda.synchronize()` and also timed with CUDA events
    (`device_median_ms`). torch threads are set to `threads` (default: torch's current setting),
    restored afterwards, and recorded. `batch > 1` times `upscale_batch` on `batch` images per round
    (the method must offer it); `median_ms` is then per round, `mpix_per_s` counts all outputs.

    Peak memory (`peak_mem_mb`) is measured on the first (untimed) call: CUDA `max_memory_allocated`
    growth; on CPU the larger of the peak RSS growth (VmHWM, reset through /proc/self/clear_refs)
    and tracemalloc's peak (numpy allocations). Memory that the allocator reuses from earlier work is
    not growth, so on CPU it is a lower bound. An optional `method.prepare_for_latency()` runs first
    (e.g. compiling), outside any timing. Raises UsageError for bad arguments; the method's own
    errors propagate.
    """
    import torch

    if min_rounds < 1 or max_rounds < min_rounds:
        raise UsageError(f"need 1 <= min_rounds <= max_rounds, got {min_rounds} and {max_rounds}")
    if batch < 1:
        raise UsageError(f"batch must be >= 1, got {batch}")
    if batch > 1 and not hasattr(method, "upscale_batch"):
        raise UsageError(f"method {method.name!r} has no upscale_batch; use batch=1")
    h, w = (int(v) for v in lr_shape)
    rng = np.random.default_rng(seed)
    lrs = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(batch)]
    call: Callable[[], Any]
    if batch > 1:
        call = lambda: method.upscale_batch(lrs)  # type: ignore[attr-defined]  # noqa: E731
    else:
        call = lambda: method.upscale(lrs[0])  # noqa: E731

    device = str(device or getattr(method, "device", "cpu"))
    on_cuda = device.startswith("cuda") and torch.cuda.is_available()
    sync: Callable[[], None] = torch.cuda.synchronize if on_cuda else (lambda: None)
    old_threads = torch.get_num_threads()
    threads = threads or old_threads
    prepare = getattr(method, "prepare_for_latency", None)

    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            if callable(prepare):
                prepare()
            # the first call (the slowest: kernels are built, memory is fresh) tells the output size and
            # the peak memory, and is the first warm-up call
            t_end = _now_ns() + int(warmup_time_s * 1e9)  # a slow first call is warm-up enough
            out, peak_mb = _call_measuring_memory(call, on_cuda)
            first = out[0] if batch > 1 else out
            out_h, out_w = int(first.shape[0]), int(first.shape[1])
            del out, first
            n_warm = 1
            while n_warm < warmup or _now_ns() < t_end:
                call()
                n_warm += 1
            sync()
            times_ns, device_ms = _timed_rounds(call, sync, on_cuda, min_rounds, min_time_s, max_rounds)
    finally:
        torch.set_num_threads(old_threads)

    timing = {"times_ns": times_ns, "device_ms": device_ms, "warmup": n_warm, "threads": threads,
              "peak_mb": peak_mb, "on_cuda": on_cuda}  # fmt: skip
    return _latency_row(method, device, (h, w), (out_h, out_w), batch, timing)


def _latency_row(
    method: Method,
    device: str,
    lr_hw: tuple[int, int],
    out_hw: tuple[int, int],
    batch: int,
    t: dict[str, Any],
) -> dict[str, Any]:
    """One latency.csv row from the timed rounds `t` of `measure_latency`."""
    import torch

    (h, w), (out_h, out_w) = lr_hw, out_hw
    times_ns, device_ms, on_cuda = t["times_ns"], t["device_ms"], t["on_cuda"]
    n_warm, threads, peak_mb = t["warmup"], t["threads"], t["peak_mb"]
    ms = np.asarray(times_ns, dtype=np.float64) / 1e6
    q1, median, q3 = np.percentile(ms, [25, 50, 75])
    info = method.info()
    macs = _macs_for(info.macs_720p, out_h * out_w) if info.macs_720p else None
    return {
        "method": method.name,
        "scale": int(method.scale),
        "device": device,
        "device_name": torch.cuda.get_device_name(torch.device(device)) if on_cuda else cpu_model(),
        "input_h": h,
        "input_w": w,
        "output_h": out_h,
        "output_w": out_w,
        "batch": batch,
        "dtype": _dtype_of(method, info),
        "threads": threads,
        "thp": thp_setting(),
        "warmup": n_warm,
        "rounds": len(ms),
        "median_ms": float(median),
        "iqr_ms": float(q3 - q1),
        "min_ms": float(ms.min()),
        "device_median_ms": float(statistics.median(device_ms)) if device_ms else math.nan,
        "mpix_per_s": batch * out_h * out_w / 1e6 / (median / 1e3),
        # achieved arithmetic rate: read it against env.json's matmul_gflops (the compute ceiling)
        "gflops": batch * 2.0 * macs / (median / 1e3) / 1e9 if macs else math.nan,
        "peak_fraction": math.nan,  # set by the run from env.json's matmul rate (add_peak_fraction)
        "peak_mem_mb": peak_mb,
    }


def _timed_rounds(
    call: Callable[[], Any],
    sync: Callable[[], None],
    on_cuda: bool,
    min_rounds: int,
    min_time_s: float,
    max_rounds: int,
) -> tuple[list[int], list[float]]:
    import torch

    times: list[int] = []
    device_ms: list[float] = []
    gc_was_enabled = gc.isenabled()
    # a collection inside a round would be charged to the method; no gc.collect() before: with
    # torch and pandas loaded a full collection costs ~0.2 s, more than most measurements
    gc.disable()
    try:
        budget_ns = int(min_time_s * 1e9)
        spent = 0
        while len(times) < max_rounds and (len(times) < min_rounds or spent < budget_ns):
            if on_cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                sync()
                t0 = _now_ns()
                start.record()
                call()
                end.record()
                sync()
                dt = _now_ns() - t0
                device_ms.append(start.elapsed_time(end))
            else:
                t0 = _now_ns()
                call()
                dt = _now_ns() - t0
            times.append(dt)
            spent += dt
    finally:
        if gc_was_enabled:
            gc.enable()
    return times, device_ms


def _call_measuring_memory(call: Callable[[], Any], on_cuda: bool) -> tuple[Any, float]:
    """call() and the memory it grew by, in MiB (CUDA: allocated; CPU: max of RSS and tracemalloc)."""
    if on_cuda:
        import torch

        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = call()
        torch.cuda.synchronize()
        return out, (torch.cuda.max_memory_allocated() - base) / 2**20
    rss0 = _reset_peak_rss()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    traced0 = tracemalloc.get_traced_memory()[0]
    try:
        out = call()
        traced = tracemalloc.get_traced_memory()[1] - traced0
    finally:
        if not tracing:
            tracemalloc.stop()
    hwm = _status_kb("VmHWM")
    rss_growth = (hwm - rss0) * 1024 if (rss0 is not None and hwm is not None) else 0
    return out, max(rss_growth, traced) / 2**20


def _status_kb(key: str, path: str = "/proc/self/status") -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> int | None:
    """Reset the peak-RSS mark (Linux: writing 5 to /proc/self/clear_refs) and return RSS in kB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_kb("VmRSS")


def _macs_for(macs_720p: int, out_pixels: int) -> float:
    # convolution cost is linear in the number of pixels
    return macs_720p * out_pixels / (1280 * 720)


def _dtype_of(method: Method, info: Any) -> str | None:
    """The arithmetic's dtype: method.dtype, info().extra['dtype'], or the torch module's parameters."""
    dtype = getattr(method, "dtype", None) or info.extra.get("dtype")
    if dtype is None:
        net = _torch_module(method)
        if net is not None:
            param = next(iter(net.parameters()), None)
            dtype = param.dtype if param is not None else None
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def _torch_module(method: Method) -> Any:
    import torch

    for attr in ("net", "model", "module"):
        obj = getattr(method, attr, None)
        if isinstance(obj, torch.nn.Module):
            return obj
    return None


@contextmanager
def _progress(total: int, enabled: bool, desc: str):  # type: ignore[no-untyped-def]
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="method", leave=False) as bar:
        yield bar


def latency_pass(
    method_names: Sequence[str],
    scales: Iterable[int],
    *,
    device: str = "cpu",
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    build: Callable[..., Method] | None = None,
    **measure_kw: Any,
) -> tuple[Any, dict[tuple[str, int], dict[str, Any]]]:
    """Measure every (method, scale, size) one at a time: (DataFrame in LATENCY_COLUMNS order, infos).

    `sizes` are HR output (h, w); the LR input is ceil(size / scale). Methods that only look stored
    outputs up (`needs_ref`) have nothing to time and are skipped. Each method is built, measured
    at every size and released before the next one, so nothing else runs while a method is timed.
    A method that fails to build or to run loses its rows only (reported through `log`); the pass
    goes on. `infos` maps (method, scale) to its `MethodInfo.as_row()`. `build(name, scale=, device=)`
    builds each method (default `create_method`; the runner's applies its method options, e.g. a
    weights file). `measure_kw` goes to `measure_latency` (min_rounds, min_time_s, threads, batch, ...).
    Raises UsageError, before building anything, for a size that cannot fit (`check_latency_memory`).
    """
    import pandas as pd

    from bench.registry import create_method, method_scales

    scales = list(scales)
    check_latency_memory(method_names, scales, sizes, device)
    rows: list[dict[str, Any]] = []
    infos: dict[tuple[str, int], dict[str, Any]] = {}
    with _progress(len(method_names) * len(scales), progress, "latency") as bar:
        for name in method_names:
            supported = method_scales(name)
            for scale in scales:
                if supported is not None and scale not in supported:
                    continue  # no such model at this scale (the run noted it)
                if bar is not None:
                    bar.set_postfix_str(f"{name} x{scale}")
                try:
                    method = (build or create_method)(name, scale=scale, device=device)
                    infos[(name, scale)] = method.info().as_row()
                    if not getattr(method, "needs_ref", False):
                        for size in sizes:
                            rows.append(
                                measure_latency(method, lr_shape=lr_shape_for(size, scale), **measure_kw)
                            )
                    del method  # released before the next one is built (reference counting frees it)
                except (Exception, MemoryError) as exc:  # noqa: BLE001 - one method's failure is its own
                    if log is not None:
                        log(f"failed: latency of {name} x{scale}: {type(exc).__name__}: {str(exc)[:300]}")
                if bar is not None:
                    bar.update(1)
    return pd.DataFrame(rows, columns=LATENCY_COLUMNS), infos


def methods_table(method_names: Sequence[str], scales: Iterable[int], device: str = "cpu") -> Any:
    """MethodInfo of every (method, scale) as a pandas DataFrame: one row of methods.csv each."""
    import pandas as pd

    from bench.registry import create_method

    scales = list(scales)
    rows = []
    for name in method_names:
        for scale in scales:
            rows.append(create_method(name, scale=scale, device=device).info().as_row())
    return pd.DataFrame(rows)
