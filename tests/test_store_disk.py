"""A full disk (or any failure) in the middle of a run folder's writes: journaled rows stay, no .tmp is left."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

import bench.store as store
from bench.cli import main
from bench.runner import RunRequest, run
from bench.store import RunStore, atomic_write_text

KEY = ["method", "dataset", "scale", "image"]


def _row(i: int) -> dict[str, object]:
    return {
        "method": "bicubic",
        "dataset": "sample",
        "scale": 2,
        "image": f"img{i:02d}",
        "psnr": 30.0 + i,
        "ssim": 0.9,
        "protocol": "paper",
        "status": "ok",
        "seconds": 0.01,
    }


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp"))


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _ctrl_c(*args: object) -> None:
    raise KeyboardInterrupt


def _partial_then_full(real_write: Callable[[int, bytes], int], keep: int = 7) -> Callable[[int, bytes], int]:
    """An os.write that takes `keep` bytes of the first write, then finds the disk full: a torn line."""
    calls = {"n": 0}

    def write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1 and len(data) > keep:
            return real_write(fd, bytes(data[:keep]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


@pytest.fixture
def journaled(tmp_path: Path) -> Iterator[RunStore]:
    """A run folder whose journal holds three rows, and an earlier quality.csv."""
    rs = RunStore(tmp_path / "run")
    rs.claim(resume=False, force=False)
    rs.append_rows([_row(i) for i in range(3)])
    rs.write_csv("quality.csv", pd.DataFrame([_row(0)]))
    yield rs
    rs.release()


def _assert_intact(rs: RunStore, journal_before: bytes) -> None:
    assert rs.journal.read_bytes() == journal_before  # not one byte of a partial line
    assert [r["image"] for r in rs.read_rows()] == ["img00", "img01", "img02"]
    assert rs.skipped_lines == 0
    assert _temporaries(rs.dir) == []


@pytest.mark.parametrize("how", ["partial-write", "write", "fsync"])
def test_append_rows_disk_full_keeps_journaled_rows(
    journaled: RunStore, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    before = journaled.journal.read_bytes()
    with monkeypatch.context() as m:
        if how == "partial-write":
            m.setattr(os, "write", _partial_then_full(os.write))
        else:
            m.setattr(os, how, _enospc)
        with pytest.raises(OSError) as info:
            journaled.append_rows([_row(3), _row(4)])
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(journaled.journal)  # the CLI's one line names it
    _assert_intact(journaled, before)
    # space freed: the run goes on, each row on a line of its own
    journaled.append_rows([_row(3)])
    assert [r["image"] for r in journaled.read_rows()] == ["img00", "img01", "img02", "img03"]
    assert journaled.skipped_lines == 0


def test_append_rows_interrupted_mid_write_leaves_no_partial_line(
    journaled: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = journaled.journal.read_bytes()
    real_write = os.write

    def interrupted(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[:5]))
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(os, "write", interrupted)
        with pytest.raises(KeyboardInterrupt):
            journaled.append_rows([_row(3)])
    _assert_intact(journaled, before)


def test_append_rows_real_short_write_at_file_size_limit(journaled: RunStore) -> None:
    """Not a mock: the kernel takes part of the write, then refuses (EFBIG past RLIMIT_FSIZE)."""
    before = journaled.journal.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal kills the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 20, hard))
    try:
        with pytest.raises(OSError) as info:
            journaled.append_rows([_row(3)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert info.value.errno == errno.EFBIG
    _assert_intact(journaled, before)


@pytest.mark.parametrize("how", ["mkstemp", "partial-write", "write", "fsync", "replace", "interrupt"])
@pytest.mark.parametrize("kind", ["csv", "json"])
def test_atomic_writes_fail_whole_and_leave_no_tmp(
    journaled: RunStore, monkeypatch: pytest.MonkeyPatch, how: str, kind: str
) -> None:
    name = "quality.csv" if kind == "csv" else "config.json"
    target = journaled.dir / name
    journaled.write_json("config.json", {"old": True})
    old_text, journal_before = target.read_text(), journaled.journal.read_bytes()

    def write() -> None:
        if kind == "csv":
            journaled.write_csv(name, pd.DataFrame([_row(i) for i in range(50)]))
        else:
            journaled.write_json(name, {"rows": [_row(i) for i in range(50)]})

    with monkeypatch.context() as m:
        if how == "mkstemp":
            m.setattr(tempfile, "mkstemp", _enospc)
        elif how == "partial-write":
            m.setattr(os, "write", _partial_then_full(os.write, keep=100))
        elif how == "interrupt":
            m.setattr(os, "fsync", _ctrl_c)
        else:
            m.setattr(os, how, _enospc)
        with pytest.raises((OSError, KeyboardInterrupt)) as info:
            write()
    if how != "interrupt":
        assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
        assert info.value.filename == str(target)  # the file the user knows, not the temporary one
    assert target.read_text() == old_text  # the old content, whole
    _assert_intact(journaled, journal_before)
    write()  # space freed: the same write succeeds
    assert target.read_text() != old_text and _temporaries(journaled.dir) == []


def test_atomic_write_text_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "baseline.csv"
    atomic_write_text(path, "a\n")
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    atomic_write_text(path, "b\n")
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text() == "b\n"


def test_claim_removes_temporaries_left_by_a_killed_run(journaled: RunStore) -> None:
    # what kill -9 in the middle of an atomic write leaves: the temporary file of that write
    (journaled.dir / ".quality.csv.abc123.tmp").write_text("half")
    images = journaled.dir / "images" / "bicubic" / "sample" / "x2"
    images.mkdir(parents=True)
    (images / "tmpq1w2e3.tmp").write_bytes(b"\x89PNG")
    journaled.release()
    resumed = RunStore(journaled.dir)
    resumed.claim(resume=True, force=False)
    try:
        assert _temporaries(journaled.dir) == []
        assert len(resumed.read_rows()) == 3
    finally:
        resumed.release()


def test_claim_takes_a_folder_left_by_a_run_killed_while_claiming_it(tmp_path: Path) -> None:
    # killed between taking the lock and writing the marker: only the lock and the marker's temporary file
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / store.LOCK).write_text("12345")
    (folder / f".{store.MARKER}.x1y2z3.tmp").write_text("")
    rs = RunStore(folder)
    rs.claim(resume=False, force=False)
    try:
        assert rs.is_run and _temporaries(folder) == []
    finally:
        rs.release()


def _request(out: Path, resume: bool = False) -> RunRequest:
    return RunRequest(
        methods=["bicubic", "nearest"],
        datasets=["sample"],
        scales=[2, 3],
        passes=["quality"],
        out=out,
        report=False,
        save_images="none",
        resume=resume,
    )


def _journal_lines(run_dir: Path) -> list[str]:
    return (run_dir / "quality.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)


def _fill_disk_after(journal: Path, rows: int) -> Callable[[int, bytes], int]:
    """An os.write that finds the disk full for every file once `journal` holds `rows` lines."""
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if journal.exists() and journal.read_bytes().count(b"\n") >= rows:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    return write


def test_disk_full_mid_run_keeps_rows_and_resume_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = tmp_path / "reference"
    assert not run(_request(reference), progress=False, log=lambda msg: None).failed
    out = tmp_path / "full"
    with monkeypatch.context() as m:
        m.setattr(os, "write", _fill_disk_after(out / "quality.jsonl", 5))
        with pytest.raises(OSError) as info:
            run(_request(out), progress=False, log=lambda msg: None)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(out / "quality.jsonl")
    lines = _journal_lines(out)
    assert len(lines) == 5 and all(json.loads(ln)["status"] == "ok" for ln in lines)
    assert _temporaries(out) == []
    # the lock was given back: the run continues where it stopped, reusing the journaled rows
    assert not run(_request(out, resume=True), progress=False, log=lambda msg: None).failed
    assert _journal_lines(out)[:5] == lines and len(_journal_lines(out)) == 16
    got = pd.read_csv(out / "quality.csv").drop(columns=["seconds"]).sort_values(KEY, ignore_index=True)
    want = (
        pd.read_csv(reference / "quality.csv").drop(columns=["seconds"]).sort_values(KEY, ignore_index=True)
    )
    pd.testing.assert_frame_equal(got, want)
    assert _temporaries(out) == []


def test_cli_disk_full_is_one_line_naming_the_file_and_how_to_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "full"
    argv = ["run", "--methods", "bicubic", "--datasets", "sample", "--scales", "2", "--pass", "quality"]
    argv += ["--no-report", "--save-images", "none", "--no-progress", "--device", "cpu", "--out", str(out)]
    with monkeypatch.context() as m:
        m.setattr(os, "write", _fill_disk_after(out / "quality.jsonl", 2))
        code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith(f"error: no space left on device writing {out / 'quality.jsonl'}")
    assert f"--resume {out}" in err[-1]
    assert len(_journal_lines(out)) == 2 and _temporaries(out) == []
