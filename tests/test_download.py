"""The download path end to end against a local HTTP server: fetch, verify, cache, and every way it fails."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import bench.data
from bench.cli import main
from bench.data import fetch, open_dataset
from bench.errors import DataError, UsageError

pytestmark = pytest.mark.network

SET5_URL_PATH = "datasets/eugenesiow/Set5/resolve/main/data/Set5_HR.tar.gz"
TINY_URL_PATH = "archives/tiny/Tiny_HR.zip"
TINY_FILES = ("butterfly.png", "head.png")


# ----------------------------------------------------------------------------------------- helpers


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _flip_byte(data: bytes, at: int | None = None) -> bytes:
    i = len(data) // 2 if at is None else at
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


def _serve(server, url_path: str, data: bytes) -> Path:  # type: ignore[no-untyped-def]
    path = server.root / url_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _set5_members(shared: Path) -> dict[str, bytes]:
    # the real Hugging Face layout: Set5_HR/<file>.png
    return {f"Set5_HR/{p.name}": p.read_bytes() for p in sorted((shared / "Set5").glob("*.png"))}


def _leftovers(cache: Path) -> list[str]:
    """Everything in the cache except the (empty or absent) downloads folder."""
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


@pytest.fixture
def dl_env(monkeypatch, tmp_path, local_http_server):  # type: ignore[no-untyped-def]
    """Environment for a download: the mirror is the local server, an empty cache, no data path."""
    monkeypatch.setenv("SRBENCH_MIRROR", local_http_server.url)
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SRBENCH_PROGRESS", "0")
    monkeypatch.setenv("SRBENCH_TIMEOUT", "2")
    monkeypatch.delenv("SRBENCH_DATA_PATH", raising=False)
    monkeypatch.delenv("SRBENCH_OFFLINE", raising=False)
    import pooch

    # pooch's log handler keeps the stderr of the test that first imported it: point it at this one's
    for handler in pooch.get_logger().handlers:
        monkeypatch.setattr(handler, "stream", sys.stderr)
    return local_http_server


@pytest.fixture
def tiny_manifest(monkeypatch, tmp_path, shared_datasets):  # type: ignore[no-untyped-def]
    """A 2-image dataset `tiny` whose only source is a zip with a known archive sha256."""
    members = {f"Tiny_HR/{f}": (shared_datasets / "Set5" / f).read_bytes() for f in TINY_FILES}
    archive = _zip(members)
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    files = "".join(
        f'[[files]]\nname = "{f}"\nsha256 = "{hashlib.sha256(members["Tiny_HR/" + f]).hexdigest()}"\n\n'
        for f in TINY_FILES
    )
    (mdir / "tiny.toml").write_text(
        'name = "tiny"\ndisplay = "Tiny"\nfolder = "Tiny"\nrole = "evaluation"\n\n'
        f'[[sources]]\nurl = "https://example.org/{TINY_URL_PATH}"\nformat = "zip"\nprefix = "Tiny_HR/"\n'
        f'sha256 = "{hashlib.sha256(archive).hexdigest()}"\n\n' + files
    )
    monkeypatch.setattr(bench.data.manifests, "MANIFEST_DIR", mdir)
    bench.data.manifests.dataset_manifests.cache_clear()
    yield archive
    bench.data.manifests.dataset_manifests.cache_clear()


# ----------------------------------------------------------------------------------------- success


def test_fetch_targz_downloads_verifies_then_uses_cache(dl_env, shared_datasets, tmp_path, capsys):
    _serve(dl_env, SET5_URL_PATH, _tar_gz(_set5_members(shared_datasets)))
    assert main(["fetch", "set5"]) == 0
    assert "set5: 5 images verified (download" in capsys.readouterr().out
    assert dl_env.requests == [f"/{SET5_URL_PATH}"]
    cached = tmp_path / "cache" / "Set5"
    for p in (shared_datasets / "Set5").glob("*.png"):
        assert (cached / p.name).read_bytes() == p.read_bytes()

    ds = open_dataset("set5")
    assert ds.origin == "cache"
    assert [im.name for im in ds.images()] == ["baby", "bird", "butterfly", "head", "woman"]
    assert main(["fetch", "set5"]) == 0
    assert "(cache:" in capsys.readouterr().out
    assert len(dl_env.requests) == 1  # the second and third uses never touch the network


def test_fetch_zip_with_archive_sha256_downloads_then_uses_cache(dl_env, tiny_manifest, tmp_path):
    _serve(dl_env, TINY_URL_PATH, tiny_manifest)
    ds = open_dataset("tiny")
    assert ds.origin == "download"
    assert [im.name for im in ds.images()] == ["butterfly", "head"]
    assert dl_env.requests == [f"/{TINY_URL_PATH}"]
    assert open_dataset("tiny").origin == "cache"
    assert len(dl_env.requests) == 1


# ----------------------------------------------------------------------------------------- corrupt data


def test_fetch_corrupt_file_in_archive_fails_hash_and_leaves_nothing(dl_env, shared_datasets, tmp_path):
    members = _set5_members(shared_datasets)
    good = _tar_gz(members)
    members["Set5_HR/bird.png"] = _flip_byte(members["Set5_HR/bird.png"])
    _serve(dl_env, SET5_URL_PATH, _tar_gz(members))
    with pytest.raises(DataError) as err:
        open_dataset("set5")
    msg = str(err.value)
    assert "sha256 of bird.png in set5-Set5_HR.tar.gz is" in msg and "expected 5dcf863f7c38" in msg
    assert "fetch again" in msg
    assert _leftovers(tmp_path / "cache") == []  # no bad image, no bad archive, no temp folder
    # the server now has the good archive: a new fetch downloads it again (the bad one was not kept)
    _serve(dl_env, SET5_URL_PATH, good)
    assert open_dataset("set5").origin == "download"


def test_cached_file_damaged_later_is_removed_and_fetched_again(dl_env, shared_datasets, tmp_path, capsys):
    _serve(dl_env, SET5_URL_PATH, _tar_gz(_set5_members(shared_datasets)))
    assert open_dataset("set5").origin == "download"
    cached = tmp_path / "cache" / "Set5" / "head.png"
    cached.write_bytes(_flip_byte(cached.read_bytes()))
    assert main(["fetch", "set5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: sha256 of {cached} is ") and "expected f524c1ce4164" in err
    assert "it was removed from the cache; run 'python -m bench fetch set5'" in err
    assert not cached.exists()
    assert main(["fetch", "set5"]) == 0  # the fix the message gives works
    assert "set5: 5 images verified (download" in capsys.readouterr().out
    assert cached.read_bytes() == (shared_datasets / "Set5" / "head.png").read_bytes()
    assert len(dl_env.requests) == 1  # the verified archive kept in downloads/ was extracted again


def test_damaged_file_under_data_path_names_the_fix(dl_env, shared_datasets, tmp_path, monkeypatch):
    copy = tmp_path / "mydata" / "Set5"
    copy.mkdir(parents=True)
    for p in (shared_datasets / "Set5").glob("*.png"):
        (copy / p.name).write_bytes(p.read_bytes())
    (copy / "bird.png").write_bytes(_flip_byte((copy / "bird.png").read_bytes()))
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(tmp_path / "mydata"))
    ds = open_dataset("set5")
    with pytest.raises(DataError) as err:
        list(ds.images())
    msg = str(err.value)
    assert msg.startswith(f"sha256 of {copy / 'bird.png'} is ") and "expected 5dcf863f7c38" in msg
    assert "take its folder out of SRBENCH_DATA_PATH" in msg
    assert (copy / "bird.png").exists()  # a user's folder is never modified


def test_fetch_corrupt_archive_with_known_sha256_fails_and_leaves_nothing(dl_env, tiny_manifest, tmp_path):
    _serve(dl_env, TINY_URL_PATH, _flip_byte(tiny_manifest, at=len(tiny_manifest) - 30))
    with pytest.raises(DataError) as err:
        open_dataset("tiny")
    msg = str(err.value)
    assert "could not fetch dataset tiny" in msg and TINY_URL_PATH in msg
    assert "SHA256 hash of downloaded file" in msg and "does not match" in msg
    assert "SRBENCH_MIRROR" in msg
    assert _leftovers(tmp_path / "cache") == []


def test_fetch_truncated_archive_is_reported_as_damaged(dl_env, shared_datasets, tmp_path):
    data = _tar_gz(_set5_members(shared_datasets))
    _serve(dl_env, SET5_URL_PATH, data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        open_dataset("set5")
    assert "set5-Set5_HR.tar.gz: damaged archive" in str(err.value)
    assert _leftovers(tmp_path / "cache") == []


# ----------------------------------------------------------------------------------------- unsafe archives


def _tar_with(kind: str, shared: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in _set5_members(shared).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo(
            {
                "dotdot": "Set5_HR/../../evil.png",
                "absolute": "/tmp/srbench-evil.png",
                "symlink": "Set5_HR/evil.png",
                "hardlink": "Set5_HR/evil.png",
            }[kind]
        )
        if kind == "symlink":
            evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            evil.type, evil.linkname = tarfile.LNKTYPE, "Set5_HR/baby.png"
        else:
            evil.size = 4
        tf.addfile(evil, io.BytesIO(b"evil") if evil.isfile() else None)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("dotdot", "'Set5_HR/../../evil.png' would land outside the target folder"),
        ("absolute", "'/tmp/srbench-evil.png' would land outside the target folder"),
        ("symlink", "'Set5_HR/evil.png' is a link; links are refused"),
        ("hardlink", "'Set5_HR/evil.png' is a link; links are refused"),
    ],
)
def test_fetch_unsafe_tar_member_is_refused(dl_env, shared_datasets, tmp_path, kind, reason):
    _serve(dl_env, SET5_URL_PATH, _tar_with(kind, shared_datasets))
    with pytest.raises(DataError) as err:
        open_dataset("set5")
    assert f"set5-Set5_HR.tar.gz: member {reason}" in str(err.value)
    assert _leftovers(tmp_path / "cache") == []
    assert not list(tmp_path.rglob("evil.png")) and not Path("/tmp/srbench-evil.png").exists()


@pytest.mark.parametrize(
    ("member", "reason"),
    [("Tiny_HR/../../evil.png", "would land outside the target folder"), ("Tiny_HR/evil.png", "is a link")],
)
def test_fetch_unsafe_zip_member_is_refused(dl_env, tiny_manifest, tmp_path, monkeypatch, member, reason):
    buf = io.BytesIO(tiny_manifest)
    with zipfile.ZipFile(buf, "a") as zf:
        info = zipfile.ZipInfo(member)
        if "link" in reason:
            info.external_attr = 0o120777 << 16  # a symlink, as Info-ZIP stores it
        zf.writestr(info, "/etc/passwd" if "link" in reason else "evil")
    data = buf.getvalue()
    # the manifest's archive sha256 must match, or pooch stops it before extraction
    toml = bench.data.manifests.MANIFEST_DIR / "tiny.toml"
    toml.write_text(
        toml.read_text().replace(hashlib.sha256(tiny_manifest).hexdigest(), hashlib.sha256(data).hexdigest())
    )
    bench.data.manifests.dataset_manifests.cache_clear()
    _serve(dl_env, TINY_URL_PATH, data)
    with pytest.raises(DataError) as err:
        open_dataset("tiny")
    assert f"tiny-Tiny_HR.zip: member {member!r} {reason}" in str(err.value)
    assert _leftovers(tmp_path / "cache") == []
    assert not list(tmp_path.rglob("evil.png"))


# ----------------------------------------------------------------------------------------- network faults


def test_fetch_offline_names_every_fix(dl_env, monkeypatch, capsys):
    monkeypatch.setenv("SRBENCH_OFFLINE", "1")
    assert main(["fetch", "set5"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: dataset set5 is not available locally")
    for fix in ("SRBENCH_OFFLINE=1", "SRBENCH_DATA_PATH", "SRBENCH_MIRROR", "python -m bench fetch set5"):
        assert fix in err
    assert dl_env.requests == []


@pytest.mark.parametrize(("status", "text"), [("404", "404 Client Error"), ("500", "500 Server Error")])
def test_fetch_http_error_is_one_clear_line(dl_env, capsys, status, text):
    dl_env.mode = status
    assert main(["fetch", "set5"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: could not fetch dataset set5: ")
    assert f"{dl_env.url}/{SET5_URL_PATH}: {text}" in err
    assert "/research/EDSR/benchmark.tar" in err  # every source tried is named
    assert "SRBENCH_MIRROR" in err and "python -m bench fetch set5" in err


def test_fetch_stalled_server_times_out(dl_env, shared_datasets, monkeypatch, tmp_path):
    monkeypatch.setenv("SRBENCH_TIMEOUT", "1")
    _serve(dl_env, SET5_URL_PATH, _tar_gz(_set5_members(shared_datasets)))
    dl_env.mode = "stall"
    t0 = time.monotonic()
    with pytest.raises(DataError) as err:
        fetch("set5")
    assert time.monotonic() - t0 < 20  # bounded: one attempt per source, 1 s without data each
    msg = str(err.value)
    assert "timed out" in msg and "SRBENCH_TIMEOUT" in msg
    assert _leftovers(tmp_path / "cache") == []  # the partial download is not kept


def test_fetch_connection_dropped_midway_is_reported_and_not_kept(dl_env, shared_datasets, tmp_path):
    _serve(dl_env, SET5_URL_PATH, _tar_gz(_set5_members(shared_datasets)))
    dl_env.mode = "drop"
    with pytest.raises(DataError) as err:
        fetch("set5")
    msg = str(err.value)
    assert f"{dl_env.url}/{SET5_URL_PATH}: " in msg and "IncompleteRead" in msg
    assert _leftovers(tmp_path / "cache") == []  # the partial download is not kept


def test_fetch_bad_timeout_value_is_a_usage_error(dl_env, monkeypatch):
    monkeypatch.setenv("SRBENCH_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="SRBENCH_TIMEOUT"):
        fetch("set5")


# ----------------------------------------------------------------------------------------- cache faults


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_fetch_read_only_cache_names_the_folder(dl_env, shared_datasets, tmp_path):
    _serve(dl_env, SET5_URL_PATH, _tar_gz(_set5_members(shared_datasets)))
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        with pytest.raises(DataError) as err:
            fetch("set5")
    finally:
        cache.chmod(0o755)
    assert f"cannot write to the cache folder {cache}" in str(err.value)
    assert "SRBENCH_CACHE" in str(err.value)


def test_fetch_cache_under_a_file_names_the_folder(dl_env, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("SRBENCH_CACHE", str(blocker / "cache"))
    with pytest.raises(DataError) as err:
        fetch("set5")
    assert f"cannot write to the cache folder {blocker / 'cache'}" in str(err.value)
    assert "SRBENCH_CACHE" in str(err.value)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (errno.EROFS, "cannot write to the cache folder"),
        (errno.EACCES, "cannot write to the cache folder"),
        (errno.ENOSPC, "disk full while writing to"),
    ],
)
def test_fetch_unwritable_or_full_cache_names_the_folder(dl_env, monkeypatch, tmp_path, code, text):
    # the file system refuses the download (as a read-only mount or a full disk does, even for root)
    import pooch

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(pooch, "retrieve", refuse)
    with pytest.raises(DataError) as err:
        fetch("set5")
    assert f"{text} {tmp_path / 'cache'}" in str(err.value)
    assert "SRBENCH_CACHE" in str(err.value)


def test_fetch_read_only_cache_during_extraction_names_the_folder(
    dl_env, shared_datasets, monkeypatch, tmp_path
):
    _serve(dl_env, SET5_URL_PATH, _tar_gz(_set5_members(shared_datasets)))

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(sys.modules["bench.data.download"].tempfile, "mkdtemp", refuse)
    with pytest.raises(DataError) as err:
        fetch("set5")
    assert f"cannot write to the cache folder {tmp_path / 'cache'}" in str(err.value)


_FETCH_SCRIPT = """
import sys
from bench.data import open_dataset
ds = open_dataset("set5")
print(ds.origin, sum(1 for _ in ds.images()))
"""


def test_fetch_two_processes_at_once_do_not_corrupt_the_cache(dl_env, shared_datasets, tmp_path):
    _serve(dl_env, SET5_URL_PATH, _tar_gz(_set5_members(shared_datasets)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FETCH_SCRIPT],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)  # with 4 at once the old rmtree-then-rename install failed 1 time in 4
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert out.split()[-1] == "5"
    cached = tmp_path / "cache" / "Set5"
    for p in (shared_datasets / "Set5").glob("*.png"):
        assert (cached / p.name).read_bytes() == p.read_bytes()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".Set5")]  # no temp folders
    assert open_dataset("set5").origin == "cache"
