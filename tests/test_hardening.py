"""Hostile input, round two: no silent wrong number, no lost file, no traceback (issue 15's examples)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench.registry as registry
from bench.api import MethodInfo
from bench.cli import main
from bench.imresize import imresize

REPO = Path(__file__).resolve().parent.parent
QUALITY = ["--datasets", "sample", "--scales", "2", "--pass", "quality", "--no-report", "--no-progress"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SRBENCH_PROGRESS", "0")
    registry.list_methods()  # load the built-ins, then let each test register on a copy
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))


class _Plugin:
    """bicubic with a misbehaviour: `mode` writes into its input, exits, or prints."""

    def __init__(self, mode: str, scale: int) -> None:
        self.name, self.scale, self.device, self.mode = f"bad_{mode}", scale, "cpu", mode

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        if self.mode == "write":
            lr[:] = 0  # a read-only input makes this raise instead of poisoning the next method
        if self.mode == "exit":
            sys.exit(0)
        if self.mode == "print":
            print("debug output of a plugin")
        if self.mode == "interrupt":
            raise KeyboardInterrupt  # raised by the method itself, not by the user's Ctrl-C
        if self.mode == "hang":
            self.calls = getattr(self, "calls", 0) + 1
            time.sleep(3600)
        if self.mode == "spin":
            while True:
                pass
        return imresize(lr, self.scale)

    def info(self) -> MethodInfo:
        return MethodInfo(self.name, self.scale, self.device)


def _register(mode: str) -> str:
    name = f"bad_{mode}"
    registry.register_method(name, lambda *, scale, device="cpu", **_: _Plugin(mode, scale))
    return name


def _quality(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "quality.csv")


def test_a_method_writing_into_its_input_cannot_change_what_the_next_one_sees(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "--methods", f"{_register('write')},bicubic", "--out", str(out), *QUALITY]) == 1
    q = _quality(out)
    assert (q[q["method"] == "bad_write"]["status"] == "failed").all()
    assert (q[q["method"] == "bicubic"]["psnr"] > 25).all()  # bicubic scored on the true LR


def test_a_method_calling_sys_exit_fails_its_cells_not_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "--methods", f"{_register('exit')},bicubic", "--out", str(out), *QUALITY]) == 1
    q = _quality(out)
    assert set(q[q["method"] == "bad_exit"]["status"]) == {"failed"}
    assert set(q[q["method"] == "bicubic"]["status"]) == {"ok"}


def test_a_keyboard_interrupt_raised_by_a_method_fails_its_cells_not_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "--methods", f"{_register('interrupt')},bicubic", "--out", str(out), *QUALITY]) == 1
    q = _quality(out)
    assert set(q[q["method"] == "bad_interrupt"]["status"]) == {"failed"}
    assert (
        set(q[q["method"] == "bicubic"]["status"]) == {"ok"}
        and len(q) == 2 * (q["method"] == "bicubic").sum()
    )


def test_a_hanging_method_fails_after_the_cell_timeout_and_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["run", "--methods", f"{_register('hang')},bicubic", "--out", str(out), *QUALITY]
    assert main([*argv, "--cell-timeout", "0.5"]) == 1
    q = _quality(out)
    hung = q[q["method"] == "bad_hang"]
    assert set(hung["status"]) == {"failed"} and len(hung) == (q["method"] == "bicubic").sum() > 2
    # the first image timed out; the method is then taken as hung and its other cells are not run
    assert hung["error"].str.startswith("CellTimeout: timed out after 0.5 s").sum() == 1
    assert hung["error"].str.contains("timed out on sample/").sum() == len(hung) - 1
    assert set(q[q["method"] == "bicubic"]["status"]) == {"ok"}
    assert "--cell-timeout" in capsys.readouterr().err


def test_the_cell_timeout_comes_from_the_environment_and_bad_values_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    monkeypatch.setenv("SRBENCH_CELL_TIMEOUT", "0.3")
    assert main(["run", "--methods", _register("spin"), "--out", str(out), *QUALITY]) == 1
    assert (_quality(out)["status"] == "failed").all()
    monkeypatch.setenv("SRBENCH_CELL_TIMEOUT", "soon")
    assert main(["run", "--methods", "bicubic", "--out", str(tmp_path / "r2"), *QUALITY]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: SRBENCH_CELL_TIMEOUT='soon' is not a time limit")


def test_the_time_limit_interrupts_a_cell_in_a_worker_thread() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from bench.limits import CellTimeout, time_limit

    def spin() -> str:
        with time_limit(0.2):
            while True:
                pass

    def quick() -> str:
        with time_limit(5):
            return "done"

    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(CellTimeout, match="timed out after 0.2 s"):
            pool.submit(spin).result(timeout=30)
        assert pool.submit(quick).result(timeout=30) == "done"


def test_a_methods_prints_stay_off_the_results_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--methods", _register("print"), "--out", str(tmp_path / "run"), *QUALITY]) == 0
    out, err = capsys.readouterr()
    assert "debug output of a plugin" not in out and "debug output of a plugin" in err


def test_malformed_journal_lines_are_skipped_with_a_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["run", "--methods", "bicubic", "--out", str(out), *QUALITY]) == 0
    with open(out / "quality.jsonl", "a") as f:
        f.write("[1, 2]\n" + json.dumps({"method": "bicubic"}) + "\n")
        f.write(json.dumps({"method": "x", "dataset": "sample", "image": "a", "protocol": "paper", "status": "ok",
                            "scale": 2, "psnr": "high", "ssim": 1}) + "\n")  # fmt: skip
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert "3 malformed line(s)" in capsys.readouterr().err
    assert len(_quality(out)) == 4


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SRBENCH_OFFLINE": "maybe"}, "SRBENCH_OFFLINE='maybe'"),
        ({"SRBENCH_MIRROR": "not-a-url"}, "SRBENCH_MIRROR"),
    ],
)
def test_bad_environment_values_are_named(
    env: dict[str, str],
    needle: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SRBENCH_DATA_PATH", raising=False)
    assert main(
        ["run", "--methods", "bicubic", "--datasets", "set5", "--scales", "2", "--out", str(tmp_path / "r")]
    ) in (1, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


@pytest.mark.parametrize("argv", [["--shave", "abc"], ["--scales", ""], ["--pass", ""]])
def test_bad_options_are_usage_errors_not_silent_successes(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "run",
        "--methods",
        "bicubic",
        "--datasets",
        "sample",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    ]
    assert main([*base, *argv]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "quality.csv").exists()


def test_a_one_image_dataset_gets_its_report(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "one"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(folder / "only.png")
    out = tmp_path / "run"
    argv = ["run", "--methods", "bicubic,nearest", "--datasets", str(folder), "--scales", "2", "--pass", "quality",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert (out / "report.html").is_file()


def test_the_latency_pass_survives_a_failing_method(tmp_path: Path) -> None:
    registry.register_method("boom", lambda **_: (_ for _ in ()).throw(RuntimeError("kaput")))
    out = tmp_path / "run"
    argv = ["run", "--methods", "bicubic,boom", "--datasets", "sample", "--scales", "2", "--pass", "latency",
            "--sizes", "32x24", "--out", str(out), "--no-progress"]  # fmt: skip
    main(argv)
    assert set(pd.read_csv(out / "latency.csv")["method"]) == {"bicubic"}
    assert (out / "report.md").is_file()


def test_many_bad_files_print_a_bounded_number_of_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    folder = tmp_path / "junk"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "good.png")
    for i in range(60):
        (folder / f"bad{i:02d}.png").write_bytes(b"nope")
    out = tmp_path / "run"
    main(["run", "--methods", "bicubic", "--datasets", str(folder), "--out", str(out), *QUALITY[2:]])
    skipped = [line for line in capsys.readouterr().err.splitlines() if line.startswith("skipped")]
    assert len(skipped) <= 21 and "problems.json" in skipped[-1]
    assert len(json.loads((out / "problems.json").read_text())) == 60


@pytest.mark.slow
def test_sigterm_keeps_rows_and_prints_the_resume_command(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "SRBENCH_CACHE": str(tmp_path / "cache"), "SRBENCH_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "bench", "run", "--methods", "bicubic,lanczos,bilinear,nearest", "--datasets",
           "sample", "--scales", "2,3,4", "--pass", "quality", "--no-report", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "quality.jsonl").exists():
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert f"--resume {out}" in err
    kept = (out / "quality.jsonl").read_text().splitlines()
    assert kept and all(json.loads(line)["status"] == "ok" for line in kept)


# ----------------------------------------------------------------------------------------- out of memory


class _Blob:
    """Stands for the activations of a failed attempt."""


class _Greedy:
    """Runs out of memory untiled, holding a blob in its frame; its tiled build checks the blob is gone."""

    def __init__(self, scale: int, tile: int | None, seen: dict[str, object]) -> None:
        self.name, self.scale, self.device, self.tile, self.seen = "greedy", scale, "cpu", tile, seen

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        if self.tile is None:
            blob = _Blob()
            self.seen["blob"] = weakref.ref(blob)
            raise MemoryError("cannot allocate 9 GB")
        ref = self.seen["blob"]
        self.seen.setdefault("alive_at_retry", [])
        self.seen["alive_at_retry"].append(ref() is not None)  # type: ignore[attr-defined, operator]
        return imresize(lr, self.scale)

    def info(self) -> MethodInfo:
        return MethodInfo(self.name, self.scale, self.device)


def test_the_out_of_memory_retry_frees_the_failed_attempt_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.cells as cells

    seen: dict[str, object] = {}
    registry.register_method("greedy", lambda *, scale, device="cpu", **_: _Greedy(scale, None, seen))
    monkeypatch.setattr(cells, "build_method", lambda name, *, scale, tile, **_: _Greedy(scale, tile, seen))
    out = tmp_path / "run"
    assert main(["run", "--methods", "greedy", "--out", str(out), *QUALITY]) == 0
    assert seen["alive_at_retry"] and not any(seen["alive_at_retry"])  # type: ignore[arg-type]
    assert (_quality(out)["status"] == "ok").all()


def test_an_exif_rotated_jpeg_is_scored_as_stored_and_the_run_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / "turned.jpg", exif=exif)
    out = tmp_path / "run"
    argv = ["run", "--methods", "bicubic", "--datasets", str(folder), "--scales", "2,3", "--out", str(out)]
    assert main([*argv, "--pass", "quality", "--no-report", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("EXIF orientation 6") == 1 and "scored as stored" in err  # once, not once per scale
    assert len(_quality(out)) == 2
