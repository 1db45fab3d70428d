"""Downloads: one pooch-based `retrieve` (mirror, timeout, hash check, progress), safe archive extraction,
and `fetch` of a manifest dataset into the cache. Model weights download through the same `retrieve`."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.data.images import sha256_file
from bench.data.manifests import dataset_manifests, expected_files
from bench.data.paths import cache_dir, cache_error, mirror, offline, progress, short_error, timeout
from bench.errors import DataError

__all__ = ["retrieve", "fetch", "SourceError", "OFFLINE_FIX", "complete", "cached_hashes", "folder_md5"]


class SourceError(DataError):
    """One download source failed (network, HTTP status, hash): another source may still work."""


OFFLINE_FIX = (
    "put an extracted copy under a folder listed in SRBENCH_DATA_PATH, set SRBENCH_MIRROR to a reachable "
    "mirror, or run 'python -m bench fetch {name}' on a machine with network access"
)


def retrieve(url: str, known_hash: str | None, fname: str, folder: Path) -> Path:
    """Download `url` (through SRBENCH_MIRROR) into `folder/fname` with pooch and verify it.

    `known_hash` is ``sha256:...`` or ``md5:...``; a file that does not match is deleted (pooch never
    leaves a partial or wrong file). Raises DataError naming the URL and the fix, or the cache folder
    when it cannot be written.
    """
    import pooch

    # pooch's INFO lines advise on its own API ("use this value as known_hash"): not for our users
    pooch.get_logger().setLevel("WARNING")
    wait = timeout()
    source = mirror(url)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(
            pooch.retrieve(
                source,
                known_hash=known_hash,
                fname=fname,
                path=folder,
                progressbar=progress(),
                downloader=pooch.HTTPDownloader(timeout=wait, progressbar=progress()),
            )
        )
    except Exception as exc:  # pooch raises ValueError on hash mismatch, requests errors on HTTP
        # requests' errors are OSErrors without an errno; the file system's have one
        cache_err = cache_error(exc, folder) if isinstance(exc, OSError) else None
        if cache_err is not None:
            raise cache_err from exc
        raise SourceError(f"{source}: {short_error(exc, wait)}") from exc


def _safe_members_tar(tf: tarfile.TarFile, archive: str) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    for mem in members:
        _check_member_name(mem.name, archive)
        if mem.issym() or mem.islnk():
            raise DataError(f"{archive}: member {mem.name!r} is a link; links are refused for safety")
        if not (mem.isfile() or mem.isdir()):
            raise DataError(f"{archive}: member {mem.name!r} is not a regular file; refused for safety")
    return members


def _check_member_name(member: str, archive: str) -> None:
    parts = Path(member.replace("\\", "/")).parts
    if member.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts:
        raise DataError(
            f"{archive}: member {member!r} would land outside the target folder; the archive is unsafe "
            f"(it was deleted); check the source or SRBENCH_MIRROR"
        )


def _extract(archive: Path, fmt: str, prefix: str, wanted: set[str], dest: Path) -> dict[str, Path]:
    """Extract the wanted files found under `prefix` into `dest` (flat); refuse unsafe members."""
    out: dict[str, Path] = {}
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if fmt in ("tar", "tar.gz", "tgz"):
            with tarfile.open(archive, "r:*") as tf:
                for mem in _safe_members_tar(tf, archive.name):
                    rel = mem.name[len(prefix) :] if mem.name.startswith(prefix) else None
                    if mem.isfile() and rel in wanted:
                        src = tf.extractfile(mem)
                        assert src is not None
                        with src, open(dest / rel, "wb") as f:
                            shutil.copyfileobj(src, f)
                        out[rel] = dest / rel
        elif fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member_name(info.filename, archive.name)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DataError(
                            f"{archive.name}: member {info.filename!r} is a link; refused for safety"
                        )
                for info in zf.infolist():
                    rel = info.filename[len(prefix) :] if info.filename.startswith(prefix) else None
                    if not info.is_dir() and rel in wanted:
                        with zf.open(info) as src, open(dest / rel, "wb") as f:
                            shutil.copyfileobj(src, f)
                        out[rel] = dest / rel
        else:
            raise DataError(f"unknown archive format {fmt!r} in the manifest; use tar, tar.gz or zip")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{archive.name}: damaged archive ({exc}); it was deleted: fetch again") from exc
    return out


def fetch(name: str) -> Path:
    """Download, verify and extract a manifest dataset into the cache; returns its folder.

    Tries each source in order; a source that fails (network, hash, layout) falls through to
    the next. Raises DataError naming every source tried and the fix.
    """
    m = dataset_manifests()[name]
    expected = expected_files(m)
    if offline():
        raise DataError(
            f"dataset {name} is not available locally and SRBENCH_OFFLINE=1 forbids downloading; "
            + OFFLINE_FIX.format(name=name)
        )
    root = cache_dir()
    target = root / m["folder"]
    errors = []
    for src in m.get("sources", []):
        known = (
            f"sha256:{src['sha256']}" if "sha256" in src else (f"md5:{src['md5']}" if "md5" in src else None)
        )
        try:
            archive = retrieve(
                src["url"], known, f"{name}-{Path(urlsplit(src['url']).path).name}", root / "downloads"
            )
        except SourceError as exc:
            errors.append(str(exc))
            continue
        try:
            _install(archive, src, expected, target, m)
        except DataError as exc:
            archive.unlink(missing_ok=True)  # a bad archive is not kept: the next fetch downloads it afresh
            errors.append(f"{mirror(src['url'])}: {exc}")
            continue
        except OSError as exc:
            cache_err = cache_error(exc, target.parent)
            if cache_err is not None:
                raise cache_err from exc
            errors.append(f"{mirror(src['url'])}: cannot extract {archive.name}: {exc}")
            continue
        return target
    raise DataError(
        f"could not fetch dataset {name}: " + "; ".join(errors) + ". " + OFFLINE_FIX.format(name=name)
    )


def folder_md5(paths: list[Path]) -> str:
    """md5 over the md5s of files in name order: the check some dataset sources publish."""
    import hashlib

    digests = "".join(hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(paths, key=lambda p: p.name))
    return hashlib.md5(digests.encode()).hexdigest()


def complete(folder: Path, expected: list[tuple[str, str | None]]) -> bool:
    """True when `folder` holds every expected file."""
    return folder.is_dir() and all((folder / name).is_file() for name, _ in expected)


def cached_hashes(folder: Path) -> dict[str, str]:
    """file -> sha256 recorded when a download was verified and installed into `folder`."""
    try:
        return dict(json.loads((folder / ".srbench-verified.json").read_text())["files"])
    except (OSError, ValueError, KeyError):
        return {}


def _install(
    archive: Path,
    src: dict[str, Any],
    expected: list[tuple[str, str | None]],
    target: Path,
    m: dict[str, Any],
) -> None:
    """Extract into a temp folder, verify, then move into place: the cache never holds a bad file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    old = target.with_name(f"{tmp.name}-old")
    try:
        wanted = {fname for fname, _ in expected}
        got = _extract(archive, src["format"], src.get("prefix", ""), wanted, tmp)
        missing = sorted(wanted - set(got))
        if missing:
            raise DataError(
                f"archive {archive.name} lacks {len(missing)} of {len(wanted)} files under "
                f"{src.get('prefix', '')!r} (first: {missing[0]}); the archive layout changed or it is truncated"
            )
        hashes = {}
        for fname, sha in expected:
            digest = sha256_file(tmp / fname)
            if sha and src.get("file_hashes", True) and digest != sha:
                raise DataError(
                    f"sha256 of {fname} in {archive.name} is {digest[:12]}..., expected {sha[:12]}...; "
                    f"the download is corrupt (it was deleted): fetch again"
                )
            hashes[fname] = digest
        if "folder_md5" in m and not any(sha for _, sha in expected):
            got_md5 = folder_md5([tmp / f for f in wanted])
            if got_md5 != m["folder_md5"]:
                raise DataError(
                    f"folder md5 of {m['name']} is {got_md5}, expected {m['folder_md5']}; the archive "
                    f"content differs from the published set (it was deleted): fetch again"
                )
        (tmp / ".srbench-verified.json").write_text(
            json.dumps({"source": src["url"], "archive": archive.name, "files": hashes}, indent=1)
        )
        # another process may install the same dataset at once: never delete a folder it may be reading
        if complete(target, expected) and cached_hashes(target) == hashes:
            return
        if target.exists():
            os.replace(target, old)  # a stale or partial copy is moved aside in one step
        try:
            os.replace(tmp, target)
        except OSError:
            if not (complete(target, expected) and cached_hashes(target) == hashes):
                raise  # not a concurrent install of the same files
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
