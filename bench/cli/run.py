"""`bench run`: the request from the command line (or the resumed run's config.json), the results table."""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    csv_list,
    parse_scales,
    parse_sizes,
    signals,
    unique,
)
from bench.errors import BenchError, UsageError
from bench.limits import DEFAULT_CELL_TIMEOUT, cell_timeout

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DISK_ERRORS = (*_DISK_FULL, errno.EROFS, errno.EACCES, errno.EPERM)


def add_run_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = sub.add_parser("run", help="benchmark methods on datasets")
    r.add_argument(
        "--methods",
        default=None,
        help="'all' (default) or comma-separated names (dir:PATH for stored outputs)",
    )
    r.add_argument("--datasets", default=None, help="comma-separated names or folders (default set5,set14)")
    r.add_argument("--scales", default=None, help="comma-separated integers (default 2,3,4)")
    r.add_argument(
        "--pass", dest="passes", default=None, help="quality, latency or both (default quality,latency)"
    )
    r.add_argument(
        "--protocol", default=None, help="paper (default), legacy-y, basicsr, float-lr, rgb, ntire"
    )
    r.add_argument("--channel", default=None, choices=["y", "rgb"], help="override the protocol's channel")
    r.add_argument("--shave", default=None, help="override the border: an integer, 'scale' or 'scale+N'")
    r.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    r.add_argument(
        "--sizes", default=None, help="latency: HR output sizes WxH, comma-separated (default 1280x720)"
    )
    r.add_argument("--out", default=None, help="run folder (default reports/runs/<timestamp>)")
    r.add_argument(
        "--save-images",
        default="some",
        choices=["none", "some", "all"],
        help="SR images to keep for the visual comparison (some: 2 per dataset and scale)",
    )
    r.add_argument("--no-report", action="store_true", help="skip report.md/report.html")
    r.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue a run: compute only missing cells (options not given are taken from its config.json)",
    )
    r.add_argument(
        "--force", action="store_true", help="replace the run already in --out (its rows are lost)"
    )
    r.add_argument("--weights", metavar="FILE", help="one learned method, one scale, these weights")
    r.add_argument(
        "--cell-timeout",
        default=None,
        metavar="SECONDS",
        help=f"fail a method's cell after this long on one image, 0: no limit (default "
        f"$SRBENCH_CELL_TIMEOUT or {DEFAULT_CELL_TIMEOUT:g})",
    )
    _add_cluster_options(r)
    r.add_argument("--no-progress", action="store_true")


def _method_list(text: str) -> list[str]:
    """Methods named on the command line, groups expanded; notes (skips, duplicates) go to stderr.

    An explicitly named method that cannot run here (weights not available offline) is a usage error.
    """
    from bench.registry import expand_methods, method_groups, why_unavailable

    names = csv_list(text)
    groups = method_groups()
    for name in names:
        reason = why_unavailable(name) if name not in groups else None
        if reason is not None:
            raise UsageError(f"{name}: {reason}")
    methods, notes = expand_methods(names)
    for note in notes:
        print(note, file=sys.stderr)
    return methods


def _resume_request(args: argparse.Namespace) -> dict:
    """The request saved by the run being resumed (empty when not resuming or none was saved)."""
    if not args.resume:
        return {}
    import json

    path = Path(args.resume) / "config.json"
    if not Path(args.resume).is_dir():
        raise UsageError(
            f"--resume {args.resume}: no such run folder; give the --out folder of an earlier run"
        )
    try:
        config = json.loads(path.read_text())
        request = config["request"]
        if not isinstance(request, dict):
            raise TypeError("'request' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # never fall back to defaults: that would run another benchmark into the user's folder
        raise UsageError(
            f"--resume {args.resume}: cannot read the run's request from {path} ({type(exc).__name__}: {exc}); "
            f"restore config.json or start a new run with --out"
        ) from None
    return dict(request)


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.cluster import check_cluster_options
    from bench.runner import DEFAULT_DATASETS, RunRequest, run

    check_cluster_options(args.scheduler, args.workers)  # where the work runs: never taken from a resumed run
    saved = _resume_request(args)
    pick = lambda flag, key, default: flag if flag is not None else saved.get(key, default)  # noqa: E731
    methods = (
        _method_list(args.methods)
        if args.methods is not None
        else saved.get("methods") or _method_list("all")
    )
    if not methods:
        raise UsageError("no methods given; use --methods all or e.g. --methods bicubic,srcnn")
    scales = parse_scales(args.scales) if args.scales is not None else saved.get("scales", [2, 3, 4])
    methods, weights = _run_methods(args, saved, methods, scales)
    passes = csv_list(args.passes) if args.passes is not None else saved.get("passes", ["quality", "latency"])
    out = Path(args.resume or args.out or Path("reports/runs") / datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))
    req = RunRequest(
        methods=methods,
        datasets=unique(csv_list(args.datasets), "datasets")
        if args.datasets
        else saved.get("datasets", list(DEFAULT_DATASETS)),
        datasets_defaulted=args.datasets is None and saved.get("datasets_defaulted", True),
        scales=scales,
        passes=passes,
        protocol=str(pick(args.protocol, "protocol", "paper")),
        channel=pick(args.channel, "channel", None),
        shave=pick(args.shave, "shave", None),
        device=str(pick(args.device, "device", "auto")),
        out=out,
        sizes=parse_sizes(args.sizes)
        if args.sizes is not None
        else [tuple(x) for x in saved.get("sizes", [(720, 1280)])],
        save_images=args.save_images,
        report=not args.no_report,
        resume=args.resume is not None,
        force=args.force,
        weights=weights,
        scheduler=args.scheduler,
        workers=args.workers,
        cell_timeout=cell_timeout(args.cell_timeout),
        command="python -m bench " + " ".join(shlex.quote(a) for a in argv),
    )
    try:
        outcome = run(req, progress=not args.no_progress and sys.stderr.isatty())
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        # every row journaled before the write that failed is kept: the run continues where it stopped
        where = exc.filename or out
        fix = "free space" if exc.errno in _DISK_FULL else "make the folder writable"
        raise BenchError(
            f"{os.strerror(exc.errno or 0).lower()} writing {where}; {fix}, then continue with "
            f"'python -m bench run --resume {out}'"
        ) from None
    return _results(outcome, out)


_LATENCY_COLUMNS = [
    "method",
    "scale",
    "device",
    "output_w",
    "output_h",
    "median_ms",
    "iqr_ms",
    "mpix_per_s",
    "rounds",
]


def _results(outcome: Any, out: Path) -> int:
    """Print the run's tables (stdout) and how it ended (stderr); the exit code."""
    if not outcome.summary.empty:
        print(_summary_table(outcome.summary))
    if outcome.latency is not None and not outcome.latency.empty:
        cols = [c for c in _LATENCY_COLUMNS if c in outcome.latency]
        print(outcome.latency[cols].to_string(index=False, float_format="%.2f"))
    print(f"results: {out}")
    if outcome.interrupted:
        what = "terminated (SIGTERM)" if signals["terminated"] else "interrupted"
        print(
            f"{what}: rows computed so far are saved; continue with 'python -m bench run --resume {out}'",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if signals["terminated"] else EXIT_INTERRUPTED
    if outcome.failed:
        n_fail = int((outcome.quality["status"] == "failed").sum()) if not outcome.quality.empty else 0
        print(
            f"error: {len(outcome.problems)} image(s) skipped and {n_fail} scoring(s) failed; see the lines "
            f"above and {out}/quality.csv",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_OK


def _run_methods(
    args: argparse.Namespace, saved: dict, methods: list[str], scales: list[int]
) -> tuple[list[str], str | None]:
    """The run's methods, checked, and its weights file (absolute) or None.

    With --weights (or the resumed run's) the runner checks the one method and labels it
    `<method>@<file stem>` before any work (bench.upscale.weights_methods).
    """
    from bench.registry import create_method, list_methods

    weights = args.weights if args.weights is not None else saved.get("weights")
    if weights is not None:
        return methods, str(Path(weights).resolve())
    known = list_methods()
    for m in methods:
        if not m.startswith("dir:") and m not in known:
            create_method(m, scale=2, device="cpu")  # raises the did-you-mean error
    return methods, None


def _summary_table(summary: object) -> str:
    import pandas as pd

    df = summary if isinstance(summary, pd.DataFrame) else pd.DataFrame(summary)
    cell = df.apply(
        lambda r: "failed" if r["status"] != "ok" else f"{r['psnr']:.2f} / {r['ssim']:.4f}", axis=1
    )
    table = df.assign(cell=cell, col=df["dataset"] + " x" + df["scale"].astype(str))
    pivot = table.pivot_table(index="method", columns="col", values="cell", aggfunc="first", sort=False)
    pivot = pivot.reindex(columns=list(dict.fromkeys(table["col"])))
    pivot.columns.name = "PSNR / SSIM"
    return pivot.to_string()


def _add_cluster_options(r: argparse.ArgumentParser) -> None:
    """`run`'s options that send the quality pass to Dask (bench.cluster); not taken from a resumed run."""
    where = r.add_argument_group("on a Dask cluster (pip install 'srbench[dask]')")
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="a running cluster: tcp://HOST:8786 or a scheduler file"
    )
    where.add_argument("--workers", type=int, metavar="N", help="a local cluster of N worker processes")
