"""The quality pass on a Dask cluster: one task per (method, scale, dataset, chunk of images), rows back to the client.

The runner hands its pass here when a run names a scheduler or a number of local workers. Workers open the
datasets and weights themselves (the same SRBENCH_DATA_PATH / cache / download / mirror rules), build each
method once per worker process, and score with the same core as the in-process pass (`bench.core`
and the cell rules of `bench.cells`).
The client journals rows as tasks complete, so `--resume` works across cluster runs and client restarts.
The latency pass, after it, runs on one worker alone, with that worker's own probe (`latency_on_cluster`).
Nothing here imports dask until a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bench import cells as rules
from bench.api import MethodInfo
from bench.core import big_enough, row_base, score_output
from bench.data import Dataset, Sample, canonical_name, open_dataset
from bench.errors import BenchError, DataError, UsageError
from bench.latency import LATENCY_COLUMNS, check_latency_memory, latency_pass
from bench.probe import matmul_gflops, probe_env
from bench.protocol import Protocol
from bench.registry import method_groups
from bench.store import sr_image_path
from bench.upscale import build_method

__all__ = ["DASK_FIX", "CHUNK_IMAGES", "TASK_RETRIES", "MACHINE_KEYS", "require_distributed",
           "check_cluster_options", "run_on_cluster", "latency_on_cluster"]  # fmt: skip

DASK_FIX = "pip install 'srbench[dask]'"
# images per task: small enough to spread a dataset over workers and lose little to a dead worker, large
# enough that the per-task cost (scheduling, opening the dataset, returning rows) stays small beside scoring
CHUNK_IMAGES = 4
# a task that raises is run again this often; a task whose worker dies is rescheduled by Dask up to
# `distributed.scheduler.allowed-failures` times (default 3), then fails with KilledWorker
TASK_RETRIES = 1
CONNECT_TIMEOUT_S = 30

Row = dict[str, Any]
Log = Callable[[str], None]


# ----------------------------------------------------------------------------------------- options


def require_distributed() -> ModuleType:
    """The `distributed` module; UsageError naming the extra when Dask is not installed."""
    try:
        import distributed
    except ImportError:
        raise UsageError(
            f"--scheduler and --workers run on Dask, which is not installed; {DASK_FIX}"
        ) from None
    return distributed


def check_cluster_options(scheduler: str | None, workers: int | None) -> None:
    """UsageError for a request that cannot name a cluster (both options, no workers, no Dask)."""
    if scheduler is not None and workers is not None:
        raise UsageError("give either --scheduler (a running cluster) or --workers N (a local one), not both")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if scheduler is not None and not scheduler.strip():
        raise UsageError("--scheduler needs an address (tcp://HOST:8786) or a scheduler file")
    if scheduler is not None or workers is not None:
        require_distributed()


def _connect(scheduler: str | None, workers: int | None, device: str) -> tuple[Any, Any]:
    """(client, the local cluster it owns or None). Raises UsageError when the scheduler cannot be reached."""
    check_cluster_options(scheduler, workers)
    distributed = require_distributed()
    if workers is not None:
        # one thread per worker process: a method instance never runs two images at once, and torch in
        # each worker uses one core (Dask sets OMP_NUM_THREADS=1 in its workers). On CUDA each local worker
        # is one GPU slot, so N workers share this machine's GPU; one task per GPU takes workers started
        # by hand, one per GPU (README, "Running on a cluster")
        cluster = distributed.LocalCluster(
            n_workers=workers, processes=True, threads_per_worker=1, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.ERROR,
            resources={"GPU": 1} if device.startswith("cuda") else None,
        )  # fmt: skip
        return distributed.Client(cluster), cluster
    address = scheduler or ""
    try:
        if "://" in address:
            return distributed.Client(address, timeout=CONNECT_TIMEOUT_S), None
        if Path(address).is_file():
            return distributed.Client(scheduler_file=address, timeout=CONNECT_TIMEOUT_S), None
    except (OSError, TimeoutError) as exc:
        raise UsageError(
            f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}: {exc}); "
            f"start it ('dask scheduler') or check the address"
        ) from None
    raise UsageError(
        f"--scheduler {scheduler}: neither an address (tcp://HOST:8786) nor an existing scheduler file"
    )


def _needs_gpu(name: str, device: str) -> bool:
    # classical methods and stored outputs run anywhere; anything else on CUDA takes a whole GPU
    return (
        device.startswith("cuda") and name not in method_groups()["classical"] and not name.startswith("dir:")
    )


def _check_gpu_workers(client: Any, scheduler: str | None) -> None:
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if workers and not any(w.get("resources", {}).get("GPU") for w in workers.values()):
        raise UsageError(
            f"--device cuda: no worker of the scheduler at {scheduler} offers a GPU; start workers with "
            f"'dask worker ADDRESS --nthreads 1 --resources GPU=1' or run with --device cpu"
        )


# ----------------------------------------------------------------------------------------- on a worker


@dataclass(frozen=True)
class _Task:
    """One task: a method at a scale on a chunk of one dataset's images; pickled to a worker."""

    spec: str  # how the worker opens the dataset: a manifest name, `sample`, or a folder (shared file system)
    dataset: str  # the dataset's name in this run
    method: str
    scale: int
    device: str
    weights: str | None
    protocol: Protocol
    cells: tuple[tuple[str, Row, bool], ...]  # (image, the row's identifying columns, return the SR image)
    upscale: Callable[..., tuple[Any, tuple[int, ...], float]]  # the runner's `_upscale_or_tile`
    failed: Callable[[Row, BaseException, Log], Row]  # the runner's `_failed`: a failure row, logged


_lock = threading.Lock()
# per worker process: each method built once, with a lock for methods not marked `thread_safe` (a worker
# started with --nthreads above 1 runs tasks side by side; in-process such methods run one image at a time)
_methods: dict[tuple[str, int, str, str | None], tuple[Any, threading.Lock]] = {}
_datasets: dict[str, Dataset] = {}


def _method(name: str, scale: int, device: str, weights: str | None) -> tuple[Any, threading.Lock]:
    key = (name, scale, device, weights)
    with _lock:
        if key not in _methods:
            # info() is asked once, by `_method_info` (it counts mult-adds: seconds for a large network)
            _methods[key] = (
                build_method(name, scale=scale, device=device, weights=weights),
                threading.Lock(),
            )
        return _methods[key]


def _method_info(name: str, scale: int, device: str, weights: str | None) -> MethodInfo | str:
    """The method's MethodInfo, built on this worker (and kept for its tasks), or why it cannot be built.

    A broken `info()` fails the method's cells, as in-process."""
    try:
        info: MethodInfo = _method(name, scale, device, weights)[0].info()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - build errors fail the method's cells, as in-process
        return str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
    return info


def _samples(task: _Task) -> tuple[dict[str, Sample], dict[str, str]]:
    """The chunk's samples, read on this worker, and why any image of it could not be read."""
    with _lock:
        if task.spec not in _datasets:
            _datasets[task.spec] = open_dataset(task.spec)
        full = _datasets[task.spec]
    wanted = {image for image, _, _ in task.cells}
    ds = replace(full, name=task.dataset, files=[f for f in full.files if f[0] in wanted], problems=[])
    samples = {s.image: s for s in ds.samples(task.scale)}
    return samples, {p.image: p.reason for p in ds.problems}


def _run_task(task: _Task) -> tuple[list[Row], dict[str, np.ndarray], list[str]]:
    """Rows of the task's cells (failed cells included), the SR images asked for, and the log lines."""
    notes: list[str] = []
    method, lock = _method(task.method, task.scale, task.device, task.weights)
    alone = contextlib.nullcontext() if getattr(method, "thread_safe", False) else lock
    samples, problems = _samples(task)
    rows, images = [], {}
    for image, base, keep in task.cells:
        sample = samples.get(image)
        if sample is None or sample.sha256 != base["image_sha256"]:
            why = problems.get(image) or "the worker's copy differs from the client's (sha256)"
            rows.append(
                task.failed(base, DataError(f"{task.dataset}/{image} on this worker: {why}"), notes.append)
            )
            continue
        try:
            with alone:
                raw, expected, seconds = task.upscale(
                    method, sample, task.protocol, task.method, notes.append
                )
            sr, p, q = score_output(raw, expected, sample, task.protocol)
        except (Exception, MemoryError, SystemExit) as exc:  # a method bug fails its cell, as in-process
            rows.append(task.failed(base, exc, notes.append))
            continue
        rows.append({**base, "psnr": p, "ssim": q, "status": "ok", "seconds": seconds})
        if keep:
            images[image] = sr
    return rows, images, notes


# ----------------------------------------------------------------------------------------- the client


class _RemoteMethod:
    """A method built on the workers, seen from the client: its MethodInfo (for methods.csv and the rows)."""

    def __init__(self, info: MethodInfo) -> None:
        self._info = info

    def info(self) -> MethodInfo:
        return self._info


def _spec(ds: Dataset) -> str:
    """How a worker opens `ds` itself: a user's folder by its path, anything else by its manifest name."""
    if ds.origin == "folder":
        return str(ds.root)
    # the runner renames a dataset named twice `<name>-<n>`
    return ds.name if canonical_name(ds.name) else ds.name.rpartition("-")[0]


class _ClusterPass:
    """Plans the cells, sends the missing ones to the cluster and journals the rows that come back."""

    def __init__(self, qp: Any, client: Any, distributed: ModuleType) -> None:
        self.qp, self.client = qp, client
        self.req, self.protocol, self.device = qp.req, qp.protocol, qp.device
        self.futures = distributed.as_completed()
        self.tasks: dict[Any, _Task] = {}
        self.order: dict[tuple[Any, ...], int] = {}  # row key -> place in the in-process order

    def submit(self, fn: Callable[..., Any], *args: Any, name: str) -> Any:
        gpu = {"GPU": 1} if _needs_gpu(name, self.device) else None
        return self.client.submit(fn, *args, resources=gpu, retries=TASK_RETRIES, pure=False)

    def build(self) -> None:
        """Build every (method, scale) on the workers once: their infos give the rows' weights sha256."""
        req = self.req
        cells = [(m, s) for s in req.scales for m in req.methods if rules.has_scale(m, s)]
        futures = {
            (m, s): self.submit(_method_info, m, s, self.device, req.weights, name=m) for m, s in cells
        }
        for (name, scale), fut in futures.items():
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the method's cells fail
                result = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            if isinstance(result, str):
                self.qp.build_errors[(name, scale)] = result
                self.qp.log(f"error: {name} x{scale}: {result}")
            else:
                self.qp.methods[(name, scale)] = _RemoteMethod(result)

    def dataset(self, ds: Dataset, outcome: Any) -> None:
        """Plan one dataset, as `_QualityPass.dataset` walks it: rows reused from the journal, tasks sent."""
        for scale in self.req.scales:
            samples = [s for s in ds.samples(scale) if big_enough(s, self.protocol, ds)]
            to_save = rules.images_to_save(samples, self.req.save_images)
            for name in self.req.methods:
                if not rules.has_scale(name, scale):
                    continue
                todo = self.missing(name, scale, samples, to_save)
                for i in range(0, len(todo), CHUNK_IMAGES):
                    task = _Task(_spec(ds), ds.name, name, scale, self.device, self.req.weights, self.protocol,
                                 tuple(todo[i : i + CHUNK_IMAGES]), rules.upscale_or_tile,
                                 rules.failed)  # fmt: skip
                    fut = self.submit(_run_task, task, name=name)
                    self.tasks[fut] = task
                    self.futures.add(fut)
        outcome.problems.extend(f"{p.dataset}/{p.image}: {p.reason}" for p in ds.problems)
        ds.problems.clear()

    def missing(self, name: str, scale: int, samples: list[Sample], to_save: set[str]) -> list[Any]:
        """The cells still to compute; rows in the journal are reused, a method that cannot be built fails."""
        qp, built = self.qp, self.qp.methods.get((name, scale))
        wsha = built.info().weights_sha256 if built is not None else None
        todo = []
        for sample in samples:
            base = row_base(name, sample, self.protocol, wsha)
            key = rules.row_key(base)
            self.order[key] = len(self.order)
            if key in qp.done:
                qp.rows.append(qp.done[key])
                qp.bar.update(1)
            elif built is None:
                qp._keep(rules.failure_row(base, qp.build_errors[(name, scale)]))
            else:
                todo.append((sample.image, base, sample.image in to_save))
        return todo

    def collect(self) -> None:
        """Journal the rows of each task as it completes; a task that failed fails its cells."""
        for fut in self.futures:
            task = self.tasks.pop(fut)
            try:
                rows, images, notes = fut.result()
            except Exception as exc:  # noqa: BLE001 - retries spent (or KilledWorker): its cells fail
                images, notes = {}, []
                rows = [task.failed(base, exc, notes.append) for _, base, _ in task.cells]
            fut.release()
            for note in notes:
                self.qp.log(note)
            for image, sr in images.items():  # where the in-process pass saves them
                rules.save_png(
                    sr_image_path(self.qp.store.dir, task.method, task.dataset, task.scale, image), sr
                )
            for row in rows:
                self.qp._keep(row)
        # rows in the in-process order, so quality.csv reads the same whoever computed it
        self.qp.rows.sort(key=lambda r: self.order.get(rules.row_key(r), len(self.order)))


def run_on_cluster(qp: Any, datasets: list[Dataset], outcome: Any) -> bool:
    """Run the quality pass `qp` (a `bench.runner._QualityPass`) on the cluster its request names, if any.

    Rows are journaled through `qp` as tasks complete. Returns False, having done nothing, when the
    request names no cluster (the pass then runs in-process). Raises UsageError when Dask is missing or
    the scheduler cannot be reached; KeyboardInterrupt passes through (every row received is journaled).
    """
    req = qp.req
    if req.scheduler is None and req.workers is None:
        return False
    client, cluster = _connect(req.scheduler, req.workers, qp.device)
    try:
        if req.scheduler is not None and qp.device.startswith("cuda"):
            _check_gpu_workers(client, req.scheduler)
        run = _ClusterPass(qp, client, require_distributed())
        run.build()
        for ds in datasets:
            run.dataset(ds, outcome)
        run.collect()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return True


# ----------------------------------------------------------------------------------------- latency

# the keys of env.json that describe the machine latency rows were timed on: a worker's, on a cluster
MACHINE_KEYS = ("platform", "machine", "cpu_model", "cpu_count", "cpu_affinity", "torch_threads",
                "torch_interop_threads", "thp_mem_alloc_enable", "kernel_thp", "torch_blas", "numpy_blas", "gpu",
                "matmul_gflops")  # fmt: skip


@dataclass(frozen=True)
class _LatencyJob:
    """The latency pass of a run, pickled to the one worker that times it."""

    names: tuple[str, ...]
    scales: tuple[int, ...]
    sizes: tuple[tuple[int, int], ...]  # HR output (h, w)
    device: str
    build: Callable[..., Any]  # builds each method with the run's options (the runner's `build_method`)


def _latency_threads() -> int:
    """torch threads for the latency pass on a worker: its physical cores, as torch's default in-process."""
    import psutil  # a dependency of distributed: there on every worker

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, psutil.cpu_count(logical=False) or cores))


def _latency_on_worker(job: _LatencyJob) -> tuple[Any, dict[Any, Any], dict[str, Any], list[str]]:
    """On the worker: (latency rows, method infos, this worker's probe, log lines).

    Dask starts a worker's torch on one thread; nothing else of the run works now, so the probe, the
    matmul ceiling and the pass all use the worker's cores, as an in-process run does.
    """
    import torch
    from distributed import get_worker

    worker = get_worker()
    notes: list[str] = []
    # a worker past its memory limit is restarted by its nanny: refuse what cannot fit in it
    check_latency_memory(
        job.names, job.scales, job.sizes, job.device, limit=worker.memory_manager.memory_limit
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(_latency_threads())
    try:
        env = probe_env(measure=False)
        env["matmul_gflops"] = matmul_gflops()
        lat, infos = latency_pass(list(job.names), job.scales, device=job.device, sizes=job.sizes,
                                  progress=False, log=notes.append, build=job.build)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    env.update(host=socket.gethostname(), pid=os.getpid(), address=worker.address)
    lat["host"], lat["worker"] = env["host"], worker.address
    return lat, infos, env, notes


def _latency_worker(client: Any, device: str, scheduler: str | None) -> str:
    """The address of the worker that times the run: the first (by address) with a GPU on CUDA.

    Raises UsageError when no worker joins in time, or none offers a GPU that CUDA needs."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise UsageError(
            f"no worker joined the Dask scheduler at {scheduler} in {CONNECT_TIMEOUT_S} s; start one "
            f"('dask worker ADDRESS --nthreads 1') or run without --scheduler"
        ) from None
    gpu = device.startswith("cuda")
    if gpu:
        _check_gpu_workers(client, scheduler)
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return str(min(a for a, w in workers.items() if not gpu or w.get("resources", {}).get("GPU")))


def latency_on_cluster(
    req: Any, device: str, names: list[str], build: Callable[..., Any], env: dict[str, Any]
) -> tuple[Any, dict[Any, Any], dict[str, Any], list[str]] | None:
    """The latency pass of `req` (a `bench.runner.RunRequest`) on one worker of its cluster, if it names one.

    Returns None, having done nothing, when the request names no cluster (the pass then runs in-process);
    else (latency rows with the worker's `host` and `worker` address, method infos, env.json's content,
    log lines). All methods are timed one after the other by one task on one worker (a local cluster of one
    worker for `--workers`), so nothing of this run works beside them. The env is `env` with the machine
    keys (MACHINE_KEYS) of the worker's own probe; the client's are kept under "client" and the worker's
    whole probe under "latency_worker". Raises UsageError as `run_on_cluster` does, and for a size that
    cannot fit in the worker's memory; KeyboardInterrupt passes through.
    """
    if req.scheduler is None and req.workers is None:
        return None
    client, cluster = _connect(req.scheduler, 1 if req.workers is not None else None, device)
    try:
        address = _latency_worker(client, device, req.scheduler)
        job = _LatencyJob(tuple(names), tuple(req.scales), tuple(tuple(s) for s in req.sizes), device, build)
        # loose: should the chosen worker die, the pass runs again on another (one worker at a time still)
        fut = client.submit(_latency_on_worker, job, workers=[address], allow_other_workers=True,
                            resources={"GPU": 1} if device.startswith("cuda") else None, pure=False)  # fmt: skip
        try:
            lat, infos, worker_env, notes = fut.result()
        except BenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: no latency rows, as a failed method has none
            why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            return _no_latency(), {}, env, [f"failed: the latency pass on worker {address}: {why}"]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    client_machine = {k: env.get(k) for k in MACHINE_KEYS if k != "matmul_gflops"}
    merged = {**env, **{k: worker_env.get(k) for k in MACHINE_KEYS}}
    merged.update(client={**client_machine, "host": socket.gethostname(), "pid": os.getpid()},
                  latency_worker=worker_env)  # fmt: skip
    return lat, infos, merged, notes


def _no_latency() -> Any:
    import pandas as pd

    return pd.DataFrame(columns=[*LATENCY_COLUMNS, "host", "worker"])
