"""Plan (methods x datasets x scales), run the quality pass image by image, then the latency pass."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from bench.cells import (
    MAX_SKIP_LINES,
    failed,
    failure_row,
    finish,
    has_scale,
    hung_message,
    images_to_save,
    row_key,
    run_one,
    skipped_scales,
    upscale_or_tile,
)
from bench.cluster import run_on_cluster
from bench.core import big_enough, row_base, summarise
from bench.data import Dataset, Sample, open_dataset
from bench.errors import BenchError, DataError, UsageError
from bench.limits import DEFAULT_CELL_TIMEOUT, clear_signal, from_method, note_signal
from bench.protocol import Protocol, get_protocol
from bench.registry import resolve_device
from bench.store import QUALITY_COLUMNS, SUMMARY_COLUMNS, RunStore
from bench.upscale import build_method, weights_methods

__all__ = ["RunRequest", "RunOutcome", "run", "summarise", "DEFAULT_DATASETS"]

DEFAULT_DATASETS = ("set5", "set14")
PASSES = ("quality", "latency")


@dataclass
class RunRequest:
    """Everything that defines a run; saved as config.json."""

    methods: list[str]
    datasets: list[str] = field(default_factory=lambda: list(DEFAULT_DATASETS))
    scales: list[int] = field(default_factory=lambda: [2, 3, 4])
    passes: list[str] = field(default_factory=lambda: list(PASSES))
    protocol: str = "paper"
    channel: str | None = None
    shave: str | None = None
    device: str = "auto"
    out: Path = Path("reports/runs/latest")
    sizes: list[tuple[int, int]] = field(default_factory=lambda: [(720, 1280)])
    save_images: str = "some"  # none | some | all
    report: bool = True
    resume: bool = False
    force: bool = False  # replace the run already in `out`
    command: str = ""
    datasets_defaulted: bool = False
    weights: str | None = None  # --weights: a file for the one method and scale; run() labels it method@stem
    scheduler: str | None = None  # --scheduler: the quality pass on this Dask cluster (bench.cluster)
    workers: int | None = None  # --workers N: ... on a local Dask cluster of N processes; neither: in-process
    cell_timeout: float | None = (
        DEFAULT_CELL_TIMEOUT  # seconds a method may take on one image (None: no limit)
    )


@dataclass
class RunOutcome:
    out_dir: Path
    quality: pd.DataFrame
    summary: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    latency: pd.DataFrame | None = None
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        return bool(self.problems) or bool(
            (self.quality.get("status", pd.Series(dtype=str)) == "failed").any()
        )


Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def _resolve_datasets(req: RunRequest, log: Log) -> tuple[list[Dataset], list[str]]:
    warnings: list[str] = []
    if req.datasets_defaulted:
        found, missing = [], []
        for name in req.datasets:
            try:
                found.append(open_dataset(name))
            except DataError as exc:
                missing.append((name, exc))
        if not found:
            msg = (
                f"warning: none of {', '.join(req.datasets)} is available ({missing[0][1]}); "
                f"running on the built-in 'sample' images instead"
            )
            log(msg)
            return [open_dataset("sample")], [msg]
        for name, err in missing:
            msg = f"warning: default dataset {name} skipped: {err}"
            log(msg)
            warnings.append(msg)
        return found, warnings
    return [open_dataset(n) for n in req.datasets], warnings


def run(req: RunRequest, *, progress: bool = True, log: Log = _stderr) -> RunOutcome:
    """Run the requested passes, writing rows as they are computed; see DESIGN.md 'Outputs'.

    Raises UsageError before any work for a bad request or a folder that is not this run's to write.
    """
    unknown = [p for p in req.passes if p not in PASSES]
    if unknown or not req.passes:
        raise UsageError(f"unknown pass {(unknown or [''])[0]!r}; choose from {', '.join(PASSES)}")
    if not req.scales:
        raise UsageError("no scales given; use e.g. --scales 2,3,4")
    if req.weights is not None:  # one method, one scale, labelled <method>@<file stem>
        req = replace(req, methods=weights_methods(req.methods, req.scales, req.weights))
    protocol = get_protocol(req.protocol, req.channel, req.shave)
    if not any(has_scale(m, s) for m in req.methods for s in req.scales):
        raise UsageError(
            f"none of {', '.join(req.methods)} exists at x{', x'.join(map(str, req.scales))}; pick other scales"
        )
    for note in skipped_scales(req.methods, req.scales):
        log(note)
    device = resolve_device(req.device)
    if "latency" in req.passes and req.scheduler is None and req.workers is None:
        from bench.latency import check_latency_memory

        # a size that cannot fit is a usage error now, not after the quality pass (checked again before the
        # latency pass: the memory free then is what counts); a cluster's worker checks its own
        check_latency_memory(_latency_names(req), req.scales, req.sizes, device)
    store = RunStore(req.out)
    store.claim(resume=req.resume, force=req.force)
    try:
        with _user_signals():
            return _run_passes(req, protocol, device, store, progress, log)
    finally:
        store.release()


def _latency_names(req: RunRequest) -> list[str]:
    return [m for m in req.methods if not m.startswith("dir:")]  # stored outputs have no latency


@contextlib.contextmanager
def _user_signals() -> Iterator[None]:
    """Ctrl-C noted as the user's: a KeyboardInterrupt a method raises by itself fails its cell only."""
    clear_signal()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: object) -> None:
        note_signal()
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # started in the background by a shell: Ctrl-C is not ours to catch
        yield
        return
    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _write_config(req: RunRequest, protocol: Protocol, device: str, store: RunStore) -> dict[str, Any]:
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(req).items()}
    # "request" is what was asked (a resume repeats it); the top level records what was resolved
    config["request"] = {k: v for k, v in config.items() if k not in ("out", "command", "resume", "force")}
    config.update(protocol=protocol.name, protocol_detail=asdict(protocol), device=device)
    store.write_json("config.json", config)
    return config


def _run_passes(
    req: RunRequest, protocol: Protocol, device: str, store: RunStore, progress: bool, log: Log
) -> RunOutcome:
    from bench.probe import probe_env

    config = _write_config(req, protocol, device, store)
    env = probe_env(measure=False)  # the compute ceiling is measured right before the latency pass
    env["device"] = device
    store.write_json("env.json", env)
    outcome = RunOutcome(
        req.out, pd.DataFrame(columns=QUALITY_COLUMNS), pd.DataFrame(columns=SUMMARY_COLUMNS)
    )
    infos: dict[tuple[str, int], dict[str, Any]] = {}
    if "quality" in req.passes:
        qp = _QualityPass(req, protocol, device, store, log)
        qp.run(outcome, progress)
        infos.update({k: m.info().as_row() for k, m in qp.methods.items()})
        config["datasets_resolved"] = (
            qp.resolved
        )  # where each dataset's images were: the report reads crops there
        store.write_json("config.json", config)
    else:
        qp_tables = _QualityPass(req, protocol, device, store, log)
        qp_tables.tables(outcome)  # empty quality and summary tables: the report is a latency report
    if "latency" in req.passes and not outcome.interrupted:
        from bench.cluster import latency_on_cluster
        from bench.latency import add_peak_fraction, check_latency_memory, latency_pass
        from bench.probe import matmul_gflops

        names = _latency_names(req)
        build = partial(build_method, weights=req.weights)  # the run's method options
        # on a cluster: one worker alone times every method, with its own probe (env.json's machine keys)
        remote = latency_on_cluster(req, device, names, build, env)
        if remote is None:
            check_latency_memory(names, req.scales, req.sizes, device)  # before anything is allocated
            # measured now, not at the start: the quality pass's scoring threads must not lower the ceiling
            env["matmul_gflops"] = matmul_gflops()
            store.write_json("env.json", env)
            lat, lat_infos = latency_pass(
                names, req.scales, device=device, sizes=req.sizes, progress=progress, log=log, build=build
            )
        else:
            lat, lat_infos, env, notes = remote
            store.write_json("env.json", env)
            for note in notes:
                log(note)
        lat = add_peak_fraction(lat, env.get("matmul_gflops"))
        store.write_csv("latency.csv", lat)
        outcome.latency = lat
        infos.update({k: v for k, v in lat_infos.items() if k not in infos})
    methods = pd.DataFrame(list(infos.values()))
    methods = methods[
        [c for c in _METHOD_COLUMNS if c in methods] + [c for c in methods if c not in _METHOD_COLUMNS]
    ]
    store.write_csv("methods.csv", methods)
    if req.report and not outcome.interrupted:
        from bench.report import write_report

        write_report(req.out)
    return outcome


_METHOD_COLUMNS = ["name", "scale", "device", "params", "macs_720p", "weights", "weights_sha256", "channels",
                   "deterministic"]  # fmt: skip


class _QualityPass:
    """The quality pass of one run: builds each method once per scale, schedules each image, journals rows.

    Scoring (and numpy methods) run in a small thread pool: numpy/scipy release the GIL, so both cores
    work; torch methods run in this thread since torch already uses every core for one image.
    """

    def __init__(self, req: RunRequest, protocol: Protocol, device: str, store: RunStore, log: Log) -> None:
        self.req, self.protocol, self.device, self.store, self.log = req, protocol, device, store, log
        journal = store.read_rows() if req.resume else []
        if store.skipped_lines:
            log(
                f"note: {store.skipped_lines} malformed line(s) of {store.journal} skipped; their images are recomputed"
            )
        self.done = {row_key(r): r for r in journal if r.get("status") == "ok"}
        self.rows: list[dict[str, Any]] = []
        self.methods: dict[tuple[str, int], Any] = {}
        self.build_errors: dict[tuple[str, int], str] = {}
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
        self.pending: deque[tuple[Future[dict[str, Any]], None] | tuple[None, dict[str, Any]]] = deque()
        self.bar: Any = None
        self.resolved: dict[str, dict[str, str]] = {}
        self.hung: dict[str, str] = {}  # method -> the error its later cells get after one time-out
        self.order: dict[tuple[Any, ...], tuple[int, ...]] = {}  # row key -> where the tables list it
        self.position: tuple[int, int, int] = (0, 0, 0)  # (dataset, scale, image) being submitted

    def _note_timeout(self, row: dict[str, Any]) -> dict[str, Any]:
        hung = hung_message(row)
        if hung is not None:
            self.hung.setdefault(row["method"], hung)
        return row

    def _keep(self, row: dict[str, Any]) -> None:
        self._note_timeout(row)
        self.store.append_rows([row])
        self.rows.append(row)
        self.bar.update(1)

    def drain(self, keep: int) -> None:
        """Journal finished rows in submission order until at most `keep` are in flight."""
        while len(self.pending) > keep:
            fut, row = self.pending.popleft()
            self._keep(fut.result() if fut is not None else row)  # type: ignore[arg-type]

    def method(self, name: str, scale: int) -> Any:
        """The method built once per (name, scale); None (with the error kept) when building fails."""
        key = (name, scale)
        if key not in self.methods and key not in self.build_errors:
            try:
                built = build_method(name, scale=scale, device=self.device, weights=self.req.weights)
                built.info()  # a broken info() fails this method's cells, not the whole run
                self.methods[key] = built
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - create_method raises BenchError; info() anything
                err = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
                self.build_errors[key] = err
                self.log(f"error: {name} x{scale}: {err}")
        return self.methods.get(key)

    def submit(self, name: str, method: Any, sample: Sample, to_save: set[str]) -> None:
        wsha = method.info().weights_sha256 if method is not None else None
        base = row_base(name, sample, self.protocol, wsha)
        rkey = row_key(base)
        ds_pos, scale_pos, image_pos = self.position
        self.order[rkey] = (ds_pos, scale_pos, self.req.methods.index(name), image_pos)
        if rkey in self.done:
            self.drain(0)
            self.rows.append(self.done[rkey])
            self.bar.update(1)
            return
        args = (sample, self.protocol, base, to_save, self.store, self.log)
        if method is None:
            self.pending.append((None, failure_row(base, self.build_errors[(name, sample.scale)])))
        elif name in self.hung:  # one time-out per method: a hung method would cost the limit on every image
            self.pending.append((None, failure_row(base, self.hung[name])))
        elif getattr(method, "thread_safe", False):
            self.pending.append((self.pool.submit(run_one, method, *args, self.req.cell_timeout), None))
        else:
            try:
                raw, expected, seconds = upscale_or_tile(
                    method, sample, self.protocol, name, self.log, self.req.cell_timeout
                )
            except (Exception, MemoryError, SystemExit, KeyboardInterrupt) as exc:  # a plugin's sys.exit()
                if not from_method(exc):  # fails its cell only; the user's Ctrl-C stops the run
                    raise
                self.pending.append((None, self._note_timeout(failed(base, exc, self.log))))
            else:
                self.pending.append((self.pool.submit(finish, raw, expected, seconds, *args), None))
        self.drain(4)

    def dataset(self, ds: Dataset, outcome: RunOutcome) -> None:
        """One image at a time, every method on it: memory holds a few images, never a whole dataset.

        (The tables list rows method by method: `tables` sorts them by `self.order`.)"""
        ds_pos = list(self.resolved).index(ds.name)  # run() lists every dataset before the first starts
        for scale in self.req.scales:
            names = [n for n in self.req.methods if has_scale(n, scale)]  # others noted once, at the start
            if not names:
                continue
            # a first pass keeps one number per image (texture) to pick the SR images the report shows
            usable = (s for s in ds.samples(scale) if big_enough(s, self.protocol, ds))
            to_save = images_to_save(usable, self.req.save_images)
            methods = {name: self.method(name, scale) for name in names}
            for i, sample in enumerate(ds.samples(scale)):
                self.position = (ds_pos, self.req.scales.index(scale), i)
                if big_enough(sample, self.protocol, ds):
                    for name in names:
                        self.submit(name, methods[name], sample, to_save)
            self.drain(0)
            outcome.problems.extend(f"{p.dataset}/{p.image}: {p.reason}" for p in ds.problems)
            ds.problems.clear()
        for line in dict.fromkeys(ds.warnings):  # e.g. an EXIF rotation left unapplied
            self.log(f"warning: {line}")
            outcome.warnings.append(line)

    def interrupted(self, datasets: list[Dataset]) -> None:
        """Keep every row already submitted, then take the journal as the truth."""
        # at most a few short jobs (mostly scoring of outputs already computed), so nothing computed is
        # lost; a second Ctrl-C stops the wait
        while self.pending:
            fut, row = self.pending.popleft()
            try:
                row = fut.result() if fut is not None else row
            except BaseException:  # noqa: BLE001 - an interrupted job has no row to keep
                break
            if row is not None:
                self._keep(row)
        for fut, _ in self.pending:
            if fut is not None:
                fut.cancel()
        names, req = {d.name for d in datasets}, self.req
        # an interrupt may land between journaling a row and listing it
        rows = {row_key(r): r for r in self.store.read_rows()
                if r["method"] in req.methods and r["dataset"] in names and int(r["scale"]) in req.scales
                and r["protocol"] == self.protocol.name}  # fmt: skip
        self.rows[:] = list(rows.values())

    def run(self, outcome: RunOutcome, progress: bool) -> None:
        from tqdm import tqdm

        datasets, outcome.warnings = _resolve_datasets(self.req, self.log)
        for ds in datasets:
            if ds.name in self.resolved:  # two folders with one basename stay two datasets
                ds.name = f"{ds.name}-{len(self.resolved)}"
            self.resolved[ds.name] = {"root": str(ds.root or ""), "origin": ds.origin, "display": ds.display}
        cells = sum(has_scale(m, s) for m in self.req.methods for s in self.req.scales)
        total = cells * sum(len(d) for d in datasets)
        self.bar = tqdm(
            total=total, desc="quality", unit="img", disable=not progress, file=sys.stderr, leave=False
        )
        try:
            # a method's prints go to stderr: stdout carries the results table only
            with contextlib.redirect_stdout(sys.stderr):
                if not run_on_cluster(self, datasets, outcome):  # Dask if asked
                    for ds in datasets:
                        self.dataset(ds, outcome)
                self.drain(0)
        except KeyboardInterrupt:
            outcome.interrupted = True
            self.interrupted(datasets)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.bar.close()
        self.tables(outcome)

    def tables(self, outcome: RunOutcome) -> None:
        unique = list(dict.fromkeys(outcome.problems))
        for p in unique[:MAX_SKIP_LINES]:
            self.log(f"skipped: {p}")
        if len(unique) > MAX_SKIP_LINES:  # thousands of bad files must not bury the results
            self.log(f"skipped: {len(unique) - MAX_SKIP_LINES} more file(s); all are listed in problems.json")
        outcome.problems = list(dict.fromkeys(outcome.problems))
        if self.order:  # computed image by image: listed method by method, as the cells were asked
            last = (len(self.order),)
            self.rows.sort(key=lambda r: self.order.get(row_key(r), last))
        quality = pd.DataFrame(self.rows, columns=QUALITY_COLUMNS + ["seconds"])
        quality["psnr"] = pd.to_numeric(quality["psnr"])
        quality["ssim"] = pd.to_numeric(quality["ssim"])
        outcome.quality = quality
        outcome.summary = summarise(quality, self.req.methods)
        self.store.write_csv("quality.csv", quality)
        self.store.write_csv("summary.csv", outcome.summary)
        if outcome.problems:
            self.store.write_json("problems.json", outcome.problems)
