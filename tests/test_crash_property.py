"""Random sequences of kill -9, resume and concurrent runs on one run folder end with the rows of one clean run."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.errors import UsageError
from bench.store import LOCK, MARKER, RunStore

REPO = Path(__file__).resolve().parent.parent
KEY = ["method", "dataset", "scale", "image"]
TIMING = ["seconds"]  # the only column that differs between two runs of the same request
EXIT_USAGE = 2  # bench.cli: a refused request, the folder's lock held by another run included
WAIT = 180  # seconds: a bound on any one run, far above what it takes (a loaded machine included)


@dataclass(frozen=True)
class Plan:
    """A request cheap enough that one uninterrupted run lasts seconds."""

    methods: str
    save_images: str


FAST = Plan("bicubic,lanczos,nearest", "none")
FULL = Plan("bicubic,lanczos,nearest,srcnn", "some")


@dataclass(frozen=True)
class Reference:
    quality: pd.DataFrame  # sorted by KEY, without TIMING
    first_row: float  # seconds from starting the uninterrupted run to its first journaled row
    seconds: float  # its wall time, start-up included

    def kill_delay(self, fraction: float) -> float | None:
        """When to kill a run: 0..1 spans its rows, below 0 its start-up; above 1 (None) never."""
        if fraction > 1.0:
            return None
        return max(0.0, self.first_row + fraction * (self.seconds - self.first_row))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "SRBENCH_PROGRESS": "0"}


def _argv(plan: Plan, folder: Path) -> list[str]:
    """A fresh run (replacing what a run killed before writing its config left) or a resume of it."""
    where = (
        ["--resume", str(folder)] if (folder / "config.json").is_file() else ["--out", str(folder), "--force"]
    )
    return [
        "run",
        *where,
        "--methods",
        plan.methods,
        "--datasets",
        "sample",
        "--scales",
        "2,3,4",
        "--pass",
        "quality",
        "--no-report",
        "--save-images",
        plan.save_images,
        "--no-progress",
        "--device",
        "cpu",
    ]


@contextlib.contextmanager
def _started(plan: Plan, folder: Path, n: int = 1) -> Iterator[list[subprocess.Popen[str]]]:
    """`n` runs into `folder`, started together; any still running at the end is killed."""
    argv = [sys.executable, "-m", "bench", *_argv(plan, folder)]
    procs = [
        subprocess.Popen(
            argv, cwd=folder.parent, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(n)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def _quality(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / "quality.csv").drop(columns=TIMING)
    return df.sort_values(KEY, ignore_index=True)


def _reference(plan: Plan, tmp: Path) -> Reference:
    folder = tmp / "reference"
    t0 = time.monotonic()
    with _started(plan, folder) as (proc,):
        while not _journal(folder) and proc.poll() is None:
            time.sleep(0.01)
        first_row = time.monotonic() - t0
        _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    return Reference(_quality(folder), first_row, time.monotonic() - t0)


@pytest.fixture(scope="module")
def fast_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return _reference(FAST, tmp_path_factory.mktemp("fast"))


@pytest.fixture(scope="module")
def full_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return _reference(FULL, tmp_path_factory.mktemp("full"))


def _journal(folder: Path) -> list[str]:
    path = folder / "quality.jsonl"
    return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []


def _check_journal(folder: Path, before: list[str]) -> list[str]:
    """After any step: the journal only grew, every line is a whole row, no row was computed twice."""
    lines = _journal(folder)
    assert lines[: len(before)] == before, "journaled rows were changed or lost"
    rs = RunStore(folder)
    rows = rs.read_rows()
    assert rs.skipped_lines == 0 and len(rows) == len(lines), "a torn or corrupt journal line"
    keys = [tuple(r[k] for k in KEY) for r in rows]
    assert len(set(keys)) == len(keys), "a journaled row was computed again"
    return lines


def _end(proc: subprocess.Popen[str], kill_after: float | None) -> bool:
    """kill -9 after `kill_after` seconds, or (None) let the run finish: it must succeed. Whether killed."""
    try:
        proc.wait(timeout=WAIT if kill_after is None else kill_after)
    except subprocess.TimeoutExpired:
        if kill_after is None:
            raise
        proc.kill()
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode in ((0, -signal.SIGKILL) if kill_after is not None else (0,)), err
    return proc.returncode != 0


def _kill(plan: Plan, folder: Path, kill_after: float | None) -> bool:
    with _started(plan, folder) as (proc,):
        return _end(proc, kill_after)


def _lock_holder(folder: Path, procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    """The one of `procs` that took the folder's lock (it writes its pid there right after taking it)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            pid = (folder / LOCK).read_text().strip()
            for p in procs:
                if pid == str(p.pid):
                    return p
        for p in procs:
            assert p.poll() is None, f"a run ended before either took the lock: {p.communicate()[1]}"
        time.sleep(0.005)
    raise AssertionError("neither run took the lock")


def _race(plan: Plan, folder: Path, kill_after: float | None) -> bool:
    """Two runs started together: the one that takes the lock runs on, the other fails at once naming it."""
    with _started(plan, folder, 2) as procs:
        holder = _lock_holder(folder, procs)
        holder.send_signal(signal.SIGSTOP)  # a run that holds the lock for as long as the other needs to try
        other = procs[1] if holder is procs[0] else procs[0]
        _, err = other.communicate(timeout=WAIT)  # fails fast: it never waits for the lock
        assert other.returncode == EXIT_USAGE, err
        assert f"another srbench process (pid {holder.pid}) is writing into {folder}" in err
        assert len(err.strip().splitlines()) == 1, err
        holder.send_signal(signal.SIGCONT)
        return _end(holder, kill_after)


def _finish(plan: Plan, folder: Path) -> None:
    """Resume (in this process, so nothing kills it) to the end."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(_argv(plan, folder))
    assert code == 0, err.getvalue()


@contextlib.contextmanager
def _folder() -> Iterator[Path]:
    # one folder per example: hypothesis runs the test body many times within one pytest test
    tmp = Path(tempfile.mkdtemp(prefix="srbench-crash-"))
    try:
        yield tmp / "run"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_sequence(plan: Plan, ref: Reference, steps: list[tuple[str, float]]) -> None:
    with _folder() as folder:
        lines: list[str] = []
        for kind, fraction in steps:
            kill_after = ref.kill_delay(fraction)
            killed = _kill(plan, folder, kill_after) if kind == "kill" else _race(plan, folder, kill_after)
            grown = len(_journal(folder)) - len(lines)
            lines = _check_journal(folder, lines)
            # where the kills landed (pytest --hypothesis-show-statistics)
            event(
                f"{kind}: "
                + ("ran to the end" if not killed else "killed mid-run" if grown else "killed, no new row")
            )
        _finish(plan, folder)
        lines = _check_journal(folder, lines)
        assert (folder / MARKER).is_file()
        got = _quality(folder)
        assert not got.duplicated(KEY).any(), "a row twice in quality.csv"
        assert len(lines) == len(got), "quality.csv and the journal disagree"
        pd.testing.assert_frame_equal(got, ref.quality)  # no row lost, none added, same scores
        assert sorted(folder.rglob("*.tmp")) == [], "a temporary file survived"


# the kill point as a fraction of the clean run's rows: mostly mid-run, some in start-up, some never
STEP = st.tuples(st.sampled_from(["kill", "race"]), st.floats(-0.3, 1.1))


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(steps=st.lists(STEP, min_size=1, max_size=2))
@example(steps=[("kill", 0.4), ("race", 0.3)])
def test_kill_resume_race_sequences_end_with_the_rows_of_one_clean_run(
    fast_reference: Reference, steps: list[tuple[str, float]]
) -> None:
    _check_sequence(FAST, fast_reference, steps)


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(steps=st.lists(STEP, min_size=1, max_size=4))
def test_longer_kill_resume_race_sequences_with_a_learned_method(
    full_reference: Reference, steps: list[tuple[str, float]]
) -> None:
    _check_sequence(FULL, full_reference, steps)


@pytest.mark.parametrize("before", ["", "dead-pid"])
def test_lock_message_names_the_holder_while_it_writes_its_pid(tmp_path: Path, before: str) -> None:
    """Found by the race above: a run refused between the holder taking the lock and writing its pid read
    an empty file ('pid unknown'); it could as well have read the pid of a run killed earlier."""
    folder = tmp_path / "run"
    holder = RunStore(folder)
    holder.claim(resume=False, force=False)
    try:
        dead = subprocess.Popen([sys.executable, "-c", ""])
        dead.wait()
        (folder / LOCK).write_text(str(dead.pid) if before else "")  # the holder has not written its pid yet
        writer = threading.Timer(0.1, lambda: (folder / LOCK).write_text(str(os.getpid())))
        writer.start()
        with pytest.raises(
            UsageError, match=rf"another srbench process \(pid {os.getpid()}\) is writing into"
        ):
            RunStore(folder).claim(resume=True, force=False)
        writer.join()
    finally:
        holder.release()
