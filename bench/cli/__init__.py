"""Command line: subcommands, and the only place that prints errors and chooses exit codes
(the package `bench.cli`: `run` and `upscale` have their own modules, `common` what they share)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from bench.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REGRESSION,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Parser,
    on_sigterm,
    signals,
)
from bench.cli.run import add_run_parser, cmd_run
from bench.cli.upscale import add_upscale_parser, cmd_upscale
from bench.errors import BenchError, UsageError

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_REGRESSION",
           "EXIT_INTERRUPTED", "EXIT_TERMINATED"]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m bench", description="Single-image super-resolution benchmark (srbench).")
    p.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", parser_class=Parser, required=True)

    ls = sub.add_parser("list", help="list methods or datasets")
    ls.add_argument("what", nargs="?", choices=["methods", "datasets"], default=None)

    fe = sub.add_parser("fetch", help="download and verify datasets or model weights into the cache")
    fe.add_argument("names", nargs="*", help="dataset or method names")
    fe.add_argument("--all-weights", action="store_true", help="also every published model's weights")

    add_run_parser(sub)
    rep = sub.add_parser("report", help="(re)write report.md/report.html of a run folder")
    rep.add_argument("run_dir")
    rep.add_argument("--crop", default=None, help="DATASET/IMAGE/xS@Y,X,SIZE for the visual comparison")
    rep.add_argument(
        "--index",
        default=None,
        metavar="PATH",
        help="also write report.md to PATH with its figure links made relative to PATH "
        "(e.g. reports/README.md for the repository's reference report)",
    )

    ch = sub.add_parser("check", help="compare a run with a committed baseline; exit 3 on regression")
    ch.add_argument("run_dir")
    ch.add_argument(
        "--baseline",
        default=None,
        help="baseline CSV (default: each dataset's committed one, sample.csv for sample, else quality.csv)",
    )
    ch.add_argument("--tolerance", default="psnr=0.01,ssim=0.0005", help="allowed drop per metric")
    ch.add_argument(
        "--per-image", action="store_true", help="also compare every image (deterministic methods)"
    )
    ch.add_argument("--update-baseline", action="store_true", help="rewrite the baseline from this run")

    from bench.train import add_train_arguments  # torch-free: torch is imported when training starts

    add_train_arguments(sub.add_parser("train", help="train a learned method (weights + model card)"))
    add_upscale_parser(sub)
    return p


def _cmd_list(args: argparse.Namespace) -> int:
    from bench.data import dataset_manifests, list_datasets
    from bench.registry import list_methods, method_groups

    if args.what in (None, "methods"):
        print(_methods_table(list_methods(sort=False)))
        print("(and dir:PATH for stored SR images; groups: " + ", ".join(method_groups()) + ")\n")
    if args.what in (None, "datasets"):
        known = dataset_manifests()
        for name in list_datasets():
            m = known.get(
                name, {"display": "scikit-image sample images (always available)", "role": "evaluation"}
            )
            print(f"{name:12s} {m.get('role', ''):10s} {m['display']}")
    return EXIT_OK


def _methods_table(names: list[str]) -> str:
    import pandas as pd

    from bench.registry import describe_method

    rows = [{"method": n, **describe_method(n)} for n in names]
    return pd.DataFrame(rows).fillna("").to_string(index=False)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from bench.data import canonical_name, open_dataset
    from bench.registry import fetch_method_weights, method_groups

    names = list(args.names) + (method_groups()["zoo"] if args.all_weights else [])
    if not names:
        raise UsageError(
            "nothing to fetch; name datasets or methods (e.g. 'fetch set5 imdn') or pass --all-weights"
        )
    for name in dict.fromkeys(names):
        files = fetch_method_weights(name) if canonical_name(name) is None else None
        if files is not None:
            print(f"{name}: {len(files)} weights file(s) verified ({', '.join(files)})")
            continue
        ds = open_dataset(name)
        n = sum(1 for _ in ds.images())  # decodes and verifies every file
        print(f"{name}: {n} images verified ({ds.origin}: {ds.files[0][1].parent})")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "quality.csv").is_file() and not (run_dir / "summary.csv").is_file():
        raise UsageError(
            f"{run_dir} is not a run folder (no quality.csv); give the --out folder of a 'bench run'"
        )
    paths = write_report(run_dir, crop=args.crop)
    for p in paths.values():
        print(p)
    if args.index:
        index = Path(args.index)
        rel = os.path.relpath(run_dir.resolve(), index.resolve().parent)
        text = (run_dir / "report.md").read_text(encoding="utf-8")
        index.write_text(text.replace("](figures/", f"]({Path(rel).as_posix()}/figures/"), encoding="utf-8")
        print(index)
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from bench.check import check_run, parse_tolerance, update_baseline

    tolerance = parse_tolerance(args.tolerance)
    run_dir, baseline = Path(args.run_dir), Path(args.baseline) if args.baseline else None
    if args.update_baseline:
        print("\n".join(update_baseline(run_dir, baseline, per_image=args.per_image).lines()))
        return EXIT_OK
    result = check_run(run_dir, baseline, tolerance, per_image=args.per_image)
    print(result.header)
    if result.table:
        print(result.table)
    print(result.summary)
    if result.advice:
        print(result.advice, file=sys.stderr)
    return EXIT_OK if result.passed else EXIT_REGRESSION


def _cmd_train(args: argparse.Namespace) -> int:
    from bench.train import run_train

    return int(run_train(args))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # huge pages for torch's CPU allocator: page faults are a large share of CPU latency (PERF-NOTES);
    # must be set before torch allocates; recorded in env.json and every latency row
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    show_tb = "--traceback" in argv or os.environ.get("SRBENCH_TRACEBACK") == "1"
    signals["terminated"] = False
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main else None
    try:
        return _dispatch(argv, show_tb)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _dispatch(argv: list[str], show_tb: bool) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "fetch":
            return _cmd_fetch(args)
        if args.command == "run":
            return cmd_run(args, argv)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "upscale":
            return cmd_upscale(args)
        raise UsageError(f"unknown command {args.command!r}")
    except BenchError as exc:
        if show_tb:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("terminated (SIGTERM)" if signals["terminated"] else "interrupted", file=sys.stderr)
        return EXIT_TERMINATED if signals["terminated"] else EXIT_INTERRUPTED
