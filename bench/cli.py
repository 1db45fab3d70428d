"""Command line: subcommands, and the only place that prints errors and chooses exit codes."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from bench.errors import BenchError, UsageError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REGRESSION = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as shells report them
_signals = {"terminated": False}


def _on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM (a job scheduler, `kill`) ends a run like Ctrl-C: rows kept, the resume command printed
    _signals["terminated"] = True
    raise KeyboardInterrupt


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see 'python -m bench {self.prog.split()[-1]} --help')")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _unique(values: list, what: str) -> list:  # type: ignore[type-arg]
    """`values` without repeats; a repeat is a note on stderr (counting an image twice skews every mean)."""
    out = list(dict.fromkeys(values))
    if len(out) < len(values):
        print(f"note: repeated {what} removed; each runs once", file=sys.stderr)
    return out


def _scales(text: str) -> list[int]:
    out = []
    for t in _csv(text):
        if not t.isdigit() or not 2 <= int(t) <= 8:
            raise UsageError(f"unsupported scale {t!r}; scales are integers 2..8, e.g. --scales 2,3,4")
        out.append(int(t))
    if not out:
        raise UsageError("no scales given; use e.g. --scales 2,3,4")
    return _unique(out, "scales")


def _sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for t in _csv(text):
        w, _, h = t.lower().partition("x")
        if not (w.isdigit() and h.isdigit()) or int(w) < 1 or int(h) < 1:
            raise UsageError(
                f"bad size {t!r}; give WIDTHxHEIGHT of the HR output, e.g. --sizes 1280x720,1920x1080"
            )
        out.append((int(h), int(w)))
    return out


def _add_run_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    _add_cluster_options(r)
    r.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m bench", description="Single-image super-resolution benchmark (srbench).")
    p.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, required=True)

    ls = sub.add_parser("list", help="list methods or datasets")
    ls.add_argument("what", nargs="?", choices=["methods", "datasets"], default=None)

    fe = sub.add_parser("fetch", help="download and verify datasets or model weights into the cache")
    fe.add_argument("names", nargs="*", help="dataset or method names")
    fe.add_argument("--all-weights", action="store_true", help="also every published model's weights")

    _add_run_parser(sub)
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
    _add_upscale_parser(sub)
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


def _method_list(text: str) -> list[str]:
    """Methods named on the command line, groups expanded; notes (skips, duplicates) go to stderr.

    An explicitly named method that cannot run here (weights not available offline) is a usage error.
    """
    from bench.registry import expand_methods, method_groups, why_unavailable

    names = _csv(text)
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


def _cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
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
    scales = _scales(args.scales) if args.scales is not None else saved.get("scales", [2, 3, 4])
    methods, weights = _run_methods(args, saved, methods, scales)
    passes = _csv(args.passes) if args.passes is not None else saved.get("passes", ["quality", "latency"])
    out = Path(args.resume or args.out or Path("reports/runs") / datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))
    req = RunRequest(
        methods=methods,
        datasets=_unique(_csv(args.datasets), "datasets")
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
        sizes=_sizes(args.sizes)
        if args.sizes is not None
        else [tuple(x) for x in saved.get("sizes", [(720, 1280)])],
        save_images=args.save_images,
        report=not args.no_report,
        resume=args.resume is not None,
        force=args.force,
        weights=weights,
        scheduler=args.scheduler,
        workers=args.workers,
        command="python -m bench " + " ".join(shlex.quote(a) for a in argv),
    )
    outcome = run(req, progress=not args.no_progress and sys.stderr.isatty())
    if not outcome.summary.empty:
        print(_summary_table(outcome.summary))
    if outcome.latency is not None and not outcome.latency.empty:
        cols = [
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
        print(
            outcome.latency[[c for c in cols if c in outcome.latency]].to_string(
                index=False, float_format="%.2f"
            )
        )
    print(f"results: {out}")
    if outcome.interrupted:
        what = "terminated (SIGTERM)" if _signals["terminated"] else "interrupted"
        print(
            f"{what}: rows computed so far are saved; continue with 'python -m bench run --resume {out}'",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if _signals["terminated"] else EXIT_INTERRUPTED
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


def _add_cluster_options(r: argparse.ArgumentParser) -> None:
    """`run`'s options that send the quality pass to Dask (bench.cluster); not taken from a resumed run."""
    where = r.add_argument_group("on a Dask cluster (pip install 'srbench[dask]')")
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="a running cluster: tcp://HOST:8786 or a scheduler file"
    )
    where.add_argument("--workers", type=int, metavar="N", help="a local cluster of N worker processes")


def _add_upscale_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    up = sub.add_parser("upscale", help="super-resolve your own images (a file or a folder) with one method")
    up.add_argument("source", metavar="IN", help="an image file or a folder of images")
    up.add_argument(
        "dest", metavar="OUT", help="a .png file or a folder (created); inputs are never replaced"
    )
    up.add_argument("--method", required=True, help="a method name, e.g. bicubic, srcnn, espcn")
    up.add_argument("--scale", required=True, help="an integer 2..8")
    up.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    up.add_argument(
        "--tile",
        type=int,
        default=None,
        help="run learned methods in overlapping tiles of N pixels (default: tiles only above 4 MP of LR)",
    )
    up.add_argument("--weights", default=None, metavar="FILE", help="a weights file for the learned method")
    up.add_argument("--no-progress", action="store_true")


def _cmd_upscale(args: argparse.Namespace) -> int:
    from bench.upscale import UpscaleRequest, upscale_images

    scales = _scales(args.scale)
    if len(scales) != 1:
        raise UsageError(f"--scale takes one integer, got {args.scale!r}; e.g. --scale 4")
    if args.tile is not None and args.tile < 1:
        raise UsageError(f"--tile must be a positive number of pixels, got {args.tile}")
    req = UpscaleRequest(Path(args.source), Path(args.dest), args.method, scales[0], device=args.device,
                         tile=args.tile, weights=args.weights)  # fmt: skip
    result = upscale_images(req, progress=not args.no_progress and sys.stderr.isatty())
    for line in result.failed:
        print(f"skipped: {line}", file=sys.stderr)
    if result.written:
        where = result.written[0] if len(result.written) == 1 else req.dest
        tiled = f" ({result.tiled} in tiles)" if result.tiled else ""
        print(f"{result.method} x{req.scale}: {len(result.written)} image(s) written{tiled}: {where}")
    if result.failed:
        print(
            f"error: {len(result.failed)} of {result.total} image(s) failed; see the lines above",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from bench.train import run_train

    return int(run_train(args))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # huge pages for torch's CPU allocator: page faults are a large share of CPU latency (PERF-NOTES);
    # must be set before torch allocates; recorded in env.json and every latency row
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    show_tb = "--traceback" in argv or os.environ.get("SRBENCH_TRACEBACK") == "1"
    _signals["terminated"] = False
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
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
            return _cmd_run(args, argv)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "upscale":
            return _cmd_upscale(args)
        raise UsageError(f"unknown command {args.command!r}")
    except BenchError as exc:
        if show_tb:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("terminated (SIGTERM)" if _signals["terminated"] else "interrupted", file=sys.stderr)
        return EXIT_TERMINATED if _signals["terminated"] else EXIT_INTERRUPTED
