"""The quality pass on a Dask cluster: one task per (method, scale, dataset, chunk of images), rows back to the client.

The runner hands its pass here when a run names a scheduler or a number of local workers. Workers open the
datasets and weights themselves (the same SRBENCH_DATA_PATH / cache / download / mirror rules), build each
method once per worker process, and score with the same core as the in-process pass (`bench.core`
and the cell rules of `bench.cells`).
The client journals rows as tasks complete, so `--resume` works across cluster runs and client restarts.
The latency pass, after it, runs on one worker alone, with that worker's own probe (`latency_on_cluster`).
Nothing here imports dask until a cluster is asked for.
"""

from bench.cluster.connect import DASK_FIX, TASK_RETRIES, check_cluster_options, require_distributed
from bench.cluster.latency import MACHINE_KEYS, latency_on_cluster
from bench.cluster.quality import CHUNK_IMAGES, run_on_cluster

__all__ = ["DASK_FIX", "CHUNK_IMAGES", "TASK_RETRIES", "MACHINE_KEYS", "require_distributed",
           "check_cluster_options", "run_on_cluster", "latency_on_cluster"]  # fmt: skip
