"""The quality pass on a cluster: one task per (method, scale, dataset, chunk of images), rows back to the client."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np

from bench import cells as rules
from bench.api import MethodInfo
from bench.cluster.connect import TASK_RETRIES, check_gpu_workers, connect, needs_gpu, require_distributed
from bench.core import big_enough, row_base, score_output
from bench.data import Dataset, Sample, canonical_name, open_dataset
from bench.errors import BenchError, DataError
from bench.protocol import Protocol
from bench.store import sr_image_path
from bench.upscale import build_method

__all__ = ["CHUNK_IMAGES", "run_on_cluster"]

# images per task: small enough to spread a dataset over workers and lose little to a dead worker, large
# enough that the per-task cost (scheduling, opening the dataset, returning rows) stays small beside scoring
CHUNK_IMAGES = 4

Row = dict[str, Any]
Log = Callable[[str], None]

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
    upscale: Callable[..., tuple[Any, tuple[int, ...], float]]  # `bench.cells.upscale_or_tile`
    failed: Callable[[Row, BaseException, Log], Row]  # `bench.cells.failed`: a failure row, logged
    timeout: float | None = None  # the run's per-cell time limit (`--cell-timeout`)


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
    ds = replace(
        full, name=task.dataset, files=[f for f in full.files if f[0] in wanted], problems=[], warnings=[]
    )
    samples = {s.image: s for s in ds.samples(task.scale)}
    return samples, {p.image: p.reason for p in ds.problems}


def _run_task(task: _Task) -> tuple[list[Row], dict[str, np.ndarray], list[str]]:
    """Rows of the task's cells (failed cells included), the SR images asked for, and the log lines."""
    notes: list[str] = []
    method, lock = _method(task.method, task.scale, task.device, task.weights)
    alone = contextlib.nullcontext() if getattr(method, "thread_safe", False) else lock
    samples, problems = _samples(task)
    rows, images = [], {}
    hung: str | None = (
        None  # after one time-out, the method's other cells in this task fail at once, as in-process
    )
    for image, base, keep in task.cells:
        sample = samples.get(image)
        if hung:
            rows.append(rules.failure_row(base, hung))
            continue
        if sample is None or sample.sha256 != base["image_sha256"]:
            why = problems.get(image) or "the worker's copy differs from the client's (sha256)"
            rows.append(
                task.failed(base, DataError(f"{task.dataset}/{image} on this worker: {why}"), notes.append)
            )
            continue
        try:
            with alone:
                raw, expected, seconds = task.upscale(
                    method, sample, task.protocol, task.method, notes.append, task.timeout
                )
            sr, p, q = score_output(raw, expected, sample, task.protocol)
        except (Exception, MemoryError, SystemExit) as exc:  # a method bug fails its cell, as in-process
            rows.append(task.failed(base, exc, notes.append))
            hung = rules.hung_message(rows[-1])
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
        self.order: dict[tuple[Any, ...], tuple[int, ...]] = {}  # row key -> place in the in-process order

    def submit(self, fn: Callable[..., Any], *args: Any, name: str) -> Any:
        gpu = {"GPU": 1} if needs_gpu(name, self.device) else None
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
        """Plan one dataset image by image, as `_QualityPass.dataset` walks it: the client holds one sample
        at a time; rows in the journal are reused, and each method's missing cells go out in chunks."""
        ds_pos = list(self.qp.resolved).index(ds.name)
        for scale_pos, scale in enumerate(self.req.scales):
            names = [n for n in self.req.methods if rules.has_scale(n, scale)]
            if not names:
                continue
            usable = (s for s in ds.samples(scale) if big_enough(s, self.protocol, ds))
            to_save = rules.images_to_save(usable, self.req.save_images)
            chunks: dict[str, list[tuple[str, Row, bool]]] = {name: [] for name in names}
            for i, sample in enumerate(ds.samples(scale)):
                if not big_enough(sample, self.protocol, ds):
                    continue
                for name in names:
                    position = (ds_pos, scale_pos, self.req.methods.index(name), i)
                    cell = self.plan(name, sample, position, sample.image in to_save)
                    if cell is not None:
                        chunks[name].append(cell)
                    if len(chunks[name]) == CHUNK_IMAGES:
                        self.send(ds, name, scale, chunks[name])
                        chunks[name] = []
            for name, cells in chunks.items():
                if cells:
                    self.send(ds, name, scale, cells)
        outcome.problems.extend(f"{p.dataset}/{p.image}: {p.reason}" for p in ds.problems)
        ds.problems.clear()

    def plan(self, name: str, sample: Sample, position: tuple[int, ...], keep: bool) -> Any:
        """The cell to compute, or None: a row in the journal is reused, a method that cannot be built
        (or that timed out earlier in this run) fails at once."""
        qp, built = self.qp, self.qp.methods.get((name, sample.scale))
        wsha = built.info().weights_sha256 if built is not None else None
        base = row_base(name, sample, self.protocol, wsha)
        key = rules.row_key(base)
        self.order[key] = position
        if key in qp.done:
            qp.rows.append(qp.done[key])
            qp.bar.update(1)
        elif built is None:
            qp._keep(rules.failure_row(base, qp.build_errors[(name, sample.scale)]))
        elif name in qp.hung:
            qp._keep(rules.failure_row(base, qp.hung[name]))
        else:
            return (sample.image, base, keep)
        return None

    def send(self, ds: Dataset, name: str, scale: int, cells: list[tuple[str, Row, bool]]) -> None:
        task = _Task(_spec(ds), ds.name, name, scale, self.device, self.req.weights, self.protocol, tuple(cells),
                     rules.upscale_or_tile, rules.failed, self.req.cell_timeout)  # fmt: skip
        fut = self.submit(_run_task, task, name=name)
        self.tasks[fut] = task
        self.futures.add(fut)
        self.collect(block=False)  # rows of tasks already done are journaled while planning goes on

    def collect(self, block: bool = True) -> None:
        """Journal the rows of each task as it completes; a task that failed fails its cells. Without
        `block`, only the tasks already done (planning goes on meanwhile)."""
        if block:
            for fut in self.futures:
                self.finish(fut)
            # rows in the in-process order, so quality.csv reads the same whoever computed it
            end = (len(self.order),)
            self.qp.rows.sort(key=lambda r: self.order.get(rules.row_key(r), end))
        elif self.futures.has_ready():
            for fut in self.futures.next_batch(block=False):
                self.finish(fut)

    def finish(self, fut: Any) -> None:
        """One task's rows journaled and its SR images saved. After a cell times out, the method's tasks
        not yet done are cancelled: their cells fail with the time-out's note, as in-process."""
        task = self.tasks.pop(fut)
        hung = self.qp.hung.get(task.method)
        rows, images, notes = self.result(fut, task, hung)
        fut.release()
        for note in notes:
            self.qp.log(note)
        for image, sr in images.items():  # where the in-process pass saves them
            rules.save_png(sr_image_path(self.qp.store.dir, task.method, task.dataset, task.scale, image), sr)
        for row in rows:
            self.qp._keep(row)
        if hung is None and task.method in self.qp.hung:
            for other, waiting in self.tasks.items():
                if waiting.method == task.method and other.status == "pending":
                    other.cancel()

    @staticmethod
    def result(fut: Any, task: _Task, hung: str | None) -> tuple[list[Row], dict[str, np.ndarray], list[str]]:
        """(rows, SR images, log lines) of a finished task; a task cancelled after its method hung, or one
        that failed (its retries spent, or KilledWorker), fails its cells."""
        notes: list[str] = []
        if fut.cancelled() and hung is not None:
            return [rules.failure_row(base, hung) for _, base, _ in task.cells], {}, notes
        try:
            rows, images, notes = fut.result()
        except Exception as exc:  # noqa: BLE001 - its cells fail
            return [task.failed(base, exc, notes.append) for _, base, _ in task.cells], {}, notes
        return rows, images, notes


def run_on_cluster(qp: Any, datasets: list[Dataset], outcome: Any) -> bool:
    """Run the quality pass `qp` (a `bench.runner._QualityPass`) on the cluster its request names, if any.

    Rows are journaled through `qp` as tasks complete. Returns False, having done nothing, when the
    request names no cluster (the pass then runs in-process). Raises UsageError when Dask is missing or
    the scheduler cannot be reached; KeyboardInterrupt passes through (every row received is journaled).
    """
    req = qp.req
    if req.scheduler is None and req.workers is None:
        return False
    client, cluster = connect(req.scheduler, req.workers, qp.device)
    try:
        if req.scheduler is not None and qp.device.startswith("cuda"):
            check_gpu_workers(client, req.scheduler)
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
