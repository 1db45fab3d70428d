"""The quality pass on a local Dask cluster against in-process: speed-up, per-cell costs, the full sweep.

Standalone, not collected by pytest (it runs for tens of minutes):

    SRBENCH_DATA_PATH=../shared/datasets SRBENCH_WEIGHTS_PATH=../shared/weights \\
        python tests/benchmarks/cluster_sweep.py --datasets set5,set14,b100 --workers 2 --out /tmp/sweep

1. Runs `bench run --methods all --pass quality --no-report --save-images none` on the datasets at
   x2/x3/x4, in-process and then with `--workers N` (each into a fresh folder), timing the wall clock of
   each, and checks that the two quality.csv are equal to the last digit.
2. Times the Dask scheduler's own cost per task: a batch of empty tasks on a fresh LocalCluster.
3. From the cluster run's rows (one torch thread per worker: what one worker costs), the cost of every
   (method, scale) per HR megapixel, and the rest of a worker's time per megapixel (reading, LR, scoring,
   sending rows); extrapolates the wall time of the full sweep (every method x Set5, Set14, B100,
   Urban100, DIV2K-val x three scales) on 1, 8 and 64 workers:
       wall(N) = max(work / N, longest task) + tasks x scheduler cost per task + the fixed start cost,
   at most work / N + the longest task + the same overheads (any greedy schedule ends in between).
   Set5/Set14/B100 pixel counts are read from the images; Urban100 and DIV2K-val are not on this machine,
   so their sizes are parameters (defaults: 100 images of 0.77 MP and 100 of 2.78 MP, the mean sizes of
   the published sets); the largest DIV2K-val image (2040x1536) sets the longest cell.
Writes `sweep.json` and `sweep.md` into --out and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

CHUNK = 4  # images per task (bench.cluster.CHUNK_IMAGES; read below when importable)
KEY = ["method", "dataset", "scale", "image", "protocol"]


def run(argv: list[str], out: Path) -> float:
    """Wall seconds of one `bench run` into `out` (fresh)."""
    cmd = [sys.executable, "-m", "bench", "run", *argv, "--out", str(out), "--force"]
    env = {**os.environ, "SRBENCH_PROGRESS": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def scheduler_cost(workers: int, tasks: int = 2000) -> float:
    """Seconds of scheduling per task: `tasks` empty tasks through a fresh LocalCluster of `workers`."""
    import distributed

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, processes=True) as cluster:  # fmt: skip
        with distributed.Client(cluster) as client:
            client.gather(client.map(lambda i: i, range(100), pure=False))  # warm up
            t0 = time.perf_counter()
            client.gather(client.map(lambda i: i, range(tasks), pure=False))
            return (time.perf_counter() - t0) / tasks


def megapixels(datasets: list[str]) -> dict[str, dict[str, float]]:
    """HR megapixels of each image, per dataset, at each scale (modcropped), read from the images."""
    from bench import open_dataset

    sizes: dict[str, dict[str, float]] = {}
    for name in datasets:
        ds = open_dataset(name)
        sizes[ds.name] = {im.name: im.rgb.shape[0] * im.rgb.shape[1] / 1e6 for im in ds.images()}
    return sizes


def extrapolate(rows: pd.DataFrame, wall: float, fixed: float, workers: int, sched: float, args: argparse.Namespace,
                sizes: dict[str, dict[str, float]]) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    rows = rows.assign(mp=[sizes[d][i] for d, i in zip(rows["dataset"], rows["image"], strict=True)])
    per = rows.groupby(["method", "scale"], sort=False).agg(seconds=("seconds", "sum"), mp=("mp", "sum"))
    per["s_per_mp"] = per["seconds"] / per["mp"]
    # what a worker spends outside the method (read, LR, score, rows back), per megapixel of a row
    rest = max(0.0, (wall - fixed) * workers - rows["seconds"].sum()) / rows["mp"].sum()
    full = {name: (len(imgs), sum(imgs.values())) for name, imgs in sizes.items()}
    full["urban100"] = (100, 100 * args.urban100_mp)
    full["div2k-val"] = (100, 100 * args.div2k_mp)
    work = sum((c + rest) * mp for c in per["s_per_mp"] for _, mp in full.values())
    tasks = len(per) * sum(math.ceil(n / CHUNK) for n, _ in full.values())
    longest = CHUNK * (per["s_per_mp"].max() + rest) * args.div2k_max_mp
    table = []
    for n in (1, 8, 64):
        # any greedy schedule ends between max(work / n, longest) and work / n + longest (Graham's bound);
        # the scheduler's cost is counted as if it never overlapped the work (an upper bound too)
        low, high, overhead = max(work / n, longest), work / n + longest, tasks * sched + fixed
        limit = "the work" if work / n >= longest else "the longest task"
        table.append({"workers": n, "wall_h": (low + overhead) / 3600, "wall_h_at_most": (high + overhead) / 3600,
                      "compute_h": work / n / 3600, "overhead_s": overhead, "limited_by": limit})  # fmt: skip
    summary = pd.DataFrame(table)
    summary.attrs.update(work_h=work / 3600, tasks=tasks, longest_task_s=longest, rest_s_per_mp=rest)
    return per.reset_index(), summary


def markdown(df: pd.DataFrame, digits: int) -> str:
    """A pipe table (pandas' to_markdown needs the optional tabulate)."""
    cells = df.map(lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v))
    rows = [list(df.columns), ["---"] * len(df.columns), *cells.values.tolist()]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="set5,set14,b100")
    p.add_argument("--methods", default="all")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("/tmp/srbench-sweep"))
    p.add_argument("--urban100-mp", type=float, default=0.77, help="mean HR megapixels of Urban100")
    p.add_argument("--div2k-mp", type=float, default=2.78, help="mean HR megapixels of DIV2K-val")
    p.add_argument("--div2k-max-mp", type=float, default=2040 * 1536 / 1e6, help="largest DIV2K-val image")
    p.add_argument("--skip-runs", action="store_true", help="reuse the two run folders already in --out")
    args = p.parse_args()
    global CHUNK
    try:
        from bench.cluster import CHUNK_IMAGES

        CHUNK = CHUNK_IMAGES
    except ImportError:
        pass
    common = ["--methods", args.methods, "--datasets", args.datasets, "--scales", "2,3,4", "--pass", "quality",
              "--no-report", "--save-images", "none", "--no-progress"]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    times_file = args.out / "walls.json"
    if args.skip_runs:
        walls = json.loads(times_file.read_text())
    else:
        walls = {"in_process": run(common, args.out / "in-process")}
        walls["cluster"] = run([*common, "--workers", str(args.workers)], args.out / "cluster")
        # the cluster's fixed cost (workers started, torch imported, methods built): one tiny run each way
        tiny = ["--methods", "bicubic", "--datasets", "sample", "--scales", "2", "--pass", "quality",
                "--no-report", "--no-progress"]  # fmt: skip
        walls["fixed"] = run([*tiny, "--workers", str(args.workers)], args.out / "tiny") - run(
            tiny, args.out / "tiny"
        )
        times_file.write_text(json.dumps(walls))
    a = pd.read_csv(args.out / "in-process" / "quality.csv").sort_values(KEY).reset_index(drop=True)
    b = pd.read_csv(args.out / "cluster" / "quality.csv").sort_values(KEY).reset_index(drop=True)
    cols = [c for c in a.columns if c != "seconds"]
    equal = a[cols].equals(b[cols])
    sched = scheduler_cost(args.workers)
    sizes = megapixels(args.datasets.split(","))
    per, summary = extrapolate(b, walls["cluster"], walls["fixed"], args.workers, sched, args, sizes)
    inproc = a.groupby(["method", "scale"], sort=False)["seconds"].sum().rename("in_process_s")
    per = per.merge(inproc.reset_index(), on=["method", "scale"])
    lines = [
        f"# Quality pass, {args.methods} x {args.datasets} x2/x3/x4 ({len(a)} rows)",
        "",
        f"- in-process: {walls['in_process']:.0f} s; --workers {args.workers}: {walls['cluster']:.0f} s; "
        f"speed-up {walls['in_process'] / walls['cluster']:.2f}x; quality.csv equal to the last digit: {equal}",
        f"- scheduler cost per task (empty tasks): {sched * 1e3:.2f} ms; the cluster's fixed cost (start, "
        f"imports): {walls['fixed']:.1f} s",
        f"- worker time outside the methods: {summary.attrs['rest_s_per_mp']:.2f} s per HR megapixel",
        f"- full sweep: {summary.attrs['work_h']:.1f} worker-hours in {summary.attrs['tasks']} tasks of "
        f"{CHUNK} images; longest task {summary.attrs['longest_task_s']:.0f} s",
        "",
        markdown(per, 3),
        "",
        markdown(summary, 2),
    ]
    text = "\n".join(lines)
    (args.out / "sweep.md").write_text(text + "\n")
    (args.out / "sweep.json").write_text(json.dumps({"walls": walls, "equal": equal, "scheduler_s": sched,
                                                     "summary": summary.to_dict("records"),
                                                     **summary.attrs}, indent=1))  # fmt: skip
    print(text)


if __name__ == "__main__":
    main()
