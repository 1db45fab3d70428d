"""The quality pass on a Dask cluster: the in-process rows to the last digit, workers and clients killed, no Dask."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import bench.registry as registry
from bench.api import MethodInfo
from bench.cells import has_scale
from bench.cli import main
from bench.latency import LATENCY_COLUMNS

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # the tests that need Dask skip; the class below is then never used
    WorkerPlugin = object

REPO = Path(__file__).resolve().parent.parent
KEY = ["method", "dataset", "scale", "image"]


def _quality_args(methods: str, datasets: str, scales: str) -> list[str]:
    return ["run", "--methods", methods, "--datasets", datasets, "--scales", scales, "--pass", "quality",
            "--no-report", "--no-progress", "--device", "cpu"]  # fmt: skip


def _quality(run_dir: Path) -> pd.DataFrame:
    df = pd.read_csv(run_dir / "quality.csv").drop(columns=["seconds"])
    return df.sort_values(KEY).reset_index(drop=True)


def _journal_lines(run_dir: Path) -> list[str]:
    path = run_dir / "quality.jsonl"
    return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []


def _assert_rows_equal(dask: pd.DataFrame, local: pd.DataFrame) -> None:
    """quality.csv rows equal to the last digit; else a failure naming each method that differs, and by how much."""
    if dask.shape == local.shape and dask[KEY].equals(local[KEY]):
        diff = dask[["psnr", "ssim"]].sub(local[["psnr", "ssim"]]).abs()
        by_method = diff.groupby(local["method"]).max()
        differs = by_method[(by_method > 0).any(axis=1)]
        assert differs.empty, f"rows differ from the in-process run (max |difference| per method):\n{differs}"
    pd.testing.assert_frame_equal(dask, local, check_exact=True)


@pytest.fixture
def zoo_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """The official zoo weights for the client and the workers it starts, when they are here (else the
    zoo is skipped, with a warning, by both runs alike)."""
    from conftest import find_weights

    found = find_weights()
    if found is not None:
        monkeypatch.setenv("SRBENCH_WEIGHTS_PATH", str(found))


@contextlib.contextmanager
def _local_cluster(allowed_failures: int = 3) -> Iterator[Any]:
    """A client of a real LocalCluster: 2 worker processes on the loopback interface."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                           host="127.0.0.1", dashboard_address=None)  # fmt: skip
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


# ------------------------------------------------------------------- a method that kills its worker


class _Killer:
    """bicubic, except that it kills the worker process it runs in: once (the first call on any worker,
    through a flag file) or on every call."""

    def __init__(self, *, flag: str, every: bool, scale: int, device: str) -> None:
        self.inner = registry.create_method("bicubic", scale=scale, device=device)
        self.flag, self.every, self.scale, self.device = flag, every, scale, device

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        from distributed import get_worker

        get_worker()  # raises ValueError outside a Dask worker: never kill the test process
        if self.every or _first_call(self.flag):
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.upscale(lr)

    def info(self) -> MethodInfo:
        return replace(self.inner.info(), name="killer")


def _first_call(flag: str) -> bool:
    try:
        os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class _Spinner:
    """bicubic, except that it never returns: a Python loop (a time limit can end it in any thread)."""

    def __init__(self, *, scale: int, device: str) -> None:
        self.scale, self.device = scale, device

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        while True:
            pass

    def info(self) -> MethodInfo:
        return MethodInfo("spinner", self.scale, self.device)


class _Register(WorkerPlugin):  # type: ignore[misc,valid-type]
    """Registers a method in every worker's registry, including workers started to replace dead ones."""

    def __init__(self, name: str, factory: Any) -> None:
        self.name, self.factory = name, factory

    def setup(self, worker: Any) -> None:
        registry.list_methods()  # the built-ins first: the test's method must not be overwritten by them
        registry.register_method(self.name, self.factory, replace=True)


def _with_method(client: Any, monkeypatch: pytest.MonkeyPatch, name: str, factory: Any) -> None:
    client.register_plugin(_Register(name, factory))
    registry.list_methods()
    monkeypatch.setitem(registry._METHODS, name, factory)  # the client checks the name exists


def _with_killer(client: Any, monkeypatch: pytest.MonkeyPatch, flag: Path, every: bool) -> None:
    _with_method(client, monkeypatch, "killer", functools.partial(_Killer, flag=str(flag), every=every))


# ------------------------------------------------------------------------------------------ no Dask


def test_cluster_without_dask_is_a_one_line_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    out = tmp_path / "run"
    for option in (["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:8786"]):
        assert main([*_quality_args("bicubic", "sample", "2"), *option, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "pip install 'srbench[dask]'" in err
    assert not out.exists()  # refused before the run folder is made


def test_run_without_dask_stays_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)
    assert (
        main(
            [*_quality_args("bicubic", "sample", "2"), "--save-images", "none", "--out", str(tmp_path / "r")]
        )
        == 0
    )
    assert len(_quality(tmp_path / "r")) == 4


def test_latency_without_cluster_stays_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)
    args = ["run", "--methods", "bicubic", "--pass", "latency", "--scales", "2", "--sizes", "32x24",
            "--no-report", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(args) == 0
    assert list(pd.read_csv(tmp_path / "r" / "latency.csv").columns) == LATENCY_COLUMNS
    env = json.loads((tmp_path / "r" / "env.json").read_text())
    assert env["matmul_gflops"] > 0 and "latency_worker" not in env and "client" not in env


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--workers", "0"], "at least 1"), (["--workers", "2", "--scheduler", "tcp://h:1"], "not both")],
)
def test_cluster_bad_options_are_usage_errors(
    option: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("distributed")
    assert main([*_quality_args("bicubic", "sample", "2"), *option, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_cluster_gpu_is_requested_for_learned_methods_on_cuda_only() -> None:
    from bench.cluster.connect import needs_gpu as _needs_gpu

    assert _needs_gpu("srcnn", "cuda") and _needs_gpu("imdn", "cuda:1")
    assert not _needs_gpu("srcnn", "cpu") and not _needs_gpu("bicubic", "cuda")
    assert not _needs_gpu("dir:/some/outputs", "cuda")


# ------------------------------------------------------------------------------------- on a cluster


@pytest.mark.slow
def test_cluster_rows_equal_in_process_to_the_last_digit(tmp_path: Path, zoo_weights: None) -> None:
    pytest.importorskip("distributed")
    args = _quality_args("all", "sample", "2,3,4")
    # the reference runs torch on its default threads, a Dask worker on one: the learned methods' numbers
    # must not depend on the thread count (methods/_thread_invariant.py)
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "dask")]) == 0

    local, dask = _quality(tmp_path / "local"), _quality(tmp_path / "dask")
    assert (
        len(local) >= 7 * 3 * 4 and (local["status"] == "ok").all()
    )  # the zoo too, when its weights are here
    _assert_rows_equal(dask, local)
    for name in ("summary.csv", "methods.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "dask" / name), pd.read_csv(tmp_path / "local" / name)
        )
    saved = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local" / "images").rglob("*.png"))
    assert saved == sorted(
        p.relative_to(tmp_path / "dask") for p in (tmp_path / "dask" / "images").rglob("*.png")
    )


@pytest.mark.slow
def test_cluster_latency_runs_on_one_worker_with_its_own_probe(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    import torch

    args = ["run", "--methods", "bicubic,espcn", "--datasets", "sample", "--scales", "2,3", "--sizes", "64x48",
            "--no-report", "--no-progress", "--device", "cpu", "--save-images", "none"]  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a worker's torch runs (see above)
    try:
        assert main([*args, "--out", str(tmp_path / "local")]) == 0  # both passes, in-process
    finally:
        torch.set_num_threads(threads)
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "dask")]) == 0

    _assert_rows_equal(_quality(tmp_path / "dask"), _quality(tmp_path / "local"))
    lat = pd.read_csv(tmp_path / "dask" / "latency.csv")
    assert list(lat.columns) == [*LATENCY_COLUMNS, "host", "worker"]
    assert sorted(zip(lat["method"], lat["scale"], strict=True)) == [("bicubic", 2), ("bicubic", 3),
                                                                     ("espcn", 2), ("espcn", 3)]  # fmt: skip
    env = json.loads((tmp_path / "dask" / "env.json").read_text())
    worker = env["latency_worker"]
    assert worker["pid"] != os.getpid() and env["client"]["pid"] == os.getpid()
    assert set(lat["worker"]) == {worker["address"]} and set(lat["host"]) == {worker["host"]}  # one worker
    # env.json's machine is the worker's: its probe, its ceiling, its threads in every row
    assert env["matmul_gflops"] == worker["matmul_gflops"] > 0
    assert env["torch_threads"] == worker["torch_threads"]
    assert (lat["threads"] == worker["torch_threads"]).all()
    peak_fraction = lat["gflops"] / worker["matmul_gflops"]
    assert lat["peak_fraction"].to_numpy() == pytest.approx(peak_fraction.to_numpy())
    in_process = pd.read_csv(tmp_path / "local" / "latency.csv")
    assert list(in_process.columns) == LATENCY_COLUMNS  # as before: no host, no worker


def _reference(cluster_run: Path, args: list[str], out: Path) -> Path:
    """The in-process run of the cluster run's cells: CI's (SRBENCH_TEST_RUN) when its configuration is the
    same, else one computed here."""
    keys = ("methods", "datasets", "scales", "protocol", "protocol_detail", "device", "weights",
            "datasets_resolved")  # fmt: skip
    ours = json.loads((cluster_run / "config.json").read_text())
    ci = Path(os.environ.get("SRBENCH_TEST_RUN", "")) / "config.json"
    if os.environ.get("SRBENCH_TEST_RUN") and ci.is_file():
        theirs = json.loads(ci.read_text())
        if "quality" in theirs.get("passes", []) and all(theirs.get(k) == ours.get(k) for k in keys):
            return ci.parent
    assert main([*args, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_cluster_scheduler_set5_set14_all_methods_equal_in_process(
    tmp_path: Path, shared_datasets: Path, shared_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(shared_datasets))
    monkeypatch.setenv("SRBENCH_WEIGHTS_PATH", str(shared_weights))
    args = [*_quality_args("all", "set5,set14", "2,3,4"), "--save-images", "none"]
    with _local_cluster() as client:  # the workers start after the variables are set: they see the same data
        assert main([*args, "--scheduler", client.scheduler.address, "--out", str(tmp_path / "dask")]) == 0
    # the reference runs torch on its default threads, as CI's does: learned methods must not depend on them
    local = _quality(_reference(tmp_path / "dask", args, tmp_path / "local"))
    dask = _quality(tmp_path / "dask")
    methods = json.loads((tmp_path / "dask" / "config.json").read_text())["methods"]
    cells = sum(has_scale(m, s) for m in methods for s in (2, 3, 4))
    assert len(dask) == cells * (5 + 14) and (dask["status"] == "ok").all()
    _assert_rows_equal(dask, local)


@pytest.mark.slow
def test_cluster_worker_killed_mid_run_completes_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "killed-once"
    with _local_cluster() as client:
        _with_killer(client, monkeypatch, flag, every=False)
        args = _quality_args("killer,bicubic", "sample", "2,3")
        assert main([*args, "--scheduler", client.scheduler.address, "--out", str(tmp_path / "r")]) == 0
    assert flag.exists()  # a worker did die
    rows = _quality(tmp_path / "r")
    assert len(rows) == 2 * 2 * 4 and (rows["status"] == "ok").all()
    # the killer scores as bicubic: the rescheduled cells were computed in full
    by_method = {m: g.drop(columns="method").reset_index(drop=True) for m, g in rows.groupby("method")}
    pd.testing.assert_frame_equal(by_method["killer"], by_method["bicubic"], check_exact=True)


@pytest.mark.slow
def test_cluster_task_whose_worker_always_dies_fails_its_cells_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with _local_cluster(allowed_failures=0) as client:  # the first death is the last: KilledWorker
        _with_killer(client, monkeypatch, tmp_path / "flag", every=True)
        args = _quality_args("bicubic,killer", "sample", "2")
        assert main([*args, "--scheduler", client.scheduler.address, "--out", str(tmp_path / "r")]) == 1
    rows = _quality(tmp_path / "r")
    assert len(rows) == 8
    assert (rows[rows["method"] == "bicubic"]["status"] == "ok").all()
    killed = rows[rows["method"] == "killer"]
    assert (killed["status"] == "failed").all() and killed["error"].str.startswith("KilledWorker").all()
    assert "KilledWorker" in capsys.readouterr().err


@pytest.fixture(scope="module")
def many_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder dataset of 30 distinct 96x96 images: enough tasks that a kill lands midway."""
    folder = tmp_path_factory.mktemp("data") / "many"
    folder.mkdir()
    rng = np.random.default_rng(6)
    for i in range(30):
        img = rng.integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"img{i:02d}.png")
    return folder


@pytest.mark.slow
def test_cluster_client_killed_and_resumed_recomputes_nothing_received(
    many_images: Path, tmp_path: Path
) -> None:
    args = _quality_args("nearest,bilinear,bicubic", str(many_images), "2,3,4")
    total = 3 * 3 * 30
    assert main([*args, "--out", str(tmp_path / "reference")]) == 0
    out = tmp_path / "killed"
    with _local_cluster() as client:
        address = client.scheduler.address
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, "SRBENCH_PROGRESS": "0"}
        cmd = [sys.executable, "-m", "bench", *args, "--scheduler", address, "--out", str(out)]
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 60
            while len(_journal_lines(out)) < 8 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert proc.poll() is None, "the run ended before it could be killed midway"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        before = [ln for ln in _journal_lines(out) if ln.endswith("\n")]
        assert 8 <= len(before) < total, f"kill landed after {len(before)} of {total} rows"
        assert main(["run", "--resume", str(out), "--no-progress", "--scheduler", address]) == 0
    pd.testing.assert_frame_equal(_quality(out), _quality(tmp_path / "reference"), check_exact=True)
    # the rows received before the kill were reused, not sent again: one journal line per row
    after = _journal_lines(out)
    assert len(after) == total and after[: len(before)] == before
    assert {json.loads(ln)["method"] for ln in after} == {"nearest", "bilinear", "bicubic"}


@pytest.mark.slow
def test_cluster_cell_timeout_fails_a_hung_method_and_cancels_its_other_tasks(
    many_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _local_cluster() as client:
        _with_method(client, monkeypatch, "spinner", _Spinner)
        args = _quality_args("spinner,bicubic", str(many_images), "2")
        argv = [
            *args,
            "--scheduler",
            client.scheduler.address,
            "--cell-timeout",
            "1",
            "--out",
            str(tmp_path / "r"),
        ]
        assert main(argv) == 1
    rows = _quality(tmp_path / "r")
    assert len(rows) == 2 * 30 and (rows[rows["method"] == "bicubic"]["status"] == "ok").all()
    spun = rows[rows["method"] == "spinner"]
    assert (spun["status"] == "failed").all()
    timed_out = spun["error"].str.startswith("CellTimeout: timed out after 1 s").sum()
    # one time-out per task a worker had started before the client saw the first: not one per image
    assert 1 <= timed_out <= 6, spun["error"].tolist()
    assert spun["error"].str.startswith("not run: spinner timed out on many/").sum() == 30 - timed_out
