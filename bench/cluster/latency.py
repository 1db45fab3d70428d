"""The latency pass on a cluster: on one worker alone, recorded with that worker's own probe."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.cluster.connect import CONNECT_TIMEOUT_S, check_gpu_workers, connect
from bench.errors import BenchError, UsageError
from bench.latency import LATENCY_COLUMNS, check_latency_memory, latency_pass
from bench.probe import matmul_gflops, probe_env

__all__ = ["MACHINE_KEYS", "latency_on_cluster"]

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
        check_gpu_workers(client, scheduler)
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
    client, cluster = connect(req.scheduler, 1 if req.workers is not None else None, device)
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
