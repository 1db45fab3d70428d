"""Reaching a Dask cluster: the options that name one, the client, and which tasks need a GPU worker."""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.errors import UsageError
from bench.registry import method_groups

__all__ = ["DASK_FIX", "TASK_RETRIES", "CONNECT_TIMEOUT_S", "require_distributed", "check_cluster_options",
           "connect", "needs_gpu", "check_gpu_workers"]  # fmt: skip

DASK_FIX = "pip install 'srbench[dask]'"
# a task that raises is run again this often; a task whose worker dies is rescheduled by Dask up to
# `distributed.scheduler.allowed-failures` times (default 3), then fails with KilledWorker
TASK_RETRIES = 1
CONNECT_TIMEOUT_S = 30


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


def connect(scheduler: str | None, workers: int | None, device: str) -> tuple[Any, Any]:
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


def needs_gpu(name: str, device: str) -> bool:
    # classical methods and stored outputs run anywhere; anything else on CUDA takes a whole GPU
    return (
        device.startswith("cuda") and name not in method_groups()["classical"] and not name.startswith("dir:")
    )


def check_gpu_workers(client: Any, scheduler: str | None) -> None:
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if workers and not any(w.get("resources", {}).get("GPU") for w in workers.values()):
        raise UsageError(
            f"--device cuda: no worker of the scheduler at {scheduler} offers a GPU; start workers with "
            f"'dask worker ADDRESS --nthreads 1 --resources GPU=1' or run with --device cpu"
        )
