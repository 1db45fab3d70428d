"""Incremental runs: rows are journaled as computed, a killed run resumes, only missing cells are computed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import bench.registry as registry
from bench.api import MethodInfo
from bench.cli import main
from bench.errors import UsageError
from bench.runner import RunRequest, run
from bench.store import RunStore

REPO = Path(__file__).resolve().parent.parent
KEY = ["method", "dataset", "scale", "image"]
METHODS = ["bicubic", "nearest", "bilinear"]


def _quiet(msg: str) -> None:
    pass


def _run(
    out: Path,
    methods: list[str],
    datasets: list[str],
    scales: list[int],
    resume: bool = False,
    force: bool = False,
) -> None:
    req = RunRequest(
        methods=methods,
        datasets=datasets,
        scales=scales,
        passes=["quality"],
        out=out,
        report=False,
        save_images="none",
        resume=resume,
        force=force,
    )
    outcome = run(req, progress=False, log=_quiet)
    assert not outcome.failed and not outcome.interrupted


def _cli_run(methods: list[str], datasets: str, scales: str) -> list[str]:
    """`bench run` arguments for a quick quality-only run on the CPU (add --out or --resume)."""
    return [
        "run",
        "--methods",
        ",".join(methods),
        "--datasets",
        datasets,
        "--scales",
        scales,
        "--pass",
        "quality",
        "--no-report",
        "--save-images",
        "none",
        "--no-progress",
        "--device",
        "cpu",
    ]


def _quality(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "quality.csv").drop(columns=["seconds"])


def _journal_lines(run_dir: Path) -> list[str]:
    path = run_dir / "quality.jsonl"
    return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []


def _complete_lines(run_dir: Path) -> int:
    return sum(1 for ln in _journal_lines(run_dir) if ln.endswith("\n"))


@pytest.fixture(scope="module")
def many_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder dataset of 30 distinct 96x96 images: enough rows that a kill lands midway."""
    folder = tmp_path_factory.mktemp("data") / "many"
    folder.mkdir()
    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[0:96, 0:96] / 96.0
    for i in range(30):
        # smooth gradients plus texture: realistic scores, and every file differs
        fx, fy = rng.uniform(1, 6, size=2)
        base = 0.5 + 0.25 * np.sin(2 * np.pi * (fx * xx + fy * yy + i / 30))
        img = np.stack([base, base**2, 1 - base], axis=2) + rng.normal(0, 0.05, size=(96, 96, 3))
        Image.fromarray(np.clip(img * 255, 0, 255).round().astype(np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_resume_after_kill_equals_an_uninterrupted_run(
    many_images: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    scales = [2, 3, 4]
    total = len(METHODS) * len(scales) * 30
    reference = tmp_path / "reference"
    _run(reference, METHODS, [str(many_images)], scales)
    assert len(_quality(reference)) == total

    out = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if k != "SRBENCH_DATA_PATH"}
    env.update(PYTHONPATH=str(REPO), SRBENCH_CACHE=str(tmp_path / "cache"), SRBENCH_PROGRESS="0")
    cmd = [sys.executable, "-m", "bench", *_cli_run(METHODS, str(many_images), "2,3,4"), "--out", str(out)]
    # as from a terminal: a shell starts background jobs (CI under nohup &) with SIGINT ignored, which the
    # child would inherit
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while _complete_lines(out) < 10 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed midway"
        assert _complete_lines(out) >= 10, "no rows journaled within 180 s"
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # kill -9 leaves only the journal; Ctrl-C also writes the rows so far to quality.csv and exits 130
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    before = [ln for ln in _journal_lines(out) if ln.endswith("\n")]
    assert 10 <= len(before) < total, f"kill landed after {len(before)} of {total} rows"
    if sig == signal.SIGKILL:
        assert not (out / "quality.csv").exists()
    else:
        # the interrupted run's quality.csv holds rows of the journal, each once (the journal, not this
        # file, is what --resume reads: a row journaled just as Ctrl-C landed may be absent here)
        partial = _quality(out)
        journaled = {(r["method"], r["scale"], r["image"]) for r in map(json.loads, before)}
        assert 0 < len(partial) <= len(before) and not partial.duplicated(KEY).any()
        assert set(zip(partial["method"], partial["scale"], partial["image"], strict=True)) <= journaled

    argv = [*_cli_run(METHODS, str(many_images), "2,3,4"), "--resume", str(out)]
    assert main(argv) == 0

    resumed = _quality(out)
    assert not resumed.duplicated(KEY).any()
    pd.testing.assert_frame_equal(resumed, _quality(reference))
    # the rows of the killed run were reused, not computed again: one journal line per row
    after = _journal_lines(out)
    assert len(after) == total and all(ln.endswith("\n") for ln in after)
    assert after[: len(before)] == before


def test_resume_recomputes_a_torn_last_journal_line(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    _run(reference, ["bicubic"], ["sample"], [2])
    out = tmp_path / "torn"
    shutil.copytree(reference, out)
    (out / "quality.csv").unlink()
    (out / "summary.csv").unlink()
    lines = _journal_lines(out)
    assert len(lines) == 4
    torn_row = json.loads(lines[-1])
    # a crash in the middle of the last write: half a JSON line, no newline
    (out / "quality.jsonl").write_text(
        "".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2], encoding="utf-8"
    )
    assert len(RunStore(out).read_rows()) == 3

    _run(out, ["bicubic"], ["sample"], [2], resume=True)
    pd.testing.assert_frame_equal(_quality(out), _quality(reference))
    after = _journal_lines(out)
    assert len(after) == 4 and all(ln.endswith("\n") for ln in after)
    assert after[:3] == lines[:3]
    recomputed = json.loads(after[3])
    assert recomputed["image"] == torn_row["image"] and recomputed["psnr"] == torn_row["psnr"]


def test_resume_with_one_more_method_computes_only_that_method(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(out, ["bicubic"], ["sample"], [2, 3])
    first = pd.read_csv(out / "quality.csv")
    assert len(_journal_lines(out)) == 8

    _run(out, ["bicubic", "nearest"], ["sample"], [2, 3], resume=True)
    appended = [json.loads(ln) for ln in _journal_lines(out)[8:]]
    assert len(appended) == 8 and {r["method"] for r in appended} == {"nearest"}
    final = pd.read_csv(out / "quality.csv")
    assert len(final) == 16 and not final.duplicated(KEY).any()
    # bicubic's rows are the journaled ones, timings included
    pd.testing.assert_frame_equal(final[final["method"] == "bicubic"].reset_index(drop=True), first)

    reference = tmp_path / "reference"
    _run(reference, ["bicubic", "nearest"], ["sample"], [2, 3])
    pd.testing.assert_frame_equal(_quality(out), _quality(reference))


def test_resume_of_a_finished_run_computes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = _cli_run(["bicubic"], "sample", "2")
    assert main(argv + ["--out", str(out)]) == 0
    journal = (out / "quality.jsonl").read_bytes()
    first = pd.read_csv(out / "quality.csv")
    assert main(argv + ["--resume", str(out)]) == 0
    assert (out / "quality.jsonl").read_bytes() == journal
    pd.testing.assert_frame_equal(pd.read_csv(out / "quality.csv"), first)


def test_fresh_run_into_a_run_folder_is_refused_naming_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(out, ["bicubic"], ["sample"], [2])
    before = (out / "quality.csv").read_bytes()
    with pytest.raises(UsageError, match=f"already holds a run; continue it with '--resume {out}'"):
        _run(out, ["nearest"], ["sample"], [2])
    assert (out / "quality.csv").read_bytes() == before  # the earlier results are untouched


def test_force_replaces_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(out, ["bicubic"], ["sample"], [2])
    _run(out, ["bicubic"], ["sample"], [2], force=True)
    assert len(_journal_lines(out)) == 4


def test_out_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("precious")
    with pytest.raises(UsageError, match="not empty and is not a srbench run folder"):
        _run(out, ["bicubic"], ["sample"], [2], force=True)
    with pytest.raises(UsageError, match="not a srbench run folder"):
        _run(out, ["bicubic"], ["sample"], [2], resume=True)
    assert sorted(p.name for p in out.iterdir()) == ["chapter1.tex"]


def test_second_concurrent_run_into_one_folder_fails_naming_the_holder(tmp_path: Path) -> None:
    import os

    from bench.store import RunStore

    out = tmp_path / "run"
    holder = RunStore(out)
    holder.claim(resume=False, force=False)
    try:
        with pytest.raises(UsageError, match=f"pid {os.getpid()}"):
            _run(out, ["bicubic"], ["sample"], [2], resume=True)
    finally:
        holder.release()


def test_resume_recomputes_rows_of_changed_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = {"sha": "a" * 64}
    calls: list[int] = []

    class Fake:
        """bicubic dressed up as a learned method whose weights file can change."""

        def __init__(self, scale: int, device: str) -> None:
            self.inner = registry.create_method("bicubic", scale=scale, device="cpu")
            self.name, self.scale, self.device = "fake_learned", scale, device

        def upscale(self, lr: np.ndarray) -> np.ndarray:
            calls.append(1)
            return self.inner.upscale(lr)

        def info(self) -> MethodInfo:
            return MethodInfo(
                "fake_learned",
                self.scale,
                self.device,
                weights="fake.safetensors",
                weights_sha256=weights["sha"],
            )

    registry.list_methods()  # load the built-ins before adding the fake one
    monkeypatch.setitem(registry._METHODS, "fake_learned", lambda scale, device, **kw: Fake(scale, device))
    out = tmp_path / "run"
    _run(out, ["fake_learned"], ["sample"], [2])
    assert len(calls) == 4
    _run(out, ["fake_learned"], ["sample"], [2], resume=True)
    assert len(calls) == 4  # same weights: every row reused
    weights["sha"] = "b" * 64
    _run(out, ["fake_learned"], ["sample"], [2], resume=True)
    assert len(calls) == 8  # new weights: every row computed again
    q = pd.read_csv(out / "quality.csv")
    assert len(q) == 4 and set(q["weights_sha256"]) == {"b" * 64}


def test_resume_keeps_images_with_identical_bytes_apart(tmp_path: Path) -> None:
    folder = tmp_path / "dups"
    folder.mkdir()
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8))
    for name in ("a", "b", "c"):
        img.save(folder / f"{name}.png")  # three names, one content
    reference = tmp_path / "reference"
    _run(reference, ["bicubic"], [str(folder)], [2])
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    _run(out, ["bicubic"], [str(folder)], [2], resume=True)
    q = _quality(out)
    assert list(q["image"]) == ["a", "b", "c"]
    pd.testing.assert_frame_equal(q, _quality(reference))
